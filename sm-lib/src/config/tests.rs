//! The configuration's tests: files, keys, overrides, errors.

use std::time::Duration;

use super::*;

#[test]
fn empty_and_comment_only_files_mean_defaults() {
    for text in ["", "# nothing here\n", "---\n"] {
        let loaded = Config::from_yaml(text, None).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.warnings.is_empty());
    }
}

#[test]
fn the_keys_users_already_have_are_read() {
    let text = "server:\n  host: 0.0.0.0\n  port: 9000\npaths:\n  state_file: ~/sm-state/sessions.json\nmonitor:\n  idle_timeout: 120\n  poll_interval: 0.5\ntelegram:\n  token: \"123:abc\"\n  allowed_chat_ids: [42, \"-100\"]\n";
    let c = Config::from_yaml(text, None).unwrap().config;
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(c.server.port, 9000);
    assert_eq!(
        c.paths.state_file,
        home_dir().join("sm-state/sessions.json")
    );
    assert_eq!(c.database_path(), home_dir().join("sm-state/sm.db"));
    assert_eq!(c.monitor.idle_timeout(), Duration::from_secs(120));
    assert_eq!(c.monitor.poll_interval(), Duration::from_millis(500));
    assert_eq!(c.telegram.token.as_deref(), Some("123:abc"));
    assert_eq!(c.telegram.allowed_chat_ids, vec![ChatId(42), ChatId(-100)]);
    assert_eq!(c.server_url(), "http://127.0.0.1:9000");
}

