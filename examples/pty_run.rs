//! sm without tmux: agents on raw PTYs owned by this process, state in memory.
//!
//! `cargo run -p sm-examples --example pty_run -- --agent fake`

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use sm_lib::{Caller, DeliveryMode, MemoryStore, SpawnRequest, WaitOutcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let backend = Arc::new(sm_backend_pty::PtyBackend::new()?);
    let engine = common::engine(Arc::new(MemoryStore::new()), backend, dir.path(), None).await?;
    let mut request = SpawnRequest::new(agent.kind(), dir.path());
    request.name = Some("solo".parse()?);
    let solo = engine.spawn(&Caller::Admin, request).await?;
    println!("spawned {} on a raw PTY", solo.id);
    let task = agent.prompt(
        "write a haiku about terminals [[sleep 0.5]] [[reply glowing cursor waits]]",
        "Write a three-line haiku about terminals. Reply with the haiku only.",
    );
    engine
        .send(&Caller::Admin, &solo.id, &task, DeliveryMode::Sequential)
        .await?;
    let result = engine.wait_for(&solo.id, Duration::from_secs(600)).await?;
    let answer = result.last_message.unwrap_or_default();
    println!("solo answered: {answer}");
    let screen = engine.backend().capture_screen(&solo.id).await?;
    println!(
        "its screen ends with: {:?}",
        screen.iter().rev().find(|l| !l.is_empty())
    );
    engine.kill(&Caller::Admin, &solo.id).await?;
    anyhow::ensure!(
        result.outcome == WaitOutcome::Idle,
        "the turn ended: {:?}",
        result.outcome
    );
    if agent == common::Agent::Fake {
        anyhow::ensure!(
            answer == "glowing cursor waits",
            "unexpected answer {answer:?}"
        );
    }
    Ok(())
}
