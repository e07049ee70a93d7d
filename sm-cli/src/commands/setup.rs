//! `sm setup`: installs (or removes) the hooks sm needs in Claude Code's settings and in
//! Codex's `hooks.json` (the same shape), and registers `sm mcp` as an MCP server where each
//! reads its MCP servers (Claude Code's `~/.claude.json` or a project's `.mcp.json`, Codex's
//! `config.toml`), keeping every other setting, hook and server as it was.

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
    /// Remove sm's hooks and its MCP server registration.
    #[arg(long)]
    pub uninstall: bool,
    /// Only the hooks: do not register (or remove) sm's MCP server.
    #[arg(long)]
    pub no_mcp: bool,
}

/// The environment `sm mcp` needs from the agent it runs in: who it is and where sm is.
const MCP_ENV: [&str; 3] = [
    sm_lib::wire::env::SESSION_ID,
    sm_lib::wire::env::SERVER_URL,
    sm_lib::wire::env::TOKEN,
];

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

/// What `sm setup` changes in one file.
enum Change {
    /// sm's hooks in a Claude-shaped JSON settings file.
    Hooks(&'static [Hook]),
    /// `mcpServers.sm` in a Claude Code JSON file (`~/.claude.json`, `.mcp.json`).
    ClaudeMcp,
    /// `[mcp_servers.sm]` in Codex's `config.toml`.
    CodexMcp,
}

/// Claude Code reads user-scope MCP servers from `~/.claude.json` and a project's from
/// `.mcp.json` at its root.
fn claude_mcp_path(project: bool) -> Result<PathBuf, CliError> {
    if project {
        let settings = claude_settings_path(true)?;
        let root = settings
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(root.join(".mcp.json"))
    } else {
        Ok(home()?.join(".claude.json"))
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
    let mut targets: Vec<(PathBuf, Change)> = Vec::new();
    if args.agent == "claude" || args.agent == "all" {
        targets.push((
            claude_settings_path(args.project)?,
            Change::Hooks(CLAUDE_HOOKS),
        ));
        if !args.no_mcp {
            targets.push((claude_mcp_path(args.project)?, Change::ClaudeMcp));
        }
    }
    if args.agent == "codex" || args.agent == "all" {
        let hooks = codex_hooks_path()?;
        let config_toml = hooks.with_file_name("config.toml");
        targets.push((hooks, Change::Hooks(CODEX_HOOKS)));
        if !args.no_mcp {
            targets.push((config_toml, Change::CodexMcp));
        }
    }
    if targets.is_empty() {
        // A configured agent with Claude Code-style hooks.
        targets.push((
            configured_hooks_path(&args.agent, config)?,
            Change::Hooks(CLAUDE_HOOKS),
        ));
    }
    let sm = sm_path()?;
    for (path, change) in targets {
        match change {
            Change::Hooks(hooks) => install(&path, hooks, &sm, &args)?,
            Change::ClaudeMcp => register_claude_mcp(&path, &sm, &args)?,
            Change::CodexMcp => register_codex_mcp(&path, &sm, &args)?,
        }
    }
    Ok(())
}

/// This `sm` binary's path, as hooks and MCP registrations name it.
fn sm_path() -> Result<String, CliError> {
    let sm = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find the sm binary: {e}")))?;
    let sm = sm.to_string_lossy().into_owned();
    if sm.contains(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "the sm binary's path contains spaces ({sm}); install sm somewhere without spaces"
        )));
    }
    Ok(sm)
}

/// Whether an MCP server entry is sm's own (`<…/sm> mcp`, any install path).
fn is_sm_mcp(command: Option<&str>, args: &[&str]) -> bool {
    command.is_some_and(|c| Path::new(c).file_name().is_some_and(|n| n == "sm")) && args == ["mcp"]
}

/// `settings` with `mcpServers.sm` registered (or removed), everything else unchanged. A
/// server named `sm` that is not sm's own is left alone and reported.
pub fn apply_claude_mcp(settings: &Value, sm: &str, uninstall: bool) -> Result<Value, CliError> {
    let mut root = match settings {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(CliError::Usage("the file is not a JSON object".into())),
    };
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(servers) = servers.as_object_mut() else {
        return Err(CliError::Usage("\"mcpServers\" is not an object".into()));
    };
    if let Some(existing) = servers.get("sm") {
        let args: Vec<&str> = existing["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !is_sm_mcp(existing["command"].as_str(), &args) {
            return Err(CliError::Usage(format!(
                "an MCP server named \"sm\" is already configured and is not sm's ({existing}); \
                 rename or remove it first"
            )));
        }
        servers.remove("sm");
    }
    if !uninstall {
        servers.insert(
            "sm".into(),
            json!({ "type": "stdio", "command": sm, "args": ["mcp"], "env": {} }),
        );
    }
    if servers.is_empty() {
        root.remove("mcpServers");
    }
    Ok(Value::Object(root))
}

