//! ferrojob's wire protocol.
