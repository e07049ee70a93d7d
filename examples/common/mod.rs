//! What the examples share: `--agent fake|claude`, finding the fake agent, and building an
//! engine on a backend and store (with Claude Code, Codex and fake profiles; with
//! `--agent fake`, Codex is the fake agent in its Codex style).

#![allow(dead_code)] // each example uses a different part of this module

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use sm_lib::engine::{ClaudeProfile, CodexProfile, EngineConfig, FakeProfile};
use sm_lib::{AgentKind, Engine, MessageStore, Notifier, TerminalBackend};

/// Which agent the example drives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Agent {
    /// The fake agent (CI, demos): scripted by `[[…]]` directives in prompts.
    Fake,
    /// The real Claude Code CLI.
    Claude,
}

impl Agent {
    /// Reads `--agent fake|claude` (default fake) from the command line.
    pub fn from_args() -> anyhow::Result<Agent> {
        let args: Vec<String> = std::env::args().collect();
        let value = args
            .iter()
            .position(|a| a == "--agent")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .unwrap_or("fake");
        match value {
            "fake" => Ok(Agent::Fake),
            "claude" => Ok(Agent::Claude),
            other => bail!("--agent must be fake or claude, not {other:?}"),
        }
    }

    /// The agent kind to spawn.
    pub fn kind(self) -> AgentKind {
        match self {
            Agent::Fake => AgentKind::Fake,
            Agent::Claude => AgentKind::Claude,
        }
    }

    /// The kind that runs Codex: the real CLI, or with `--agent fake` the fake agent
    /// imitating it (`--style codex`).
    pub fn codex_kind(self) -> AgentKind {
        AgentKind::Codex
    }

    /// `fake` when scripting the fake agent, `real` for Claude: picks a prompt.
    pub fn prompt(self, fake: &str, real: &str) -> String {
        match self {
            Agent::Fake => fake.to_string(),
            Agent::Claude => real.to_string(),
        }
    }
}

/// The `sm-fake-agent` binary: `$SM_FAKE_AGENT`, else next to the examples' target dir.
pub fn fake_agent_program() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SM_FAKE_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/<name> → target/<profile>/sm-fake-agent
    let candidate = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("sm-fake-agent"))
        .context("cannot locate the target directory")?;
    if !candidate.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p sm-fake-agent` (or set SM_FAKE_AGENT)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// An engine with both agent profiles. The fake agent gets a private HOME (no hooks), so
/// idle detection runs on its screen alone.
pub async fn engine(
    store: Arc<dyn MessageStore>,
    backend: Arc<dyn TerminalBackend>,
    home: &std::path::Path,
    notifier: Option<Arc<dyn Notifier>>,
) -> anyhow::Result<Engine> {
    let mut env = std::collections::BTreeMap::new();
    env.insert("HOME".to_string(), home.to_string_lossy().into_owned());
    let mut builder = Engine::builder(store, backend)
        .profile(Arc::new(ClaudeProfile::default()))
        .config(EngineConfig {
            cols: 120,
            rows: 40,
            ..EngineConfig::default()
        });
    if let Ok(program) = fake_agent_program() {
        // Codex's hooks are read from $CODEX_HOME: the private home has none either.
        let mut codex_env = env.clone();
        codex_env.insert(
            "CODEX_HOME".to_string(),
            home.join(".codex").to_string_lossy().into_owned(),
        );
        builder = builder.profile(Arc::new(FakeProfile {
            program: program.clone(),
            env,
        }));
        if Agent::from_args().ok() == Some(Agent::Fake) {
            builder = builder.profile(Arc::new(CodexProfile {
                program: program.to_string_lossy().into_owned(),
                extra_args: vec!["--style".into(), "codex".into()],
                env: codex_env,
            }));
        }
    }
    if let Some(n) = notifier {
        builder = builder.notifier(n);
    }
    Ok(builder.start().await?)
}

/// A private tmux socket name for one example run, and a guard that removes its server.
pub struct TmuxGuard(pub String);

impl TmuxGuard {
    /// A fresh socket name.
    pub fn new(prefix: &str) -> TmuxGuard {
        TmuxGuard(format!("{prefix}-{}", std::process::id()))
    }
}

impl Drop for TmuxGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}
