//! `wheel`.
