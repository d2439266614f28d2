//! ferrojob's engine: the model, the timing wheel, time expressions and the embedded scheduler.

pub mod clock;
pub mod embedded;
pub mod model;
pub mod time_expression;
pub mod wheel;