/// The JSON document in `path` (`Null` when missing or empty); never overwritten when it
/// does not parse.
fn read_json(path: &Path) -> Result<Value, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Value::Null),
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "{} is not valid JSON ({e}); fix it first, sm will not overwrite it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(CliError::Usage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// What `sm setup` is about to do, as the line it prints.
fn action(args: &Args, what: &str, path: &Path) -> String {
    let verb = match (args.dry_run, args.uninstall) {
        (true, true) => "would remove",
        (true, false) => "would install",
        (false, true) => "removing",
        (false, false) => "installing",
    };
    format!("{verb} {what} in {}:", path.display())
}

/// Writes `text` to `path` atomically, keeping the first original as `<file>.sm-backup`.
fn write_with_backup(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.exists() {
        let backup = path.with_file_name(format!("{name}.sm-backup"));
        if !backup.exists() {
            std::fs::copy(path, &backup).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("  (the original is kept as {})", backup.display());
        }
    }
    let tmp = path.with_file_name(format!("{name}.sm-tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))
}

/// Registers (or removes) `sm mcp` in a Claude Code JSON file.
fn register_claude_mcp(path: &Path, sm: &str, args: &Args) -> Result<(), CliError> {
    let current = read_json(path)?;
    let updated = apply_claude_mcp(&current, sm, args.uninstall)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let before = if current.is_null() {
        json!({})
    } else {
        current
    };
    if !announce_mcp(path, updated != before, "mcpServers.sm", sm, args) {
        return Ok(());
    }
    let text =
        serde_json::to_string_pretty(&updated).map_err(|e| CliError::Usage(e.to_string()))?;
    write_with_backup(path, &(text + "\n"))
}

/// Says what registering sm's MCP server as `entry` in `path` changes; whether to write it.
fn announce_mcp(path: &Path, changed: bool, entry: &str, sm: &str, args: &Args) -> bool {
    if !changed {
        println!(
            "{}: nothing to change (sm's MCP server is {})",
            path.display(),
            state(args)
        );
        return false;
    }
    println!("{}", action(args, "sm's MCP server", path));
    println!(
        "  {} {entry} → {sm} mcp",
        if args.uninstall { "-" } else { "+" }
    );
    !args.dry_run
}

fn state(args: &Args) -> &'static str {
    if args.uninstall {
        "not installed"
    } else {
        "already installed"
    }
}

/// `config` (Codex's `config.toml`) with `[mcp_servers.sm]` registered (or removed), its
/// other tables, values and comments unchanged. Codex hands an MCP server only a few
/// variables of its environment: `env_vars` forwards the agent's identity.
pub fn apply_codex_mcp(config: &str, sm: &str, uninstall: bool) -> Result<String, CliError> {
    let mut doc: toml_edit::DocumentMut = config
        .parse()
        .map_err(|e| CliError::Usage(format!("not valid TOML ({e}); fix it first")))?;
    if let Some(servers) = doc.get_mut("mcp_servers") {
        let Some(servers) = servers.as_table_like_mut() else {
            return Err(CliError::Usage("mcp_servers is not a table".into()));
        };
        if let Some(existing) = servers.get("sm") {
            let command = existing.get("command").and_then(|c| c.as_str());
            let args: Vec<&str> = existing
                .get("args")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if !is_sm_mcp(command, &args) {
                return Err(CliError::Usage(
                    "an MCP server named \"sm\" is already configured and is not sm's; \
                     rename or remove it first"
                        .into(),
                ));
            }
            servers.remove("sm");
        }
        if servers.is_empty() && uninstall {
            doc.remove("mcp_servers");
        }
    }
    if !uninstall {
        let mut table = toml_edit::Table::new();
        table["command"] = toml_edit::value(sm);
        table["args"] = toml_edit::value(toml_edit::Array::from_iter(["mcp"]));
        table["env_vars"] = toml_edit::value(toml_edit::Array::from_iter(MCP_ENV));
        let servers = doc.entry("mcp_servers").or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        });
        let Some(servers) = servers.as_table_like_mut() else {
            return Err(CliError::Usage("mcp_servers is not a table".into()));
        };
        servers.insert("sm", toml_edit::Item::Table(table));
    }
    Ok(doc.to_string())
}

