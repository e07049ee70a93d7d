//! The in-memory store and the default lock policy run the public conformance suites.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use sm_lib::{DefaultLockPolicy, MemoryStore, MessageStore};

async fn fresh() -> (Arc<dyn MessageStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

sm_lib::message_store_conformance!(fresh);
sm_lib::lock_policy_conformance!(DefaultLockPolicy::default());
