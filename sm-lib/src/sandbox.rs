//! Agents inside bubblewrap: what an agent with a shell can reach.
//!
//! Every coding agent has a shell, and without a sandbox it runs as the same Unix user as
//! sm: it could read the admin token in the state dir, drive other agents' terminals
//! through the tmux socket, or read their tokens from `/proc/<pid>/environ`. A
//! [`Sandbox`] rewrites a [`SpawnSpec`] so the agent starts under `bwrap` instead:
//!
//! - it sees the filesystem as the user does (read-write), except that the paths sm keeps
//!   private (the state dir, the tmux socket dir, anything configured) are hidden — an
//!   empty directory, or `/dev/null` for a file — and configured paths are read-only;
//! - it has its own process namespace, so `/proc` shows only its own process tree;
//! - `TMUX` and `TMUX_PANE` are not in its environment;
//! - it dies with its terminal (`--die-with-parent`);
//! - the network is untouched (agents need their model API, and `sm` reaches the server
//!   over loopback with the agent's own token — the only authority it has).
//!
//! The same wrapping serves every backend, since it only changes the argv.

use std::path::{Path, PathBuf};

use crate::backend::SpawnSpec;

/// How agents are confined (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The `bwrap` binary.
    pub program: PathBuf,
    /// Paths the agent must not see: a directory shows up empty, a file as `/dev/null`.
    pub hidden: Vec<PathBuf>,
    /// Paths the agent may read but not change.
    pub read_only: Vec<PathBuf>,
    /// Environment variables of the server the agent must not inherit (its own settings,
    /// which may hold secrets: a bot token, the database's password).
    pub hidden_env: Vec<String>,
}

impl Sandbox {
    /// A bubblewrap sandbox run with `program`, hiding and protecting nothing yet.
    pub fn bwrap(program: impl Into<PathBuf>) -> Self {
        Sandbox {
            program: program.into(),
            hidden: Vec::new(),
            read_only: Vec::new(),
            hidden_env: Vec::new(),
        }
    }

    /// The argv that runs `argv` inside the sandbox, working in `cwd`, also hiding `extra`.
    pub fn command(&self, argv: &[String], cwd: &Path, extra_hidden: &[PathBuf]) -> Vec<String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut out: Vec<String> = vec![
            s(&self.program),
            "--die-with-parent".into(),
            "--unshare-pid".into(),
            "--dev-bind".into(),
            "/".into(),
            "/".into(),
            "--proc".into(),
            "/proc".into(),
        ];
        for path in self.read_only.iter() {
            if path.exists() {
                out.extend(["--ro-bind".into(), s(path), s(path)]);
            }
        }
        for path in self.hidden.iter().chain(extra_hidden) {
            // Only what exists can be covered; a path made later is not hidden.
            if path.is_dir() {
                out.extend(["--tmpfs".into(), s(path)]);
            } else if path.exists() {
                out.extend(["--ro-bind".into(), "/dev/null".into(), s(path)]);
            }
        }
        for var in &self.hidden_env {
            out.extend(["--unsetenv".into(), var.clone()]);
        }
        out.extend([
            "--unsetenv".into(),
            "TMUX".into(),
            "--unsetenv".into(),
            "TMUX_PANE".into(),
            "--chdir".into(),
            s(cwd),
            "--".into(),
        ]);
        out.extend(argv.iter().cloned());
        out
    }

    /// Rewrites `spec` to start its program inside the sandbox, also hiding `extra`.
    pub fn wrap(&self, spec: &mut SpawnSpec, extra_hidden: &[PathBuf]) {
        let mut argv = vec![std::mem::take(&mut spec.program)];
        argv.append(&mut spec.args);
        let mut wrapped = self.command(&argv, &spec.cwd, extra_hidden).into_iter();
        spec.program = wrapped.next().unwrap_or_default();
        spec.args = wrapped.collect();
    }

    /// Whether this sandbox can run here: starts `true` inside it (blocking; a few ms).
    /// The error says what failed and how to fix it.
    pub fn probe(&self) -> Result<(), String> {
        let argv = self.command(&["true".to_string()], Path::new("/"), &[]);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!(
            "bubblewrap cannot start a sandbox here ({why}); it needs unprivileged user \
             namespaces (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu \
             kernel.apparmor_restrict_unprivileged_userns=0), or set terminal.sandbox: none \
             to run agents unsandboxed"
        ))
    }
}

/// `bwrap` on `PATH`, if installed.
pub fn find_bwrap() -> Option<PathBuf> {
    crate::backend::find_on_path("bwrap", &std::env::var_os("PATH")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_runs_after_the_options_with_its_argv_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hidden = dir.path().join("state");
        std::fs::create_dir(&hidden).expect("mkdir");
        let secret = dir.path().join("config.yaml");
        std::fs::write(&secret, "token").expect("write");
        let mut sandbox = Sandbox::bwrap("/usr/bin/bwrap");
        sandbox.hidden = vec![hidden.clone(), dir.path().join("missing")];
        let argv = vec!["claude".to_string(), "--resume".into(), "-x; rm".into()];
        let cmd = sandbox.command(&argv, Path::new("/work"), std::slice::from_ref(&secret));
        let sep = cmd.iter().position(|a| a == "--").expect("--");
        assert_eq!(&cmd[sep + 1..], argv.as_slice());
        let opts = cmd[..sep].join(" ");
        assert!(
            opts.contains(&format!("--tmpfs {}", hidden.display())),
            "{opts}"
        );
        assert!(
            opts.contains(&format!("--ro-bind /dev/null {}", secret.display())),
            "{opts}"
        );
        assert!(!opts.contains("missing"), "{opts}");
        assert!(opts.contains("--unshare-pid") && opts.contains("--unsetenv TMUX"));
        assert!(opts.ends_with("--chdir /work"), "{opts}");
    }
}
