//! `sm send`, `sm wait`: messages and wake-ups.

use serde_json::json;

use crate::client::{CliError, Client, enc};
use crate::output;

/// Arguments of `sm send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Target session: id, id prefix or name.
    pub target: String,
    /// The message; `-` reads it from standard input (for long or multi-line text).
    pub text: String,
    /// Deliver ahead of queued messages at the next idle point, without interrupting.
    #[arg(long, conflicts_with = "urgent")]
    pub important: bool,
    /// Interrupt the target now and deliver.
    #[arg(long)]
    pub urgent: bool,
    /// Then wake me when the target finishes, or after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

/// Runs `sm send`.
pub fn send(client: &Client, args: SendArgs, json_out: bool) -> Result<(), CliError> {
    let mode = if args.urgent {
        "urgent"
    } else if args.important {
        "important"
    } else {
        "sequential"
    };
    let text = if args.text == "-" {
        read_stdin()?
    } else {
        args.text
    };
    // One key for every attempt of this send: a retry after a broken connection finds the
    // message the first attempt stored instead of queueing it twice.
    let key = sm_lib::SessionId::new_random().to_string();
    let body = json!({ "text": text, "mode": mode, "idempotency_key": key });
    let path = format!("/sessions/{}/input", enc(&args.target));
    let message = post_retrying(client, &path, &body)?;
    if let Some(secs) = args.wait {
        watch(client, &args.target, secs)?;
    }
    if json_out {
        output::json(&message);
    } else {
        println!(
            "queued message #{} ({mode}) for {}",
            message["id"], args.target
        );
    }
    Ok(())
}

/// Posts `body`; when the connection breaks after the request went out (the server may have
/// stored it), retries the same request for up to 30 s — through a server restart — so the
/// caller learns what happened. Safe only for requests carrying an idempotency key.
fn post_retrying(
    client: &Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut pause = std::time::Duration::from_millis(50);
    let mut maybe_stored = false;
    loop {
        match client.post(path, body) {
            // Not sent at all, and nothing sent before: say so at once.
            Err(CliError::ServerDown(url)) if !maybe_stored => {
                return Err(CliError::ServerDown(url));
            }
            Err(CliError::Interrupted(url) | CliError::ServerDown(url)) => {
                maybe_stored = true;
                if std::time::Instant::now() >= deadline {
                    return Err(CliError::Interrupted(url));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// The message from standard input, refused when it is not UTF-8 or absurdly large.
fn read_stdin() -> Result<String, CliError> {
    use std::io::Read;
    const LIMIT: u64 = 16 << 20;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Usage(format!("cannot read the message from stdin: {e}")))?;
    if bytes.len() as u64 > LIMIT {
        return Err(CliError::Usage(format!(
            "the message on stdin is over {} MB",
            LIMIT >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        CliError::Usage(format!(
            "the message on stdin is not UTF-8 (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn watch(client: &Client, target: &str, secs: u64) -> Result<serde_json::Value, CliError> {
    client.post(
        &format!("/sessions/{}/watch", enc(target)),
        &json!({ "timeout_secs": secs }),
    )
}

/// Arguments of `sm wait`.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// The session to wait for.
    pub target: String,
    /// Give up after this many seconds.
    pub seconds: u64,
}

/// Runs `sm wait`: returns at once; a message wakes the caller later.
pub fn wait(client: &Client, args: WaitArgs, json_out: bool) -> Result<(), CliError> {
    let answer = watch(client, &args.target, args.seconds)?;
    if json_out {
        output::json(&answer);
    } else {
        println!(
            "waiting on {}: you will get a message when it finishes, or in {}s",
            args.target, args.seconds
        );
    }
    Ok(())
}
