//! `embedded`.
