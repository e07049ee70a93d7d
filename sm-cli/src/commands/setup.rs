//! `sm setup`: installs (or removes) the hooks sm needs in Claude Code's settings and in
//! Codex's `hooks.json` (the same shape), keeping every other setting and hook as it was.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::client::CliError;

/// Arguments of `sm setup`.
#[derive(clap::Args)]
pub struct Args {
    /// Which agent's configuration: `claude` (`~/.claude/settings.json`), `codex`
    /// (`$CODEX_HOME/hooks.json`, default `~/.codex/hooks.json`), `all` of those two, or an
    /// agent defined under `agents:` with `hooks: true` (its `hooks_file`).
    #[arg(long, default_value = "claude")]
    pub agent: String,
    /// Claude Code: install into this repository's `.claude/settings.json` instead of
    /// `~/.claude/`.
    #[arg(long)]
    pub project: bool,
    /// Show what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove sm's hooks.
    #[arg(long)]
    pub uninstall: bool,
}

/// A hook event, the tools it is limited to (a matcher), and the `sm` arguments it runs.
type Hook = (&'static str, Option<&'static str>, &'static str);

/// The Claude Code hook events sm listens to.
const CLAUDE_HOOKS: &[Hook] = &[
    (
        "PreToolUse",
        Some("Write|Edit|MultiEdit|NotebookEdit"),
        "auto-lock",
    ),
    ("PostToolUse", None, "hook post-tool-use"),
    ("UserPromptSubmit", None, "hook user-prompt-submit"),
    ("Stop", None, "hook stop"),
    ("Notification", None, "hook notification"),
    ("SessionStart", None, "hook session-start"),
    ("SessionEnd", None, "hook session-end"),
    ("SubagentStart", None, "hook subagent-start"),
    ("SubagentStop", None, "hook subagent-stop"),
];

/// The Codex hook events sm listens to. File edits are `apply_patch`; an interrupted turn
/// fires `Interrupt` instead of `Stop`; approval questions fire `PermissionRequest`.
const CODEX_HOOKS: &[Hook] = &[
    ("PreToolUse", Some("apply_patch"), "auto-lock"),
    ("PostToolUse", None, "hook post-tool-use"),
    ("UserPromptSubmit", None, "hook user-prompt-submit"),
    ("Stop", None, "hook stop"),
    ("Interrupt", None, "hook interrupt"),
    ("PermissionRequest", None, "hook permission-request"),
    ("SessionStart", None, "hook session-start"),
    ("SubagentStart", None, "hook subagent-start"),
    ("SubagentStop", None, "hook subagent-stop"),
];

/// Whether a hook command is one of sm's (any install path).
fn is_sm_command(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or("");
    let is_sm = Path::new(program).file_name().is_some_and(|n| n == "sm");
    let sub = words.next().unwrap_or("");
    is_sm && (sub == "hook" || sub == "auto-lock")
}

/// Removes sm's hook commands from `settings`, dropping groups and events left empty.
fn remove_sm_hooks(settings: &mut Map<String, Value>) {
    let Some(hooks) = settings.get_mut("hooks").and_then(Value::as_object_mut) else {
        return;
    };
    for groups in hooks.values_mut() {
        let Some(list) = groups.as_array_mut() else {
            continue;
        };
        for group in list.iter_mut() {
            if let Some(cmds) = group.get_mut("hooks").and_then(Value::as_array_mut) {
                cmds.retain(|h| !h["command"].as_str().is_some_and(is_sm_command));
            }
        }
        list.retain(|g| g["hooks"].as_array().is_none_or(|h| !h.is_empty()));
    }
    hooks.retain(|_, groups| groups.as_array().is_none_or(|g| !g.is_empty()));
    if hooks.is_empty() {
        settings.remove("hooks");
    }
}

/// The settings with sm's hooks installed (or removed), everything else unchanged.
pub fn apply(
    settings: &Value,
    hooks_wanted: &[Hook],
    sm: &str,
    uninstall: bool,
) -> Result<Value, CliError> {
    let mut root = match settings {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(CliError::Usage(
                "the settings file is not a JSON object".into(),
            ));
        }
    };
    remove_sm_hooks(&mut root);
    if !uninstall {
        let hooks = root
            .entry("hooks")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(hooks) = hooks.as_object_mut() else {
            return Err(CliError::Usage(
                "\"hooks\" in the settings file is not an object".into(),
            ));
        };
        for (event, matcher, args) in hooks_wanted {
            let mut group =
                json!({ "hooks": [{ "type": "command", "command": format!("{sm} {args}") }] });
            if let Some(m) = matcher {
                group["matcher"] = json!(m);
            }
            let list = hooks.entry(*event).or_insert_with(|| json!([]));
            match list.as_array_mut() {
                Some(list) => list.push(group),
                None => {
                    return Err(CliError::Usage(format!(
                        "hooks.{event} in the settings file is not a list"
                    )));
                }
            }
        }
    }
    Ok(Value::Object(root))
}

