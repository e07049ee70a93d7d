//! The PTY backend runs the terminal backend conformance suite.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use sm_backend_pty::PtyBackend;
use sm_lib::TerminalBackend;

async fn fresh() -> (Arc<dyn TerminalBackend>, ()) {
    (Arc::new(PtyBackend::new().unwrap()), ())
}

sm_lib::terminal_backend_conformance!(fresh);
