//! An EM pipeline driven through the library: an engineer implements, an architect
//! reviews, and the loop goes on until the architect approves (at most four rounds).
//!
//! `cargo run -p sm-examples --example em_pipeline -- --agent fake` (or `--agent claude`)

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use sm_lib::{Caller, DeliveryMode, SpawnRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let tmux = common::TmuxGuard::new("sm-example-pipeline");
    let store = Arc::new(sm_store_sqlite::SqliteStore::open(dir.path().join("sm.db")).await?);
    let backend = Arc::new(sm_backend_tmux::TmuxBackend::new(tmux.0.clone()).await?);
    let engine = common::engine(store, backend, dir.path(), None).await?;
    let admin = Caller::Admin;

    let spawn = |name: &str| {
        let mut r = SpawnRequest::new(agent.kind(), dir.path());
        r.name = Some(name.parse().expect("valid name"));
        r
    };
    let engineer = engine.spawn(&admin, spawn("engineer")).await?;
    let architect = engine.spawn(&admin, spawn("architect")).await?;
    println!("spawned engineer and architect ({:?} agents)", agent);

    let timeout = Duration::from_secs(600);
    let mut feedback = String::from("none yet");
    let mut approved_in = None;
    for round in 1..=4 {
        let task = agent.prompt(
            &format!("implement the parser, round {round}; feedback: {feedback} [[sleep 0.3]] [[reply implementation v{round} with {feedback}]]"),
            &format!("Implement a tiny arithmetic parser in parser.py. Reviewer feedback so far: {feedback}. Reply with one line describing your change."),
        );
        engine
            .send(&admin, &engineer.id, &task, DeliveryMode::Sequential)
            .await?;
        let done = engine.wait_for(&engineer.id, timeout).await?;
        let work = done.last_message.unwrap_or_default();
        println!("round {round}: engineer says: {work}");
        if agent == common::Agent::Fake {
            anyhow::ensure!(
                work.contains(&format!("v{round}")),
                "a fresh answer each round"
            );
        }

        // The scripted architect asks for tests once, then approves.
        let verdict = if round == 1 {
            "CHANGES: add tests"
        } else {
            "APPROVED"
        };
        let review = agent.prompt(
            &format!("review: {work} [[sleep 0.3]] [[reply {verdict}]]"),
            &format!("Review this change: {work}. Answer APPROVED or CHANGES: <what to fix>, on one line."),
        );
        engine
            .send(&admin, &architect.id, &review, DeliveryMode::Sequential)
            .await?;
        let verdict = engine
            .wait_for(&architect.id, timeout)
            .await?
            .last_message
            .unwrap_or_default();
        println!("round {round}: architect says: {verdict}");
        if verdict.contains("APPROVED") {
            approved_in = Some(round);
            break;
        }
        feedback = verdict;
    }
    engine.kill(&admin, &engineer.id).await?;
    engine.kill(&admin, &architect.id).await?;
    match (agent, approved_in) {
        (common::Agent::Fake, Some(2)) => println!("approved in round 2, as scripted"),
        (common::Agent::Claude, Some(n)) => println!("approved in round {n}"),
        (_, other) => anyhow::bail!("unexpected outcome: approved in {other:?}"),
    }
    Ok(())
}
