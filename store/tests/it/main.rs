//! The store's integration tests, in one binary (linked once): the shared suite run against
//! every store, then the log store's crash, compaction, model, preallocation and stepped-mode tests.

mod common;
mod compaction;
mod crash;
mod model;
mod prealloc;
mod stepped;
mod suite;