fn home() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Usage("HOME is not set".into()))
}

fn claude_settings_path(project: bool) -> Result<PathBuf, CliError> {
    if project {
        let cwd = std::env::current_dir().map_err(|e| CliError::Usage(e.to_string()))?;
        let top = cwd
            .ancestors()
            .find(|a| a.join(".git").exists())
            .unwrap_or(&cwd)
            .to_path_buf();
        Ok(top.join(".claude/settings.json"))
    } else {
        Ok(home()?.join(".claude/settings.json"))
    }
}

/// Codex reads its hooks from `$CODEX_HOME/hooks.json` (default `~/.codex`).
fn codex_hooks_path() -> Result<PathBuf, CliError> {
    let dir = match std::env::var_os("CODEX_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".codex"),
    };
    Ok(dir.join("hooks.json"))
}

/// Where a configured agent (`agents.<name>`) takes sm's hooks: its `hooks_file`.
fn configured_hooks_path(name: &str, config: Option<&Path>) -> Result<PathBuf, CliError> {
    let loaded = sm_lib::Config::load(config).map_err(|e| CliError::Usage(e.to_string()))?;
    let Some(agent) = loaded.config.agents.get(name) else {
        return Err(CliError::Usage(format!(
            "unknown agent {name:?}: use claude, codex, all, or an agent defined under agents: in the configuration"
        )));
    };
    match (&agent.hooks_file, agent.hooks) {
        (Some(file), true) => Ok(sm_lib::config::expand_tilde(file)),
        (_, false) => Err(CliError::Usage(format!(
            "agents.{name} has no hooks (hooks: false): there is nothing to set up; sm reads its screen"
        ))),
        (None, true) => Err(CliError::Usage(format!(
            "agents.{name}.hooks_file is not set: say where its settings file is"
        ))),
    }
}

/// Runs `sm setup`.
pub fn run(args: Args, config: Option<&Path>) -> Result<(), CliError> {
    if args.project && args.agent != "claude" {
        return Err(CliError::Usage(
            "--project is for Claude Code's settings only (Codex reads hooks from $CODEX_HOME)"
                .into(),
        ));
    }
    let mut targets: Vec<(PathBuf, &[Hook])> = Vec::new();
    if args.agent == "claude" || args.agent == "all" {
        targets.push((claude_settings_path(args.project)?, CLAUDE_HOOKS));
    }
    if args.agent == "codex" || args.agent == "all" {
        targets.push((codex_hooks_path()?, CODEX_HOOKS));
    }
    if targets.is_empty() {
        // A configured agent with Claude Code-style hooks.
        targets.push((configured_hooks_path(&args.agent, config)?, CLAUDE_HOOKS));
    }
    for (path, hooks) in targets {
        install(&path, hooks, &args)?;
    }
    Ok(())
}

