//! `sm service install|uninstall|status`: keeps the sm server running as a per-user
//! service — a systemd user unit on Linux, a launchd agent on macOS — started at login and
//! restarted when it fails.
//!
//! Stopping or restarting the service stops only the server process: the agents' terminals
//! (tmux) keep running, and the next server re-adopts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::CliError;

/// The systemd unit's name.
pub const UNIT: &str = "sm.service";
/// The launchd agent's label.
pub const LABEL: &str = "dev.sm.server";

/// Arguments of `sm service`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with the service.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Write the service file, enable it and start the server now.
    Install {
        /// Print the service file instead of writing it.
        #[arg(long)]
        dry_run: bool,
        /// Write and enable it, but do not start it now.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop the service, disable it and remove its file (agents keep running).
    Uninstall,
    /// Say whether the service is installed and running.
    Status,
}

/// What the service runs: `sm-server` beside this `sm`, with the configuration file it was
/// given, and the `PATH` to find tmux and the agent CLIs (a service's own is minimal).
pub struct ServiceSpec {
    pub server: PathBuf,
    pub config: Option<PathBuf>,
    pub path_env: String,
    pub log_dir: PathBuf,
}

/// systemd quotes: a word with spaces or quotes in double quotes, backslashes escaped.
fn systemd_word(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let mut exec = systemd_word(&spec.server.to_string_lossy());
    if let Some(config) = &spec.config {
        exec.push_str(" --config ");
        exec.push_str(&systemd_word(&config.to_string_lossy()));
    }
    // `%` starts a specifier in unit files.
    let exec = exec.replace('%', "%%");
    let path_env = spec.path_env.replace('%', "%%");
    format!(
        "[Unit]\n\
         Description=sm: session manager for swarms of AI coding agents\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         Environment={}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # Only the server is stopped or restarted: the agents' tmux server keeps running and\n\
         # the next server re-adopts them.\n\
         KillMode=process\n\
         # Logs: journalctl --user -u sm\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        systemd_word(&format!("PATH={path_env}")),
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd agent (macOS).
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let mut args = vec![spec.server.to_string_lossy().into_owned()];
    if let Some(config) = &spec.config {
        args.push("--config".into());
        args.push(config.to_string_lossy().into_owned());
    }
    let args: String = args
        .iter()
        .map(|a| format!("    <string>{}</string>\n", xml(a)))
        .collect();
    let log = xml(&spec.log_dir.join("sm-server.log").to_string_lossy());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>Label</key>\n\
         \x20 <string>{LABEL}</string>\n\
         \x20 <key>ProgramArguments</key>\n\
         \x20 <array>\n\
         {args}\
         \x20 </array>\n\
         \x20 <key>EnvironmentVariables</key>\n\
         \x20 <dict>\n\
         \x20   <key>PATH</key>\n\
         \x20   <string>{}</string>\n\
         \x20 </dict>\n\
         \x20 <key>RunAtLoad</key>\n\
         \x20 <true/>\n\
         \x20 <key>KeepAlive</key>\n\
         \x20 <dict>\n\
         \x20   <key>SuccessfulExit</key>\n\
         \x20   <false/>\n\
         \x20 </dict>\n\
         \x20 <key>AbandonProcessGroup</key>\n\
         \x20 <true/>\n\
         \x20 <key>StandardOutPath</key>\n\
         \x20 <string>{log}</string>\n\
         \x20 <key>StandardErrorPath</key>\n\
         \x20 <string>{log}</string>\n\
         </dict>\n\
         </plist>\n",
        xml(&spec.path_env)
    )
}

fn home() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Usage("HOME is not set".into()))
}

/// Where the service file goes on this system.
fn service_file() -> Result<PathBuf, CliError> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join(format!("Library/LaunchAgents/{LABEL}.plist")));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".config"),
    };
    Ok(config.join("systemd/user").join(UNIT))
}

/// The service for this `sm`: its `sm-server`, and the configuration file named by
/// `--config` or `$SM_CONFIG`, made absolute.
fn spec(config: Option<&Path>) -> Result<ServiceSpec, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find the sm binary: {e}")))?;
    let server = exe.with_file_name("sm-server");
    if !server.exists() {
        return Err(CliError::Usage(format!(
            "sm-server is not installed beside {}; install it first (`cargo install --path \
             sm-server`), then run `sm service install` again",
            exe.display()
        )));
    }
    let config = config
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SM_CONFIG").map(PathBuf::from))
        .map(|c| std::path::absolute(&c).unwrap_or(c));
    if let Some(c) = &config {
        if !c.is_file() {
            return Err(CliError::Usage(format!(
                "the configuration file {} does not exist",
                c.display()
            )));
        }
    }
    Ok(ServiceSpec {
        server,
        config,
        path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        log_dir: home()?.join("Library/Logs/sm"),
    })
}

