//! `sm`: the command-line client that humans and agents use to talk to the sm server.
//!
//! So far it inspects configuration; the agent commands (`spawn`, `send`, `wait`, …) arrive
//! with the server API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and print the effective settings as JSON.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => match Config::load(cli.config.as_deref()) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                let mut shown = loaded.config;
                // Never print secrets: say whether a token is set, not what it is.
                if shown.telegram.token.is_some() {
                    shown.telegram.token = Some("<set>".into());
                }
                match serde_json::to_string_pretty(&shown) {
                    Ok(json) => {
                        println!("{json}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