/// Registers (or removes) `sm mcp` in Codex's `config.toml`.
fn register_codex_mcp(path: &Path, sm: &str, args: &Args) -> Result<(), CliError> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let updated = apply_codex_mcp(&current, sm, args.uninstall)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    if !announce_mcp(path, updated != current, "[mcp_servers.sm]", sm, args) {
        return Ok(());
    }
    write_with_backup(path, &updated)
}

/// Installs (or removes) `hooks` in the JSON settings file at `path`.
fn install(path: &Path, hooks: &[Hook], sm: &str, args: &Args) -> Result<(), CliError> {
    let current = read_json(path)?;
    let updated = apply(&current, hooks, sm, args.uninstall)?;
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
    println!("{}", action(args, "sm's hooks", path));
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
    let text =
        serde_json::to_string_pretty(&updated).map_err(|e| CliError::Usage(e.to_string()))?;
    write_with_backup(path, &(text + "\n"))
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
    fn the_claude_mcp_server_is_registered_once_beside_the_others_and_removed() {
        let original = json!({
            "numStartups": 3,
            "mcpServers": { "docs": { "type": "stdio", "command": "docs-mcp", "args": [] } }
        });
        let once = apply_claude_mcp(&original, "/usr/bin/sm", false).unwrap();
        assert_eq!(apply_claude_mcp(&once, "/usr/bin/sm", false).unwrap(), once);
        assert_eq!(once["numStartups"], 3);
        assert_eq!(once["mcpServers"]["docs"]["command"], "docs-mcp");
        assert_eq!(once["mcpServers"]["sm"]["command"], "/usr/bin/sm");
        assert_eq!(once["mcpServers"]["sm"]["args"], json!(["mcp"]));
        // A moved binary replaces the entry.
        let moved = apply_claude_mcp(&once, "/opt/sm", false).unwrap();
        assert_eq!(moved["mcpServers"]["sm"]["command"], "/opt/sm");
        assert_eq!(apply_claude_mcp(&moved, "/opt/sm", true).unwrap(), original);
        assert_eq!(
            apply_claude_mcp(&Value::Null, "/usr/bin/sm", true).unwrap(),
            json!({})
        );
        // Someone else's server called "sm" is never replaced.
        let theirs = json!({ "mcpServers": { "sm": { "command": "other-tool" } } });
        assert!(apply_claude_mcp(&theirs, "/usr/bin/sm", false).is_err());
        assert!(apply_claude_mcp(&theirs, "/usr/bin/sm", true).is_err());
    }

    #[test]
    fn the_codex_mcp_server_forwards_the_identity_and_keeps_the_rest_of_the_toml() {
        let original = "# my settings\nmodel = \"gpt-5.5\" # favourite\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n";
        let once = apply_codex_mcp(original, "/usr/bin/sm", false).unwrap();
        assert_eq!(apply_codex_mcp(&once, "/usr/bin/sm", false).unwrap(), once);
        assert!(once.starts_with(original), "{once}");
        let parsed: toml_edit::DocumentMut = once.parse().unwrap();
        let sm = &parsed["mcp_servers"]["sm"];
        assert_eq!(sm["command"].as_str(), Some("/usr/bin/sm"));
        let forwarded: Vec<&str> = sm["env_vars"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(forwarded, MCP_ENV);
        assert_eq!(
            apply_codex_mcp(&once, "/usr/bin/sm", true).unwrap(),
            original
        );
        let fresh = apply_codex_mcp("", "/usr/bin/sm", false).unwrap();
        assert!(fresh.contains("[mcp_servers.sm]"), "{fresh}");
        assert_eq!(apply_codex_mcp(&fresh, "/usr/bin/sm", true).unwrap(), "");
        assert!(
            apply_codex_mcp("[mcp_servers.sm]\ncommand = \"x\"\n", "/usr/bin/sm", false).is_err()
        );
        assert!(apply_codex_mcp("not = [toml", "/usr/bin/sm", false).is_err());
    }

    #[test]
    fn a_non_object_is_refused() {
        assert!(apply(&json!([1, 2]), CLAUDE_HOOKS, "sm", false).is_err());
        assert!(apply(&json!({ "hooks": [] }), CLAUDE_HOOKS, "sm", false).is_err());
    }
}
