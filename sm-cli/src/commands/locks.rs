//! `sm lock`, `sm unlock`, `sm auto-lock` (the PreToolUse hook for file writes).

use serde_json::Value;
use sm_lib::Lock;
use sm_lib::wire::{AutoLockBody, LockBody};

use crate::client::{CliError, Client, my_session, typed};
use crate::output;

/// `sm lock "<reason>"`.
pub fn lock(client: &Client, reason: &str, json_out: bool) -> Result<(), CliError> {
    let answer = client.post(
        "/locks",
        &LockBody {
            reason: reason.to_string(),
        },
    )?;
    if json_out {
        output::json(&answer);
    } else {
        let lock: Lock = typed(answer)?;
        println!(
            "locked {} ({})",
            output::clean(&lock.workspace.to_string()),
            output::clean(reason)
        );
    }
    Ok(())
}

/// `sm unlock [--force <session|dir>]`. With `--force`, an existing directory names a
/// workspace; anything else names a session.
pub fn unlock(client: &Client, force: Option<String>, json_out: bool) -> Result<(), CliError> {
    let path = match force {
        None => "/locks".to_string(),
        Some(target) if std::path::Path::new(&target).is_dir() => {
            let dir = super::absolute_dir(Some(target.into()))?;
            format!(
                "/locks?workspace={}",
                crate::client::enc(&dir.to_string_lossy())
            )
        }
        Some(target) => format!("/locks?holder={}", crate::client::enc(&target)),
    };
    let released = client.delete(&path)?;
    if json_out {
        output::json(&released);
    } else {
        let n = released.as_array().map_or(0, Vec::len);
        println!("released {n} lock(s)");
    }
    Ok(())
}

/// `sm auto-lock`: reads a PreToolUse hook's JSON on stdin (Claude Code's file writes,
/// Codex's `apply_patch`) and takes the workspace lock of every file being written. Exit 0 lets the write go on; exit 2 blocks it, with the
/// reason on stderr for the agent to read. Outside a managed session, or when the server is
/// down, it lets the write go on at once.
pub fn auto_lock(client: Option<Client>) -> i32 {
    if my_session().is_none() {
        return 0;
    }
    // No JSON within the hook's time (a stdin left open): nothing names a file to lock,
    // so the write goes on, as when the server is down.
    let Some(input) = super::read_stdin_within(4 << 20, super::HOOK_STDIN_TIMEOUT) else {
        return 0;
    };
    let Ok(payload) = serde_json::from_str::<Value>(&input) else {
        return 0;
    };
    let files = sm_lib::engine::profile::files_written(&payload);
    let Some(client) = client else { return 0 };
    for file in files {
        let body = AutoLockBody { file_path: file };
        match client.post("/locks/auto", &body) {
            Ok(_) => {}
            Err(CliError::Api { code, message, .. }) if code == "lock_conflict" => {
                eprintln!(
                    "sm: {message}. Another agent is changing this workspace; wait for it to \
                     finish (sm wait) or coordinate with it (sm send), then retry."
                );
                return 2;
            }
            Err(_) => {}
        }
    }
    0
}
