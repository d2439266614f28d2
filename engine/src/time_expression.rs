//! `time_expression`.
