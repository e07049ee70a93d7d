//! `sm send`, `sm wait`: messages and wake-ups.

use sm_lib::WaitOutcome;
use sm_lib::wire::{InputBody, WatchAnswer, WatchBody};

use crate::client::{CliError, Client, enc, my_session, typed};
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
    let body = InputBody {
        text,
        mode: Some(mode.to_string()),
        idempotency_key: Some(key),
    };
    let path = format!("/sessions/{}/input", enc(&args.target));
    let message = client.post_idempotent(&path, &body)?;
    if let Some(secs) = args.wait {
        watch(client, &args.target, secs)?;
    }
    if json_out {
        output::json(&message);
    } else {
        println!(
            "queued message #{} ({mode}) for {}",
            message["id"],
            output::clean(&args.target)
        );
    }
    Ok(())
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

/// Registers a wait on `target` for the caller (returns at once; a message wakes it).
pub(crate) fn watch(
    client: &Client,
    target: &str,
    secs: u64,
) -> Result<serde_json::Value, CliError> {
    client.post(
        &format!("/sessions/{}/watch", enc(target)),
        &WatchBody {
            timeout_secs: secs,
            block: false,
        },
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

/// Runs `sm wait`. Inside a session it returns at once and a message wakes the caller
/// later. Outside one (a person, a script) nobody could be woken, so it blocks until the
/// target finishes its turn (exit 0), ends (exit 1) or the time is up (exit 4).
pub fn wait(client: &Client, args: WaitArgs, json_out: bool) -> Result<(), CliError> {
    if my_session().is_none() {
        return wait_here(client, args, json_out);
    }
    let answer = watch(client, &args.target, args.seconds)?;
    if json_out {
        output::json(&answer);
    } else {
        println!(
            "waiting on {}: you will get a message when it finishes, or in {}s",
            output::clean(&args.target),
            args.seconds
        );
    }
    Ok(())
}

fn wait_here(client: &Client, args: WaitArgs, json_out: bool) -> Result<(), CliError> {
    // The server holds the request for as long as the wait; allow a little more.
    let client = client.with_timeout(std::time::Duration::from_secs(args.seconds + 30));
    let answer = client.post(
        &format!("/sessions/{}/watch", enc(&args.target)),
        &WatchBody {
            timeout_secs: args.seconds,
            block: true,
        },
    )?;
    if json_out {
        output::json(&answer);
    }
    let WatchAnswer::Ended {
        outcome,
        last_message,
        turns,
        ..
    } = typed(answer)?
    else {
        return Err(CliError::Usage(
            "the server registered a wait instead of holding the request; is it older than \
             this sm?"
                .into(),
        ));
    };
    if !json_out {
        let target = &output::clean(&args.target);
        match outcome {
            WaitOutcome::Idle => {
                println!("{target} finished its turn");
                if turns.len() > 1 {
                    for (i, t) in turns.iter().enumerate() {
                        println!("turn {}: {}", i + 1, output::clean(t));
                    }
                } else if let Some(m) = turns.first().or(last_message.as_ref()) {
                    println!("last message: {}", output::clean(m));
                }
            }
            WaitOutcome::Timeout => println!("{target} is still busy after {}s", args.seconds),
            _ => println!("{target} ended"),
        }
    }
    match outcome {
        WaitOutcome::Idle => Ok(()),
        WaitOutcome::Timeout => Err(CliError::TimedOut),
        _ => Err(CliError::No),
    }
}
