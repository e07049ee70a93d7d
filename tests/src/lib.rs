//! The end-to-end harness every test and benchmark that drives the real binaries shares: a
//! real `sm-server` (SQLite, its own tmux socket) in a temporary state dir, agents whose
//! Claude Code hooks call the real `sm`, the agent's own token as the agent sees it, one
//! `until` that polls a condition with a deadline, and a git-init helper.
//!
//! Binaries are found beside the running test or benchmark (`target/<profile>/`), so a
//! test sees the debug build and a benchmark the release build; `SM_BIN_DIR` overrides.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // a harness fails loudly by design

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for any one condition.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Where the workspace's binaries are: `SM_BIN_DIR`, else the profile dir of the running
/// executable (`target/debug` for a test in `target/debug/deps`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SM_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of the workspace (`sm`, `sm-server`, the fakes), built in this profile.
pub fn sibling(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built; build the workspace first (cargo build --workspace, with --release for a benchmark)",
        p.display()
    );
    p
}

/// The `sm` binary.
pub fn sm_bin() -> PathBuf {
    sibling("sm")
}

/// The real-agent tiers' pinned CLIs.
pub const CLAUDE_PACKAGE: &str = "@anthropic-ai/claude-code@2.1.330";
/// See [`CLAUDE_PACKAGE`].
pub const CODEX_PACKAGE: &str = "@openai/codex@0.169.0";

/// The real Claude Code CLI (see [`npm_cli`]), installed once per test process: tests run
/// in parallel, and two installs into one cache (or a run during an install) fail.
pub fn real_claude_cli() -> Result<PathBuf, String> {
    static CLI: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    CLI.get_or_init(|| {
        npm_cli(
            CLAUDE_PACKAGE,
            "claude",
            "SM_CLAUDE_BIN",
            "SM_CLAUDE_CACHE",
            "claude-cache",
        )
    })
    .clone()
}

/// The real Codex CLI, like [`real_claude_cli`].
pub fn real_codex_cli() -> Result<PathBuf, String> {
    static CLI: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    CLI.get_or_init(|| {
        npm_cli(
            CODEX_PACKAGE,
            "codex",
            "SM_CODEX_BIN",
            "SM_CODEX_CACHE",
            "codex-cache",
        )
    })
    .clone()
}