#[test]
fn a_bad_value_names_its_key_and_line() {
    let text = "server:\n  host: localhost\n  port: eighty\n";
    let err = Config::from_yaml(text, Some(Path::new("/etc/sm.yaml"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("server.port"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("/etc/sm.yaml"), "{msg}");
}

#[test]
fn unknown_keys_are_reported_with_their_line_not_dropped_silently() {
    let text = "server:\n  port: 8420\n  colour: blue\nmystery:\n  smtp: x\n";
    let loaded = Config::from_yaml(text, None).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "unknown configuration key server.colour (line 3) is ignored".to_string(),
            "unknown configuration key mystery (line 4) is ignored".to_string(),
        ]
    );
}

#[test]
fn invalid_yaml_is_a_clear_error_with_a_line() {
    let err = Config::from_yaml("server:\n  port: [1,\n", None).unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn environment_overrides_win_and_bad_ones_name_the_variable() {
    let mut c = Config::default();
    c.apply_env(|k| match k {
        "SM_SERVER_PORT" => Some("9999".into()),
        "SM_TELEGRAM_ALLOWED_CHAT_IDS" => Some("1, 2".into()),
        "SM_TERMINAL_BACKEND" => Some("pty".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.server.port, 9999);
    assert_eq!(c.telegram.allowed_chat_ids, vec![ChatId(1), ChatId(2)]);
    assert_eq!(c.terminal.backend, BackendChoice::Pty);

    let err = Config::default()
        .apply_env(|k| (k == "SM_SERVER_PORT").then(|| "nope".into()))
        .unwrap_err();
    assert!(err.to_string().contains("$SM_SERVER_PORT"), "{err}");
}

#[test]
fn a_full_python_session_manager_config_loads_with_mappings_and_warnings() {
    let text = r#"
server:
  host: 127.0.0.1
  port: 8420
paths:
  state_file: /tmp/claude-sessions/sessions.json
  log_dir: ~/sm-logs
monitor:
  idle_timeout: 600
  poll_interval: 2
  notify:
    errors: true
    permission_prompts: true
    completion: false
    idle: false
telegram:
  token: "123:abc"
  allowed_chat_ids: [1]
claude:
  command: /opt/claude/bin/claude
  args: ["--verbose"]
  default_model: sonnet
child_agents:
  notifications:
    notify_parent_on_complete: true
    notify_parent_on_error: true
    notify_parent_on_idle: false
  auto_complete:
    enabled: true
    idle_timeout: 900
sm_send:
  db_path: /tmp/claude-sessions/queue.db
  input_poll_interval: 0.5
  input_stale_timeout: 45
  max_batch_size: 10
  urgent_delay_ms: 250
timeouts:
  spawn: 30
  response: 600
email:
  smtp_host: mail.example.com
  to: me@example.com
services:
  dashboard: true
"#;
    let loaded = Config::from_yaml(text, None).unwrap();
    let c = &loaded.config;
    c.validate(None).unwrap();
    assert_eq!(c.paths.log_dir, Some(home_dir().join("sm-logs")));
    assert!(!c.monitor.notify.completion && c.monitor.notify.errors);
    assert_eq!(c.claude.command, "/opt/claude/bin/claude");
    assert_eq!(c.claude.default_model.as_deref(), Some("sonnet"));
    assert!(c.child_agents.notifications.notify_parent_on_complete);
    assert_eq!(
        c.database_path(),
        PathBuf::from("/tmp/claude-sessions/queue.db")
    );
    assert_eq!(c.sm_send.input_stale_timeout, 45.0);
    assert_eq!(c.sm_send.urgent_delay_ms, 250);
    let w = loaded.warnings.join("\n");
    assert!(!w.contains("unknown"), "every key is known: {w}");
    for key in [
        "timeouts.spawn",
        "email.smtp_host",
        "services.dashboard",
        "child_agents.auto_complete.enabled",
        "sm_send.input_poll_interval",
        "sm_send.max_batch_size",
    ] {
        assert!(w.contains(key), "{key} is reported: {w}");
    }
    assert_eq!(loaded.warnings.len(), 6, "once each: {w}");
}

#[test]
fn nonsense_values_are_refused_by_key() {
    let loaded = Config::from_yaml("monitor:\n  idle_timeout: -5\n", None).unwrap();
    let err = loaded.config.validate(None).unwrap_err();
    assert!(err.to_string().contains("monitor.idle_timeout"), "{err}");
}

#[test]
fn a_missing_explicit_file_is_an_error_not_defaults() {
    let err = Config::load(Some(Path::new("/nonexistent/sm/config.yaml"))).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn every_environment_override_names_a_real_key_once() {
    let defaults = serde_yaml_ng::to_value(Config::default()).unwrap();
    let mut vars = std::collections::HashSet::new();
    for o in ENV_OVERRIDES {
        assert!(vars.insert(o.var), "{} is listed twice", o.var);
        assert_eq!(
            o.var,
            format!("SM_{}", o.key.replace('.', "_").to_uppercase()),
            "the variable is named after its key"
        );
        let mut node = Some(&defaults);
        for part in o.key.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        assert!(
            node.is_some(),
            "{} overrides {}, which is no key",
            o.var,
            o.key
        );
    }
}

#[test]
fn an_override_with_a_bad_choice_names_the_variable_the_key_and_the_choices() {
    let mut c = Config::default();
    let env = |k: &str| (k == "SM_TERMINAL_BACKEND").then(|| " pty ".to_string());
    c.apply_env(env).unwrap();
    assert_eq!(c.terminal.backend, BackendChoice::Pty);
    let env = |k: &str| (k == "SM_TERMINAL_SANDBOX").then(|| "chroot".to_string());
    let err = c.apply_env(env).unwrap_err().to_string();
    assert!(
        err.contains("terminal.sandbox (from $SM_TERMINAL_SANDBOX)")
            && err.contains("expected auto, bwrap or none"),
        "{err}"
    );
}

#[test]
fn agent_definitions_are_checked_by_key() {
    let check = |yaml: &str| {
        Config::from_yaml(yaml, None)
            .unwrap()
            .config
            .validate(None)
            .map_err(|e| e.to_string())
    };
    let good =
        "agents:\n  boxy:\n    command: boxy\n    input: '^> ?(.*)$'\n    default_model: m1\n";
    assert!(check(good).is_ok());
    let c = Config::from_yaml(good, None).unwrap().config;
    assert_eq!(
        c.default_model(&"boxy".parse().unwrap()),
        Some("m1"),
        "a configured agent's default model"
    );
    for (yaml, key) in [
        ("agents:\n  boxy:\n    command: ''\n", "agents.boxy.command"),
        (
            "agents:\n  boxy:\n    command: b\n    ready: '(['\n",
            "agents.boxy.ready",
        ),
        (
            "agents:\n  boxy:\n    command: b\n    input: '^> .*$'\n",
            "agents.boxy.input",
        ),
        (
            "agents:\n  boxy:\n    command: b\n    interrupt: tab\n",
            "agents.boxy.interrupt",
        ),
        ("agents:\n  Bad Name:\n    command: b\n", "agents.Bad Name"),
        ("agents:\n  claude:\n    command: b\n", "agents.claude"),
    ] {
        let err = check(yaml).unwrap_err();
        assert!(err.contains(key), "{yaml}: {err}");
    }
}
