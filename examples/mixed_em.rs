//! A mixed swarm: a Claude Code worker writes, a Codex worker reviews, and the EM (this
//! program) passes the work between them until the reviewer approves. Either agent could be
//! the EM as well: sm drives both kinds the same way.
//!
//! `cargo run -p sm-examples --example mixed_em -- --agent fake` runs the fake agent in both
//! roles (as Claude Code, and with `--style codex` as Codex: its screen, its submit gap);
//! `--agent claude` runs the real Claude Code and Codex CLIs.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use sm_lib::{Caller, DeliveryMode, Engine, SessionId, SpawnRequest};

/// Sends `task` and waits for the turn it starts; its last message.
async fn ask(engine: &Engine, id: &SessionId, task: &str) -> anyhow::Result<String> {
    engine
        .send(&Caller::Admin, id, task, DeliveryMode::Sequential)
        .await?;
    let done = engine.wait_for(id, Duration::from_secs(600)).await?;
    Ok(done.last_message.unwrap_or_default())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let tmux = common::TmuxGuard::new("sm-example-mixed");
    let store = Arc::new(sm_store_sqlite::SqliteStore::open(dir.path().join("sm.db")).await?);
    let backend = Arc::new(sm_backend_tmux::TmuxBackend::new(tmux.0.clone()).await?);
    let engine = common::engine(store, backend, dir.path(), None).await?;
    let admin = Caller::Admin;

    let mut writer = SpawnRequest::new(agent.kind(), dir.path());
    writer.name = Some("writer".parse()?);
    let writer = engine.spawn(&admin, writer).await?;
    let mut reviewer = SpawnRequest::new(agent.codex_kind(), dir.path());
    reviewer.name = Some("reviewer".parse()?);
    let reviewer = engine.spawn(&admin, reviewer).await?;
    println!("writer ({}) and reviewer (codex) are ready", writer.agent);

    // The fake reviewer asks for one change, then approves.
    let reviews = [
        "CHANGES: parse() must accept an empty line",
        "APPROVED: parse() handles every case",
    ];
    let mut work = ask(
        &engine,
        &writer.id,
        &agent.prompt(
            "write parse() for comma-separated fields [[sleep 0.5]] [[reply parse() splits fields on commas]]",
            "Write a Rust fn parse(line: &str) -> Vec<String> that splits on commas. Reply with one line saying what you wrote.",
        ),
    )
    .await?;
    println!("writer: {work}");
    let mut approved = false;
    for (round, scripted) in reviews.iter().enumerate() {
        let review = ask(
            &engine,
            &reviewer.id,
            &agent.prompt(
                &format!("review this change: {work} [[sleep 0.3]] [[reply {scripted}]]"),
                &format!(
                    "Review this change: {work}. Reply APPROVED if it is fine, else CHANGES: what to fix, in one line."
                ),
            ),
        )
        .await?;
        println!("reviewer (round {}): {review}", round + 1);
        if review.contains("APPROVED") {
            approved = true;
            break;
        }
        work = ask(
            &engine,
            &writer.id,
            &agent.prompt(
                &format!("address the review: {review} [[reply parse() accepts empty lines now]]"),
                &format!("Address this review: {review}. Reply with one line saying what changed."),
            ),
        )
        .await?;
        println!("writer: {work}");
    }
    engine.kill(&admin, &writer.id).await?;
    engine.kill(&admin, &reviewer.id).await?;
    anyhow::ensure!(approved, "the reviewer approved the work");
    if agent == common::Agent::Fake {
        anyhow::ensure!(
            work == "parse() accepts empty lines now",
            "the writer's second version went to review: {work:?}"
        );
    }
    println!("approved after review");
    Ok(())
}