/// Runs a service manager command; `Err` says what failed and how.
fn manager(program: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "`{program} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

/// Runs `sm service`.
pub fn run(args: Args, config: Option<&Path>) -> Result<(), CliError> {
    let file = service_file()?;
    let macos = cfg!(target_os = "macos");
    match args.action {
        Action::Install { dry_run, no_start } => {
            let spec = spec(config)?;
            let text = if macos {
                launchd_plist(&spec)
            } else {
                systemd_unit(&spec)
            };
            if dry_run {
                println!("would write {}:\n{text}", file.display());
                return Ok(());
            }
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Usage(e.to_string()))?;
            }
            if macos {
                std::fs::create_dir_all(&spec.log_dir)
                    .map_err(|e| CliError::Usage(e.to_string()))?;
            }
            std::fs::write(&file, &text)
                .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", file.display())))?;
            println!("wrote {}", file.display());
            let outcome = if macos {
                if no_start {
                    Ok(String::new())
                } else {
                    let domain = format!("gui/{}", rustix::process::getuid().as_raw());
                    manager(
                        "launchctl",
                        &["bootstrap", &domain, &file.to_string_lossy()],
                    )
                }
            } else {
                manager("systemctl", &["--user", "daemon-reload"]).and_then(|_| {
                    let mut enable = vec!["--user", "enable"];
                    if !no_start {
                        enable.push("--now");
                    }
                    enable.push(UNIT);
                    manager("systemctl", &enable)
                })
            };
            match outcome {
                Ok(_) if no_start => {
                    println!("enabled: the server starts at your next login");
                    Ok(())
                }
                Ok(_) => {
                    if macos {
                        println!("started; logs in {}", spec.log_dir.display());
                    } else {
                        println!("enabled and started; logs: journalctl --user -u sm");
                    }
                    Ok(())
                }
                Err(why) => Err(CliError::Usage(format!(
                    "the service file is written, but it could not be enabled: {why}. {}",
                    if macos {
                        format!(
                            "Load it with `launchctl bootstrap gui/$(id -u) {}`",
                            file.display()
                        )
                    } else {
                        "Enable it with `systemctl --user daemon-reload && systemctl --user \
                         enable --now sm` once a user session manager is running \
                         (`loginctl enable-linger $USER` keeps it running without a login)"
                            .to_string()
                    }
                ))),
            }
        }
        Action::Uninstall => {
            if !file.exists() {
                println!("{}: not installed", file.display());
                return Ok(());
            }
            // Stopping may fail (not loaded, no session manager): removing the file is
            // what matters, and is done either way.
            let stopped = if macos {
                let domain = format!("gui/{}/{LABEL}", rustix::process::getuid().as_raw());
                manager("launchctl", &["bootout", &domain])
            } else {
                manager("systemctl", &["--user", "disable", "--now", UNIT])
            };
            if let Err(why) = &stopped {
                eprintln!("warning: {why}");
            }
            std::fs::remove_file(&file)
                .map_err(|e| CliError::Usage(format!("cannot remove {}: {e}", file.display())))?;
            if !macos {
                let _ = manager("systemctl", &["--user", "daemon-reload"]);
            }
            println!(
                "removed {}; the server is stopped, the agents keep running",
                file.display()
            );
            Ok(())
        }
        Action::Status => {
            if !file.exists() {
                println!("not installed ({} does not exist)", file.display());
                return Ok(());
            }
            println!("installed: {}", file.display());
            if macos {
                let domain = format!("gui/{}/{LABEL}", rustix::process::getuid().as_raw());
                match manager("launchctl", &["print", &domain]) {
                    Ok(_) => println!("loaded in launchd"),
                    Err(why) => println!("not loaded: {why}"),
                }
            } else {
                let state = |what: &str| {
                    manager("systemctl", &["--user", what, UNIT])
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|e| e.lines().next().unwrap_or_default().to_string())
                };
                println!("enabled: {}", state("is-enabled"));
                println!("active: {}", state("is-active"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            server: "/opt/sm tools/sm-server".into(),
            config: Some("/home/u/.config/sm/config.yaml".into()),
            path_env: "/usr/bin:/home/u/100%/bin".into(),
            log_dir: "/Users/u/Library/Logs/sm".into(),
        }
    }

    #[test]
    fn the_unit_runs_the_server_restarts_it_and_leaves_the_agents_running() {
        let unit = systemd_unit(&spec());
        assert!(
            unit.contains(
                "ExecStart=\"/opt/sm tools/sm-server\" --config /home/u/.config/sm/config.yaml\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains("KillMode=process"));
        assert!(unit.contains("WantedBy=default.target"));
        assert!(
            unit.contains("Environment=PATH=/usr/bin:/home/u/100%%/bin\n"),
            "{unit}"
        );
    }

    #[test]
    fn the_launchd_agent_runs_at_load_and_is_kept_alive_on_failure() {
        let plist = launchd_plist(&spec());
        assert!(plist.contains("<string>/opt/sm tools/sm-server</string>"));
        assert!(plist.contains("<string>--config</string>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"), "{plist}");
        assert!(
            plist.contains("<key>SuccessfulExit</key>\n    <false/>"),
            "{plist}"
        );
        assert!(plist.contains("/Users/u/Library/Logs/sm/sm-server.log"));
    }
}
