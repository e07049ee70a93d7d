//! `sm spawn`: start an agent (the caller becomes its parent).

use std::path::PathBuf;

use sm_lib::wire::{SessionView, SpawnBody};

use crate::client::{CliError, Client, typed};
use crate::output;

/// Arguments of `sm spawn`.
#[derive(clap::Args)]
pub struct Args {
    /// The first message for the new agent.
    pub prompt: Option<String>,
    /// A friendly name (letters, digits, '-', '_', '.').
    #[arg(long)]
    pub name: Option<String>,
    /// Model: opus, sonnet, haiku or a full model name (Codex: e.g. gpt-5.5).
    #[arg(long)]
    pub model: Option<String>,
    /// Working directory (default: the current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Wake me with a message when its first turn ends, or after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// Agent kind: claude, codex, fake, shell.
    #[arg(long, default_value = "claude")]
    pub agent: String,
    /// Start without permission prompts.
    #[arg(long)]
    pub skip_permissions: bool,
    /// Continue this earlier conversation of the agent (Claude Code: its session id; Codex:
    /// the id sm recorded from its hooks) instead of starting a new one.
    #[arg(long, value_name = "ID")]
    pub resume: Option<String>,
    /// In a cluster: the node to run it on (default: the node the server you talk to is).
    #[arg(long)]
    pub node: Option<String>,
}

/// The line `sm spawn` and `sm new --no-attach` print for a new session.
pub fn print_spawned(session: &sm_lib::Session) {
    println!("spawned {} [{}]", output::label(session), session.id);
}

/// Runs `sm spawn`.
pub fn run(client: &Client, args: Args, json_out: bool) -> Result<(), CliError> {
    let dir = super::absolute_dir(args.dir)?;
    let body = SpawnBody {
        prompt: args.prompt,
        name: args.name,
        model: args.model,
        working_dir: Some(dir),
        agent: Some(args.agent),
        wait_secs: args.wait,
        skip_permissions: args.skip_permissions,
        resume: args.resume,
        // One key for every attempt: a retry after a broken connection gets the agent the
        // first attempt started, not a second one.
        idempotency_key: Some(sm_lib::SessionId::new_random().to_string()),
        node: args.node.clone(),
    };
    let answer = client.post_idempotent("/sessions", &body)?;
    if json_out {
        output::json(&answer);
    } else {
        let view: SessionView = typed(answer)?;
        print_spawned(&view.session);
        if let (Some(_), Some(node)) = (&args.node, &view.session.node) {
            println!("on node {node}");
        }
        if args.wait.is_some() {
            println!("you will get a message when it finishes its first turn");
        }
    }
    Ok(())
}
