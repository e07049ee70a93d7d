//! Fan-out / fan-in: four workers in parallel; the EM collects each result as that worker
//! finishes, in finishing order.
//!
//! `cargo run -p sm-examples --example fan_out -- --agent fake`

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sm_lib::{Caller, DeliveryMode, SpawnRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let tmux = common::TmuxGuard::new("sm-example-fanout");
    let store = Arc::new(sm_store_sqlite::SqliteStore::open(dir.path().join("sm.db")).await?);
    let backend = Arc::new(sm_backend_tmux::TmuxBackend::new(tmux.0.clone()).await?);
    let engine = common::engine(store, backend, dir.path(), None).await?;
    let admin = Caller::Admin;

    let mut workers = Vec::new();
    for i in 1..=4u32 {
        let mut r = SpawnRequest::new(agent.kind(), dir.path());
        r.name = Some(format!("worker-{i}").parse()?);
        workers.push((i, engine.spawn(&admin, r).await?));
    }
    // All start together; worker i works (5 - i) × 0.6 s, so they finish in reverse order.
    for (i, w) in &workers {
        let i = *i;
        let secs = f64::from(5 - i) * 0.6;
        let task = agent.prompt(
            &format!(
                "count the lines of part {i} [[sleep {secs}]] [[reply part {i}: {} lines]]",
                i * 100
            ),
            &format!("Reply with exactly: part {i} done"),
        );
        engine
            .send(&admin, &w.id, &task, DeliveryMode::Sequential)
            .await?;
        println!("worker-{i} started");
    }
    let mut pending: FuturesUnordered<_> = workers
        .iter()
        .map(|(i, w)| {
            let engine = engine.clone();
            let id = w.id.clone();
            let i = *i;
            async move { (i, engine.wait_for(&id, Duration::from_secs(600)).await) }
        })
        .collect();
    let mut order = Vec::new();
    while let Some((i, result)) = pending.next().await {
        let result = result?;
        println!(
            "worker-{i} finished: {}",
            result.last_message.unwrap_or_default()
        );
        order.push(i);
    }
    for (_, w) in &workers {
        engine.kill(&admin, &w.id).await?;
    }
    anyhow::ensure!(order.len() == 4, "every worker reported: {order:?}");
    if agent == common::Agent::Fake {
        anyhow::ensure!(
            order == [4, 3, 2, 1],
            "results arrive as workers finish: {order:?}"
        );
    }
    println!("collected all results in finishing order: {order:?}");
    Ok(())
}