/// A fake model API (`sm-fake-anthropic`, `sm-fake-openai`) as a child process, its URL
/// read from the line it prints first; killed when dropped.
pub struct FakeApi {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl FakeApi {
    /// Starts the binary `name` with `args`.
    pub fn start(name: &str, args: &[&std::ffi::OsStr]) -> FakeApi {
        use std::io::BufRead;
        let mut child = Command::new(sibling(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} printed {line:?}"))
            .to_string();
        FakeApi { child, url }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API key the real Claude Code is given against the fake API.
const OFFLINE_ANTHROPIC_KEY: &str = "sk-ant-offline-test-0123456789abcdefghij";

/// Server options under which the real Claude Code (`claude`) runs offline against the
/// fake Messages API at `api_url`: first-run screens skipped, the key approved, the work
/// dirs trusted, sm's hooks installed by `sm setup`, `work/repo` a git repository.
pub fn real_claude_options(claude: &Path, api_url: &str) -> Options {
    let key = OFFLINE_ANTHROPIC_KEY;
    let claude_json = serde_json::json!({
        "hasCompletedOnboarding": true,
        "customApiKeyResponses": { "approved": [&key[key.len() - 20..]], "rejected": [] },
        "projects": {
            "{dir}/work": { "hasTrustDialogAccepted": true },
            "{dir}/work/repo": { "hasTrustDialogAccepted": true },
        },
    });
    let env = |k: &str, v: &str| (k.to_string(), v.to_string());
    Options {
        hooks: Hooks::Setup(serde_json::json!({ "skipDangerousModePermissionPrompt": true })),
        home_files: vec![(".claude.json".into(), claude_json.to_string())],
        git_repo: true,
        extra_config: format!(
            "claude:\n  command: {}\n  args: [\"--permission-mode\", \"default\"]\n",
            claude.display()
        ),
        env: vec![
            env("ANTHROPIC_BASE_URL", api_url),
            env("ANTHROPIC_API_KEY", key),
            env("DISABLE_AUTOUPDATER", "1"),
            env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            env("DISABLE_TELEMETRY", "1"),
            env("DISABLE_ERROR_REPORTING", "1"),
            env("IS_SANDBOX", "1"),
        ],
        ..Options::default()
    }
}

/// Adds to `options` what the real Codex (`codex`) needs to run offline against the fake
/// Responses API at `api_url`: its `config.toml` (the fake provider, no update check or
/// telemetry, the work dirs trusted, the model-upgrade notice seen) and an agents' temp
/// dir `tmp` outside the state dir (Codex will not sandbox commands when its home is under
/// the temp dir). Install sm's Codex hooks with [`Server::setup_codex_hooks`] once the
/// server is up.
pub fn add_real_codex(options: &mut Options, codex: &Path, api_url: &str, tmp: &Path) {
    let config = format!(
        r#"model = "gpt-5.5"
model_provider = "fake"
check_for_update_on_startup = false
[model_providers.fake]
name = "fake"
base_url = "{api_url}/v1"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
[feedback]
enabled = false
[projects."{{dir}}/work"]
trust_level = "trusted"
[projects."{{dir}}/work/repo"]
trust_level = "trusted"
[notice]
hide_full_access_warning = true
[notice.model_migrations]
"gpt-5.5" = "gpt-6-sol"
"#
    );
    options
        .home_files
        .push((".codex/config.toml".into(), config));
    options.git_repo = true;
    options
        .extra_config
        .push_str(&format!("codex:\n  command: {}\n", codex.display()));
    options
        .env
        .push(("TMPDIR".into(), tmp.display().to_string()));
}

/// A pinned agent CLI from npm, for the real-agent tiers: `$<bin_var>` when set, else
/// `<cache>/node_modules/.bin/<bin>`, installed there with npm when missing, with cache
/// `$<cache_var>` or `target/<default_cache>`. Checked with `--version`; `Err` says why it
/// cannot be had (no npm, a failed install).
pub fn npm_cli(
    package: &str,
    bin: &str,
    bin_var: &str,
    cache_var: &str,
    default_cache: &str,
) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(bin_var) {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os(cache_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().parent().unwrap().join(default_cache));
    let exe = cache.join("node_modules/.bin").join(bin);
    if !exe.exists() {
        eprintln!("installing {package} into {}", cache.display());
        std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg(package)
            .output()
            .map_err(|e| format!("npm is not available: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install {package} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
    }
    let version = Command::new(&exe)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !version.status.success() {
        return Err(format!("{} --version failed", exe.display()));
    }
    Ok(exe)
}

/// The Claude Code hooks the agents of a [`Server`] get in their `~/.claude/settings.json`.
#[derive(Default)]
pub enum Hooks {
    /// Every sm hook, calling the real `sm` by its path (what the fake agent needs).
    #[default]
    All,
    /// These settings, then `sm setup` run against the agents' home, the way a user
    /// installs sm's hooks (the real-Claude tier).
    Setup(Value),
    /// These settings as they are (`{sm}` in a string stands for the `sm` binary's path,
    /// `{dir}` for the state dir).
    Exactly(Value),
}

/// How to start a [`Server`].
#[derive(Default)]
pub struct Options {
    /// YAML appended to the generated configuration (`{dir}` stands for the state dir).
    pub extra_config: String,
    /// Listen on a fixed port (so agents' hooks still reach a restarted server).
    pub fixed_port: bool,
    /// Extra environment for the server (and so for its agents); later entries win, and
    /// they win over the harness's defaults (`SM_LOG=info`, `HOME`, `PATH`).
    pub env: Vec<(String, String)>,
    /// `terminal.sandbox` (default: the server's default, `auto`). Tests whose agents must
    /// reach outside (a hook that kills the server) say `none`.
    pub sandbox: Option<&'static str>,
    /// More `server.*` settings, as indented YAML lines (`"  max_connections: 8\n"`).
    pub server_yaml: String,
    /// `terminal.backend` (default `tmux`).
    pub backend: Option<&'static str>,
    /// The agents' Claude Code hooks.
    pub hooks: Hooks,
    /// Files written under the agents' home before the server starts, as (path relative
    /// to home, contents); `{dir}` in the contents stands for the state dir.
    pub home_files: Vec<(String, String)>,
    /// Make `work/repo` a git repository (with one commit).
    pub git_repo: bool,
}

/// A running `sm-server` with its state dir, tmux socket and agents; dropped, it stops the
/// server and kills its tmux server (`SM_TEST_KEEP=1` keeps the state dir to look at).
pub struct Server {
    /// The server process.
    pub child: Child,
    /// The state dir (config, database, log, the agents' home and work dirs).
    pub dir: tempfile::TempDir,
    /// The tmux socket name its agents run on.
    pub socket: String,
    options: Options,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("SM_TEST_KEEP").is_some() {
            // Keep the state dir (and the agents) to look at after a failure.
            eprintln!(
                "kept {} (tmux socket {})",
                self.dir.path().display(),
                self.socket
            );
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let _ = dir.keep();
            return;
        }
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

impl Server {
    /// A server whose Claude agent kind points nowhere (fake agents and shells only).
    pub fn start() -> Server {
        Self::start_with("claude:\n  command: sm-test-no-claude-here\n")
    }

    /// [`Server::start`] with this YAML appended to the configuration.
    pub fn start_with(extra_config: &str) -> Server {
        Self::start_opts(Options {
            extra_config: extra_config.to_string(),
            ..Options::default()
        })
    }

    /// A server started as `options` say, once it is up.
    pub fn start_opts(options: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("sm-test-{}-{}", std::process::id(), unique());
        let sm = sm_bin();
        let sm = sm.display();
        let home = dir.path().join("home");
        let dir_text = dir.path().display().to_string();
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        if options.git_repo {
            git_init(&dir.path().join("work/repo"));
        }
        for (path, contents) in &options.home_files {
            let path = home.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents.replace("{dir}", &dir_text)).unwrap();
        }
        let settings = home.join(".claude/settings.json");
        match &options.hooks {
            Hooks::All => {
                let hook = |arg: &str| serde_json::json!([{ "hooks": [{ "type": "command", "command": format!("{sm} {arg}") }] }]);
                let all = serde_json::json!({ "hooks": {
                    "SessionStart": hook("hook session-start"),
                    "UserPromptSubmit": hook("hook user-prompt-submit"),
                    "Stop": hook("hook stop"),
                    "Notification": hook("hook notification"),
                    "SessionEnd": hook("hook session-end"),
                    "PostToolUse": hook("hook post-tool-use"),
                    "PreToolUse": [{ "matcher": "Write|Edit|MultiEdit|NotebookEdit", "hooks": [{ "type": "command", "command": format!("{sm} auto-lock") }] }],
                }});
                std::fs::write(&settings, all.to_string()).unwrap();
            }
            Hooks::Setup(base) => {
                std::fs::write(&settings, base.to_string()).unwrap();
                let setup = Command::new(sm_bin())
                    .arg("setup")
                    .env("HOME", &home)
                    .output()
                    .unwrap();
                assert!(
                    setup.status.success(),
                    "sm setup failed: {}",
                    String::from_utf8_lossy(&setup.stderr)
                );
            }
            Hooks::Exactly(value) => {
                let text = value
                    .to_string()
                    .replace("{sm}", &sm.to_string())
                    .replace("{dir}", &dir_text);
                std::fs::write(&settings, text).unwrap();
            }
        }
        let port = if options.fixed_port { free_port() } else { 0 };
        let config = format!(
            "server:\n  port: {port}\n{}paths:\n  state_file: {}/state/state.json\nterminal:\n  backend: {}\n  tmux_socket: {socket}\n{}fake_agent:\n  program: {}\nlocks:\n  auto_wait: 1\n{}",
            options.server_yaml,
            dir_text,
            options.backend.unwrap_or("tmux"),
            options
                .sandbox
                .map(|s| format!("  sandbox: {s}\n"))
                .unwrap_or_default(),
            sibling("sm-fake-agent").display(),
            options.extra_config.replace("{dir}", &dir_text),
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let child = Self::launch(dir.path(), &options);
        let mut server = Server {
            child,
            dir,
            socket,
            options,
            port,
        };
        server.wait_up();
        server
    }

    fn launch(dir: &Path, options: &Options) -> Child {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(sibling("sm-server"));
        cmd.arg("--config")
            .arg(dir.join("config.yaml"))
            .env("HOME", dir.join("home"))
            .env("PATH", path)
            .env("SM_FAKE_AGENT_LOG", dir.join("prompts.jsonl"))
            .env("SM_LOG", "info")
            .env_remove("SM_SESSION_ID")
            .env_remove("TMUX")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    fn url_file(&self) -> PathBuf {
        self.dir.path().join("state/server.url")
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while !self.url_file().exists() {
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| {
                        !l.trim_start()
                            .starts_with(|c: char| c.is_ascii_digit() && l.contains("::"))
                    })
                    .filter(|l| !l.trim_start().starts_with("at "))
                    .take(30)
                    .collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let sockets = Command::new("ss")
                    .args(["-tanp"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let port = format!(":{}", self.port);
                let holders: Vec<&str> = sockets
                    .lines()
                    .filter(|l| l.contains(&port) && !l.starts_with("TIME-WAIT"))
                    .collect();
                panic!(
                    "the server did not start (exit: {exited:?}); its log ends:\n{}\nsockets on {port}:\n{}",
                    tail.join("\n"),
                    holders.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's URL as recorded in its state dir.
    pub fn url(&self) -> String {
        std::fs::read_to_string(self.url_file())
            .unwrap()
            .trim()
            .to_string()
    }

    /// The admin token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Kills the server with SIGKILL (no clean-up runs) and waits for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed server leaves its URL file behind; a restart writes it afresh.
        let _ = std::fs::remove_file(self.url_file());
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            // A server a test stopped with SIGSTOP takes the TERM only once continued.
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
        }
        let _ = self.child.wait();
    }

    /// Starts the server again on the same state dir, tmux socket and port.
    pub fn restart(&mut self) {
        assert!(
            !matches!(self.child.try_wait(), Ok(None)),
            "restart a stopped server"
        );
        self.child = Self::launch(self.dir.path(), &self.options);
        self.wait_up();
    }

    /// Whether the server process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The directory `sm` runs in and agents are spawned in by default.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The fixed port (0 unless [`Options::fixed_port`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `sm` command run as a human (admin token from the state dir).
    pub fn sm_command(&self) -> Command {
        let mut cmd = Command::new(sm_bin());
        cmd.env("SM_CONFIG", self.dir.path().join("config.yaml"))
            .env_remove("SM_SESSION_ID")
            .env_remove("CLAUDE_SESSION_MANAGER_ID")
            .env_remove("SM_SERVER_URL")
            .env_remove("SM_API_URL")
            .env_remove("SM_TOKEN")
            .current_dir(self.work());
        cmd
    }

    /// Runs `sm` as a human.
    pub fn sm(&self, args: &[&str]) -> Output {
        self.sm_command().args(args).output().unwrap()
    }

    /// Runs `sm` as a human and returns its output, failing the test when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.sm(args);
        assert!(
            out.status.success(),
            "sm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`Server::ok`] with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// The live session with this name, if any.
    pub fn find(&self, name: &str) -> Option<Value> {
        let all = self.json(&["all"]);
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name && s["status"] != "dead")
            .cloned()
    }

    /// The session with this name, live or not (the newest).
    pub fn session_any(&self, name: &str) -> Value {
        self.json(&["all"])
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no session {name}"))
    }

    /// The live session with this name.
    pub fn session(&self, name: &str) -> Value {
        self.find(name)
            .unwrap_or_else(|| panic!("no session {name}"))
    }

    /// Every prompt the fake agents received, as `(session id, prompt)` in arrival order.
    pub fn all_prompts(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.path().join("prompts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a prompt-log line is not JSON ({e}): {l:?}"));
                (
                    v["session_id"].as_str().unwrap_or_default().to_string(),
                    v["prompt"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Every prompt the live session `name` received, in order.
    pub fn prompts(&self, name: &str) -> Vec<String> {
        let Some(session) = self.find(name) else {
            return Vec::new();
        };
        let id = session["id"].as_str().unwrap().to_string();
        self.all_prompts()
            .into_iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, p)| p)
            .collect()
    }

    /// [`until`] with the harness's [`DEADLINE`].
    pub fn until<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        until(what, DEADLINE, f)
    }

    /// Waits until `name` received at least `n` prompts; returns them.
    pub fn wait_prompts(&self, name: &str, n: usize) -> Vec<String> {
        self.until(&format!("{n} prompts for {name}"), || {
            let p = self.prompts(name);
            (p.len() >= n).then_some(p)
        })
    }

    /// Waits until `name` has this status.
    pub fn wait_status(&self, name: &str, status: &str) {
        self.until(&format!("{name} to be {status}"), || {
            (self.session(name)["status"] == status).then_some(())
        });
    }

    /// A raw HTTP request to the server; returns the status and the body as JSON (or a
    /// string when it is not JSON).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        self.http_headers(method, path, &headers, body)
    }

    /// Like [`Server::http`] with one header of the caller's choosing and no other.
    pub fn http_with_header(
        &self,
        method: &str,
        path: &str,
        header: (&str, &str),
        body: &[u8],
    ) -> (u16, Value) {
        self.http_headers(method, path, &[header], body)
    }

    /// An HTTP request with these headers (no token unless one is among them).
    pub fn http_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(DEADLINE))
            .build()
            .into();
        let url = format!("{}{path}", self.url());
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(body.to_vec()).unwrap();
        let mut response = match agent.run(request) {
            Ok(r) => r,
            // The server refuses a body over its limit with 413 and closes while the client
            // is still writing: on a busy machine the client sees the broken pipe before the
            // answer. That is the refusal.
            Err(ureq::Error::Io(e))
                if body.len() > sm_lib::wire::MAX_BODY_BYTES
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ) =>
            {
                return (
                    413,
                    Value::String(format!("closed while the body was sent: {e}")),
                );
            }
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

/// [`until`] for async tests: awaits `f` until it returns `Some`, without blocking the
/// runtime's thread, failing the test after `limit`.
pub async fn until_async<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs git in `dir` with an identity of its own (so it works where none is configured).
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=sm", "-c", "user.email=sm@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git must be installed to run these tests");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `repo` (created if missing) a git repository with one empty commit, so worktrees
/// can be added to it.
pub fn git_init(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q"]);
    git(repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
}

/// Polls `f` until it returns `Some`, failing the test after `limit`.
pub fn until<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    until_explained(what, limit, f, String::new)
}

/// [`until`], failing with what `explain` says about the state it gave up in.
pub fn until_explained<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}{}", explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A number unique within this test process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % 100_000 * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A loopback port that was free a moment ago, below Linux's ephemeral range: while a
/// restarting server is down, a client's connect to an ephemeral-range port can connect to
/// itself (source port = destination port) and hold the port.
pub fn free_port() -> u16 {
    (0..1000)
        .map(|i| 20_000 + ((unique() + i * 7919) % 12_000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap()
}

/// A command's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Server {
    /// Reads the server's store from its database file (the server may be running:
    /// SQLite's WAL lets another process read alongside).
    pub fn read_store<T>(
        &self,
        read: impl AsyncFnOnce(&sm_store_sqlite::SqliteStore) -> sm_lib::Result<T>,
    ) -> T {
        let db = self.dir.path().join("state/sm.db");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = sm_store_sqlite::SqliteStore::open(&db).await.unwrap();
            read(&store).await.unwrap()
        })
    }

    /// Every message in the server's store.
    pub fn messages(&self) -> Vec<sm_lib::Message> {
        use sm_lib::MessageStore;
        self.read_store(async |store| store.list_messages(&sm_lib::MessageFilter::default()).await)
    }

    /// Every registered wait.
    pub fn waits(&self) -> Vec<sm_lib::Wait> {
        use sm_lib::MessageStore;
        self.read_store(async |store| store.list_waits(None).await)
    }

    /// The stored message whose text is `text`, once it exists.
    pub fn message(&self, text: &str) -> Option<sm_lib::Message> {
        self.messages().into_iter().find(|m| m.text == text)
    }

    /// Replaces the agents' user-level Claude Code hooks for `event` (`None` removes them).
    /// Agents read their hooks when they start, so call it before spawning.
    pub fn set_user_hook(&self, event: &str, command: Option<&str>) {
        let path = self.dir.path().join("home/.claude/settings.json");
        let mut settings: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let hooks = settings["hooks"].as_object_mut().unwrap();
        match command {
            Some(c) => {
                hooks.insert(
                    event.to_string(),
                    serde_json::json!([{ "hooks": [{ "type": "command", "command": c }] }]),
                );
            }
            None => {
                hooks.remove(event);
            }
        }
        std::fs::write(&path, settings.to_string()).unwrap();
    }

    /// A hook command that SIGKILLs this server (whatever its pid then) the first time it
    /// runs after [`Server::arm_kill`], and does nothing otherwise. Runs in the agent, so
    /// the kill lands at an exact point of the agent's own sequence.
    pub fn kill_hook_command(&self) -> String {
        let dir = self.dir.path().display();
        format!(
            "mv {dir}/kill.armed {dir}/kill.taken.$$ 2>/dev/null && kill -9 $(cat {dir}/server.pid); exit 0"
        )
    }

    /// Runs a tmux command on this server's socket; its standard output (empty when tmux
    /// could not run or refused).
    pub fn tmux(&self, args: &[&str]) -> String {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The tmux target of a session's pane.
    pub fn pane(&self, id: &str) -> String {
        format!("={}:={id}", self.socket)
    }

    /// The API token of the session named `name`, read from its agent's environment (what
    /// the agent itself was given). Tmux backend only.
    pub fn agent_token(&self, name: &str) -> String {
        let id = self.session(name)["id"].as_str().unwrap().to_string();
        self.token_of(&id)
    }

    /// [`Server::agent_token`] by session id.
    pub fn token_of(&self, id: &str) -> String {
        let pid = self.tmux(&["display-message", "-p", "-t", &self.pane(id), "#{pane_pid}"]);
        let pid = pid.trim();
        assert!(!pid.is_empty(), "no tmux pane for session {id}");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let prefix = format!("{}=", sm_lib::wire::env::TOKEN);
        environ
            .split(|b| *b == 0)
            .find_map(|entry| {
                std::str::from_utf8(entry)
                    .ok()?
                    .strip_prefix(&prefix)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("session {id}'s agent has no {prefix}"))
    }

    /// How many entries of `kind` (`user`, `assistant`) in the Claude Code transcripts
    /// under the agents' home hold `text`: what the model was given, or said.
    pub fn claude_transcript_entries(&self, kind: &str, text: &str) -> usize {
        let mut n = 0;
        let projects = self.dir.path().join("home/.claude/projects");
        for dir in std::fs::read_dir(projects).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let body = std::fs::read_to_string(file.path()).unwrap_or_default();
                n += body
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| {
                        v["type"] == kind && v["message"]["content"].to_string().contains(text)
                    })
                    .count();
            }
        }
        n
    }

    /// The state dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs sm's Codex hooks into the agents' `~/.codex/hooks.json` the way a user
    /// does (`sm setup --agent codex`). Codex reads them when it starts.
    pub fn setup_codex_hooks(&self) {
        let setup = Command::new(sm_bin())
            .args(["setup", "--agent", "codex"])
            .env("HOME", self.dir.path().join("home"))
            .env_remove("CODEX_HOME")
            .output()
            .unwrap();
        assert!(
            setup.status.success(),
            "sm setup --agent codex: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
    }

    /// Makes the next run of [`Server::kill_hook_command`] kill the server.
    pub fn arm_kill(&self) {
        std::fs::write(
            self.dir.path().join("server.pid"),
            self.child.id().to_string(),
        )
        .unwrap();
        std::fs::write(self.dir.path().join("kill.armed"), "").unwrap();
    }

    /// Whether an armed kill is still waiting for its hook.
    pub fn kill_armed(&self) -> bool {
        self.dir.path().join("kill.armed").exists()
    }

    /// Waits until the server process has died (killed by a hook), then restarts it on the
    /// same state dir, socket and port.
    pub fn restart_after_death(&mut self) {
        until("the server to die", DEADLINE, || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        self.kill9();
        self.restart();
    }
}

/// What the latency benchmarks share: a wall clock in ms and a p50/p99 report line.
pub mod bench {
    /// Wall-clock milliseconds since the epoch (comparable with the fake agent's `at_ms`
    /// and a hook wrapper's `date +%s%N`).
    pub fn now_ms() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0
    }

    /// Prints `label` with the p50 and p99 of `samples` (ms), and whether they meet
    /// `target` (p50, p99).
    pub fn report(label: &str, mut samples: Vec<f64>, target: Option<(f64, f64)>) {
        samples.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        let (p50, p99) = (pct(0.5), pct(0.99));
        let verdict = match target {
            Some((t50, t99)) if p50 < t50 && p99 < t99 => format!("meets < {t50} / {t99} ms"),
            Some((t50, t99)) => format!("MISSES < {t50} / {t99} ms"),
            None => String::new(),
        };
        println!(
            "{label:<34} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  n={:<4} {verdict}",
            samples.len()
        );
    }

    /// The fake agents' prompt log in `dir`: (session id, prompt, when it was submitted).
    pub fn prompts(dir: &std::path::Path) -> Vec<(String, String, f64)> {
        std::fs::read_to_string(dir.join("prompts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["session_id"].as_str().unwrap_or("").to_string(),
                    v["prompt"].as_str().unwrap_or("").to_string(),
                    v["at_ms"].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    }

    /// `POST url` with `body` as `token`; the answer's JSON, which must be a success.
    pub fn post_json(
        agent: &ureq::Agent,
        url: &str,
        token: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let mut r = agent
            .post(url)
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body)
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        assert!(status.is_success(), "{url}: {v}");
        v
    }

    /// Claude Code hooks for fake agents whose Stop hook first timestamps the moment it
    /// starts into `{dir}/stops` (`<session id> <ns since the epoch>`).
    pub fn timed_stop_hooks() -> serde_json::Value {
        let hook =
            |cmd: &str| serde_json::json!([{ "hooks": [{ "type": "command", "command": cmd }] }]);
        serde_json::json!({ "hooks": {
            "SessionStart": hook("{sm} hook session-start"),
            "UserPromptSubmit": hook("{sm} hook user-prompt-submit"),
            "Stop": hook("sh -c 'echo \"$SM_SESSION_ID $(date +%s%N)\" >> {dir}/stops; exec {sm} hook stop'"),
        }})
    }

    /// When each Stop hook of `session` started (ms), from `{dir}/stops`.
    pub fn stops(dir: &std::path::Path, session: &str) -> Vec<f64> {
        std::fs::read_to_string(dir.join("stops"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(session))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|ns| ns / 1e6)
            .collect()
    }
}
/// The configuration lines that make a test server node `name` of the cluster on the
/// PostgreSQL database `db`: a small pool, and a lease short enough (2 s) that a dead node
/// is seen unreachable quickly.
pub fn cluster_node_config(db: &str, name: &str) -> String {
    format!("store:\n  postgres_url: {db}\n  pool_size: 4\nnode:\n  name: {name}\n  lease: 2\n")
}

/// Runs `sm-server` with `config` until it exits (it must, promptly); returns its exit code
/// and what it printed.
pub fn run_server_expecting_exit(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let mut child = std::process::Command::new(sibling("sm-server"))
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = until(
        "the server to give up",
        std::time::Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    (
        status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
