//! The tokio adapter (placeholder while the core is built).
