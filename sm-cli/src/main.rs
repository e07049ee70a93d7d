//! `sm`: the command-line client that humans and agents use to talk to the sm server.
//!
//! Inside a managed agent, `SM_SESSION_ID`, `SM_SERVER_URL` and `SM_TOKEN` say who is
//! calling and where the server is; for a human, the configuration and the admin token in
//! the state dir do. Exit codes: 0 success; 1 the server refused the request; 2 bad usage
//! or a local problem (and `auto-lock` refusing a write); 3 the server is not running;
//! 4 `sm wait` outside a session ran out of time.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use client::{CliError, Client};
use sm_lib::Config;

#[derive(Parser)]
#[command(
    name = "sm",
    version,
    about = "Session manager for swarms of AI coding agents"
)]
struct Cli {
    /// Configuration file (default: $SM_CONFIG, else ~/.config/sm/config.yaml if present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print data as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sm server in the foreground.
    Server,
    /// Start an agent; you become its parent.
    Spawn(commands::spawn::Args),
    /// Send a message to a session.
    Send(commands::send::SendArgs),
    /// Get a message when a session finishes its turn (returns at once); outside a session,
    /// block until it does (exit 0), ends (1) or the time is up (4).
    Wait(commands::send::WaitArgs),
    /// Reset a session's context (Claude Code: /clear).
    Clear {
        /// Session id, id prefix or name.
        target: String,
    },
    /// Answer the question (permission prompt) a session shows, by option number.
    Answer {
        /// Session id, id prefix or name.
        target: String,
        /// The option's number as shown on its screen (1 = the first).
        option: usize,
    },
    /// List the sessions you spawned.
    Children(commands::sessions::ChildrenArgs),
    /// End a session you spawned.
    Kill {
        /// Session id, id prefix or name.
        target: String,
    },
    /// Name your session (or one you spawned, with --session).
    Name {
        /// The new name.
        name: String,
        /// The session to name (default: mine).
        #[arg(long)]
        session: Option<String>,
    },
    /// Say what you are working on (shown by status, others, all, children).
    Task {
        /// The task; empty to clear it.
        task: String,
        /// The session (default: mine).
        #[arg(long)]
        session: Option<String>,
    },
    /// List Claude Code's own subagents of a session (default: mine).
    Subagents {
        /// Session id, id prefix or name.
        target: Option<String>,
    },
    /// Summarise what a session is doing (claude -p with a small model, or a fallback).
    What {
        /// Session id, id prefix or name.
        target: String,
        /// Give the summariser more context.
        #[arg(long)]
        deep: bool,
    },
    /// Show this session.
    Me,
    /// Show this session (same as `me`).
    Who,
    /// Show me, the live sessions and the locks.
    Status,
    /// A live dashboard of the swarm in the terminal (`--once`: one frame as text).
    Watch(commands::watch::Args),
    /// Exit 0 if no other live session works in my directory (outside a session: the
    /// current directory), 1 otherwise.
    Alone,
    /// List live sessions other than mine.
    Others,
    /// List every session.
    All,
    /// Lock my workspace.
    Lock {
        /// Why (shown to anyone refused).
        reason: String,
    },
    /// Release my locks; an admin may free others' with --force.
    Unlock {
        /// Admin: release the locks of this session (id, prefix or name) or of the
        /// workspace of this directory.
        #[arg(long, value_name = "SESSION|DIR")]
        force: Option<String>,
    },
    /// PreToolUse hook: take the workspace lock for the file being written (reads JSON on
    /// stdin; exit 2 refuses the write).
    AutoLock,
    /// Forward a Claude Code hook event (reads JSON on stdin; never blocks the agent).
    Hook {
        /// The event, e.g. stop, user-prompt-submit, Notification.
        event: String,
    },
    /// Print the last lines of a session's terminal.
    Output {
        /// Session id, id prefix or name.
        target: String,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
    /// Start an agent in a directory (default: here) and attach to it.
    New {
        /// Working directory.
        dir: Option<PathBuf>,
        /// Agent kind: claude, fake, shell.
        #[arg(long, default_value = "claude")]
        agent: String,
        /// A friendly name.
        #[arg(long)]
        name: Option<String>,
        /// Only start it and print what `sm spawn` prints, instead of attaching.
        #[arg(long)]
        no_attach: bool,
    },
    /// Attach your terminal to a session (tmux backend).
    Attach {
        /// Session id, id prefix or name (default: mine).
        target: Option<String>,
    },
    /// Serve sm's tools to the agent this runs in over the Model Context Protocol (stdio);
    /// run by the agent's client, registered by `sm setup`.
    Mcp,
    /// Install sm's hooks into Claude Code's settings (~/.claude, or --project).
    Setup(commands::setup::Args),
    /// Keep the server running as a user service (systemd; launchd on macOS): install,
    /// uninstall, status.
    Service(commands::service::Args),
    /// Check the configuration and print the effective settings as JSON.
    Config,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn client(config: Option<&std::path::Path>, timeout: Duration) -> Result<Client, CliError> {
    Client::from_env(config, timeout)
}

/// `sm hook <event>` as every agent hook runs it, recognised without building the whole
/// command line parser: it runs at each of an agent's turns, and a wake waits for it.
fn hook_fast_path() -> Option<String> {
    let mut args = std::env::args_os().skip(1);
    let (sub, event) = (args.next()?, args.next()?);
    if args.next().is_some() || sub != "hook" {
        return None;
    }
    let event = event.into_string().ok()?;
    (!event.is_empty() && !event.starts_with('-')).then_some(event)
}

/// Hooks run inside the agent's turn: short timeouts, never an error exit.
const HOOK_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    if let Some(event) = hook_fast_path() {
        let client = client(None, HOOK_TIMEOUT).ok();
        return ExitCode::from(commands::hook::run(&event, client) as u8);
    }
    let cli = Cli::parse();
    let cfg = cli.config.as_deref();
    let json = cli.json;
    let timeout = Duration::from_secs(120);
    let result = match cli.command {
        Command::Hook { event } => {
            return ExitCode::from(
                commands::hook::run(&event, client(cfg, HOOK_TIMEOUT).ok()) as u8
            );
        }
        Command::AutoLock => {
            // The server may hold the write while another agent's turn ends.
            let code = commands::locks::auto_lock(client(cfg, Duration::from_secs(120)).ok());
            return ExitCode::from(code as u8);
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sm", &mut std::io::stdout());
            Ok(())
        }
        Command::Config => config(cfg),
        Command::Mcp => {
            // Only ever as the agent it runs in; without its identity, no tools.
            let agent = commands::mcp::agent_identity()
                .then(|| client(cfg, timeout).ok())
                .flatten();
            commands::mcp::run(agent)
        }
        Command::Setup(a) => commands::setup::run(a, cfg),
        Command::Service(a) => commands::service::run(a, cfg),
        Command::Server => commands::attach::server(cli.config.clone()),
        other => client(cfg, timeout).and_then(|c| run(&c, other, json)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::No) => ExitCode::from(1),
        Err(CliError::TimedOut) => ExitCode::from(4),
        Err(e) => {
            eprintln!("sm: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(c: &Client, command: Command, json: bool) -> Result<(), CliError> {
    use commands::{attach, locks, send, sessions, spawn};
    match command {
        Command::Spawn(a) => spawn::run(c, a, json),
        Command::Send(a) => send::send(c, a, json),
        Command::Wait(a) => send::wait(c, a, json),
        Command::Clear { target } => sessions::clear(c, &target, json),
        Command::Answer { target, option } => sessions::answer(c, &target, option, json),
        Command::Children(a) => sessions::children(c, a, json),
        Command::Kill { target } => sessions::kill(c, &target, json),
        Command::Name { name, session } => sessions::name(c, &name, session, json),
        Command::Me | Command::Who => sessions::me(c, json),
        Command::What { target, deep } => sessions::what(c, &target, deep, json),
        Command::Task { task, session } => sessions::task(c, &task, session, json),
        Command::Subagents { target } => sessions::subagents(c, target, json),
        Command::Status => sessions::status(c, json),
        Command::Watch(a) => commands::watch::run(c.with_timeout(Duration::from_secs(30)), a),
        Command::Alone => {
            if sessions::alone(c, json)? {
                Ok(())
            } else {
                Err(CliError::No)
            }
        }
        Command::Others => sessions::others(c, json),
        Command::All => sessions::all(c, json),
        Command::Lock { reason } => locks::lock(c, &reason, json),
        Command::Unlock { force } => locks::unlock(c, force, json),
        Command::Output { target, lines } => sessions::output_tail(c, &target, lines, json),
        Command::Attach { target } => attach::attach(c, target),
        Command::New {
            dir,
            agent,
            name,
            no_attach,
        } => attach::new(c, dir, agent, name, no_attach, json),
        Command::Server
        | Command::Hook { .. }
        | Command::AutoLock
        | Command::Config
        | Command::Setup(_)
        | Command::Mcp
        | Command::Service(_)
        | Command::Completions { .. } => Ok(()),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<set>@host/db`; a password given
/// as a `password=` parameter is masked the same way.
fn mask_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let start = scheme_end + 3 + colon + 1;
                out.replace_range(start..scheme_end + 3 + at, "<set>");
            }
        }
    }
    if let Some(p) = out.find("password=") {
        let start = p + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "<set>");
    }
    out
}

fn config(path: Option<&std::path::Path>) -> Result<(), CliError> {
    let loaded = Config::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let mut shown = loaded.config;
    // Never print secrets: say whether a token is set, not what it is.
    if shown.telegram.token.is_some() {
        shown.telegram.token = Some("<set>".into());
    }
    if let Some(url) = &shown.store.postgres_url {
        shown.store.postgres_url = Some(mask_password(url));
    }
    output::json(&serde_json::to_value(&shown).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn sm_config_never_prints_a_postgres_password() {
        assert_eq!(
            mask_password("postgres://sm:hunter2@db.local:5432/sm?sslmode=require"),
            "postgres://sm:<set>@db.local:5432/sm?sslmode=require"
        );
        assert_eq!(
            mask_password("postgres://db/sm?user=sm&password=hunter2&sslmode=require"),
            "postgres://db/sm?user=sm&password=<set>&sslmode=require"
        );
        assert_eq!(mask_password("postgres://sm@db/sm"), "postgres://sm@db/sm");
    }
}
