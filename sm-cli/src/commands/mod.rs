//! One module per `sm` subcommand.

pub mod attach;
pub mod hook;
pub mod locks;
pub mod mcp;
pub mod send;
pub mod service;
pub mod sessions;
pub mod setup;
pub mod spawn;
pub mod watch;

/// `dir` made absolute, or the current directory.
pub fn absolute_dir(
    dir: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, crate::client::CliError> {
    let usage = |e: std::io::Error| crate::client::CliError::Usage(e.to_string());
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir().map_err(usage)?,
    };
    std::path::absolute(&dir).map_err(usage)
}

/// How long a hook client waits for its JSON on stdin. Claude Code writes it at once and
/// closes the pipe; a stdin that stays open must not hold the agent.
pub const HOOK_STDIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Standard input, up to `limit` bytes, or `None` when it did not end within `timeout`
/// (the reader thread is left behind; the process exits soon after).
pub fn read_stdin_within(limit: u64, timeout: std::time::Duration) -> Option<String> {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut input = String::new();
        let _ = std::io::stdin().take(limit).read_to_string(&mut input);
        let _ = tx.send(input);
    });
    rx.recv_timeout(timeout).ok()
}
