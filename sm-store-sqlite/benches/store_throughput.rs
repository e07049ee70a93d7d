//! Durable store throughput: each message goes enqueue → claim → mark-delivered, the
//! enqueue fsynced before it returns, claim and mark in the WAL at once and fsynced with the
//! next enqueue (or the background sync). Run with
//! `cargo bench -p sm-store-sqlite --bench store_throughput`.
//!
//! Senders run concurrently (one target session each, as in a server with many agents), so
//! the figure includes the group commit that lets concurrent writes share an fsync.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Instant;

use sm_lib::{AgentKind, DeliveryMode, MessageStore, NewMessage, Session, SessionId};
use sm_store_sqlite::SqliteStore;

const MESSAGES: usize = 6_000;

async fn run(concurrency: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("sm.db"))
            .await
            .expect("open store"),
    );
    let mut targets = Vec::new();
    for _ in 0..concurrency {
        let s = Session::new(SessionId::new_random(), AgentKind::Fake, "/tmp".into());
        store.insert_session(&s).await.expect("insert session");
        targets.push(s.id);
    }
    let per_task = MESSAGES / concurrency;
    let start = Instant::now();
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|target| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    store
                        .enqueue(NewMessage {
                            target: target.clone(),
                            sender: None,
                            text: format!("message {i}: implement the next step of the plan"),
                            mode: DeliveryMode::Sequential,
                            client_key: None,
                        })
                        .await
                        .expect("enqueue");
                    let m = store
                        .claim_next(&target, &DeliveryMode::BY_PRIORITY)
                        .await
                        .expect("claim")
                        .expect("a message");
                    store.mark_delivered(m.id).await.expect("mark delivered");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (per_task * concurrency) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    println!("durable enqueue → claim → mark-delivered, {MESSAGES} messages, one fsync each");
    println!("{:>12} {:>14}", "senders", "messages/s");
    for concurrency in [1, 4, 16, 64] {
        let rate = run(concurrency).await;
        println!("{concurrency:>12} {rate:>14.0}");
    }
}
