//! ferrojob's task store.
