//! The PTY backend runs the terminal backend conformance suite.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use sm_backend_pty::PtyBackend;
use sm_lib::TerminalBackend;

async fn fresh() -> (Arc<dyn TerminalBackend>, ()) {
    (Arc::new(PtyBackend::new().unwrap()), ())
}

sm_lib::terminal_backend_conformance!(fresh);

/// The suite holds a backend to what it declares: declaring less would skip cases.
#[test]
fn declares_real_programs_and_exit_status() {
    let caps = PtyBackend::new().unwrap().capabilities();
    assert!(caps.runs_programs && caps.exit_status, "{caps:?}");
}