/// Installs (or removes) `hooks` in the JSON settings file at `path`.
fn install(path: &Path, hooks: &[Hook], args: &Args) -> Result<(), CliError> {
    let sm = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find the sm binary: {e}")))?;
    let sm = sm.to_string_lossy().into_owned();
    if sm.contains(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "the sm binary's path contains spaces ({sm}); install sm somewhere without spaces"
        )));
    }
    let current: Value = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Value::Null,
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "{} is not valid JSON ({e}); fix it first, sm will not overwrite it",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let updated = apply(&current, hooks, &sm, args.uninstall)?;
    let before = if current.is_null() {
        json!({})
    } else {
        current.clone()
    };
    if updated == before {
        println!(
            "{}: nothing to change (sm's hooks are {})",
            path.display(),
            if args.uninstall {
                "not installed"
            } else {
                "already installed"
            }
        );
        return Ok(());
    }
    let action = match (args.dry_run, args.uninstall) {
        (true, true) => "would remove",
        (true, false) => "would install",
        (false, true) => "removing",
        (false, false) => "installing",
    };
    println!("{action} sm's hooks in {}:", path.display());
    for (event, matcher, sub) in hooks {
        let on = matcher.map(|m| format!(" ({m})")).unwrap_or_default();
        println!(
            "  {} {event}{on} → sm {sub}",
            if args.uninstall { "-" } else { "+" }
        );
    }
    if args.dry_run {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    if path.exists() {
        let backup = path.with_extension("json.sm-backup");
        if !backup.exists() {
            std::fs::copy(path, &backup).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("  (the original is kept as {})", backup.display());
        }
    }
    let text =
        serde_json::to_string_pretty(&updated).map_err(|e| CliError::Usage(e.to_string()))?;
    let tmp = path.with_extension("json.sm-tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_keeps_everything_else_and_is_idempotent() {
        let original = json!({
            "model": "opus",
            "hooks": {
                "Stop": [{ "hooks": [{ "type": "command", "command": "notify-send done" }] }],
                "PreToolUse": [{ "matcher": "Bash", "hooks": [{ "type": "command", "command": "audit" }] }]
            }
        });
        let once = apply(&original, CLAUDE_HOOKS, "/usr/bin/sm", false).unwrap();
        let twice = apply(&once, CLAUDE_HOOKS, "/usr/bin/sm", false).unwrap();
        assert_eq!(once, twice);
        assert_eq!(once["model"], "opus");
        let stop = once["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2);
        assert_eq!(stop[0]["hooks"][0]["command"], "notify-send done");
        assert_eq!(stop[1]["hooks"][0]["command"], "/usr/bin/sm hook stop");
        let pre = once["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre[1]["matcher"], "Write|Edit|MultiEdit|NotebookEdit");
        // A moved binary replaces the old entries instead of adding more.
        let moved = apply(&once, CLAUDE_HOOKS, "/opt/sm/sm", false).unwrap();
        assert_eq!(moved["hooks"]["Stop"].as_array().unwrap().len(), 2);
        // Uninstalling restores the original.
        assert_eq!(
            apply(&moved, CLAUDE_HOOKS, "/opt/sm/sm", true).unwrap(),
            original
        );
        assert_eq!(
            apply(&Value::Null, CLAUDE_HOOKS, "/usr/bin/sm", true).unwrap(),
            json!({})
        );
    }

    #[test]
    fn codex_gets_its_own_events_and_keeps_its_other_hooks() {
        let original = json!({ "hooks": { "Stop": [{ "hooks": [{ "type": "command", "command": "chime" }] }] } });
        let once = apply(&original, CODEX_HOOKS, "/usr/bin/sm", false).unwrap();
        assert_eq!(
            apply(&once, CODEX_HOOKS, "/usr/bin/sm", false).unwrap(),
            once
        );
        assert_eq!(once["hooks"]["Stop"].as_array().unwrap().len(), 2);
        assert_eq!(
            once["hooks"]["Interrupt"][0]["hooks"][0]["command"],
            "/usr/bin/sm hook interrupt"
        );
        assert_eq!(once["hooks"]["PreToolUse"][0]["matcher"], "apply_patch");
        assert!(once["hooks"].get("Notification").is_none());
        assert_eq!(
            apply(&once, CODEX_HOOKS, "/usr/bin/sm", true).unwrap(),
            original
        );
    }

    #[test]
    fn only_sm_commands_are_recognised() {
        assert!(is_sm_command("/usr/local/bin/sm hook stop"));
        assert!(is_sm_command("sm auto-lock"));
        assert!(!is_sm_command("smart hook stop"));
        assert!(!is_sm_command("/usr/bin/sm status"));
        assert!(!is_sm_command("echo sm hook"));
    }

    #[test]
    fn a_non_object_is_refused() {
        assert!(apply(&json!([1, 2]), CLAUDE_HOOKS, "sm", false).is_err());
        assert!(apply(&json!({ "hooks": [] }), CLAUDE_HOOKS, "sm", false).is_err());
    }
}
