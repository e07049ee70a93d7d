//! The in-memory store, the memory backend and the default lock policy run the public
//! conformance suites.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use sm_lib::{DefaultLockPolicy, MemoryBackend, MemoryStore, MessageStore, TerminalBackend};

async fn fresh() -> (Arc<dyn MessageStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

sm_lib::message_store_conformance!(fresh);
sm_lib::lock_policy_conformance!(DefaultLockPolicy::default());

mod memory_backend {
    use super::*;

    async fn fresh() -> (Arc<dyn TerminalBackend>, ()) {
        (Arc::new(MemoryBackend::new()), ())
    }

    sm_lib::terminal_backend_conformance!(fresh);

    #[test]
    fn declares_simulated_terminals() {
        let caps = MemoryBackend::new().capabilities();
        assert!(!caps.runs_programs && !caps.exit_status && !caps.attach);
    }
}
