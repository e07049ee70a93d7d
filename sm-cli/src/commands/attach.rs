//! `sm attach [id]` and `sm server`: hand the terminal to another program.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use sm_lib::wire::{SessionView, SpawnBody};

use crate::client::{CliError, Client, enc, my_session, typed};

/// `sm attach`: runs the backend's attach command for the session (tmux only).
pub fn attach(client: &Client, target: Option<String>) -> Result<(), CliError> {
    let target = target.or_else(my_session).ok_or_else(|| {
        CliError::Usage("name the session to attach to: sm attach <id|name>".into())
    })?;
    let view: SessionView = client.get_as(&format!("/sessions/{}", enc(&target)))?;
    let argv = view.attach.as_deref().unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Err(CliError::Usage(why_no_attach(client, &view, &target)));
    };
    let err = std::process::Command::new(program).args(args).exec();
    Err(CliError::Usage(format!("cannot run {program}: {err}")))
}

/// `sm server`: runs `sm-server` (installed beside `sm`) in the foreground.
pub fn server(config: Option<PathBuf>) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::Usage(e.to_string()))?;
    let server = exe.with_file_name("sm-server");
    if !server.exists() {
        return Err(CliError::Usage(format!(
            "sm-server is not installed beside {}; install it with \
             `cargo install --path sm-server` or run `cargo run --release -p sm-server`",
            exe.display()
        )));
    }
    let mut cmd = std::process::Command::new(&server);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let err = cmd.exec();
    Err(CliError::Usage(format!(
        "cannot run {}: {err}",
        server.display()
    )))
}

/// `sm new [dir]`: spawn an agent there and attach to it.
pub fn new(
    client: &Client,
    dir: Option<PathBuf>,
    agent: String,
    name: Option<String>,
    no_attach: bool,
    json_out: bool,
) -> Result<(), CliError> {
    let dir = super::absolute_dir(dir)?;
    let answer = client.post_idempotent(
        "/sessions",
        &SpawnBody {
            agent: Some(agent),
            name,
            working_dir: Some(dir),
            idempotency_key: Some(sm_lib::SessionId::new_random().to_string()),
            ..SpawnBody::default()
        },
    )?;
    if no_attach && json_out {
        crate::output::json(&answer);
        return Ok(());
    }
    let view: SessionView = typed(answer)?;
    if no_attach {
        super::spawn::print_spawned(&view.session);
        return Ok(());
    }
    attach(client, Some(view.session.id.to_string()))
}

/// Why a session offers no attach command: it runs on another node of the cluster (whose
/// machine has its terminal), or this server's backend has no terminals to attach to.
fn why_no_attach(client: &Client, view: &SessionView, target: &str) -> String {
    let status: Option<sm_lib::wire::Status> = client.get_as("/status").ok();
    if let (Some(status), Some(node)) = (status, view.session.node.as_deref()) {
        if status.node.as_deref() != Some(node) {
            let url = status
                .nodes
                .iter()
                .find(|n| n.name == node)
                .map(|n| format!(" ({})", n.url))
                .unwrap_or_default();
            return format!(
                "{target} runs on node {node}{url}: its terminal is on that machine; run `sm attach {target}` there"
            );
        }
    }
    "this server's terminal backend does not allow attaching (use tmux)".into()
}
