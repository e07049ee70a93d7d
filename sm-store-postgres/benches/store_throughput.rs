//! Store throughput on PostgreSQL: each message goes enqueue → claim → mark-delivered,
//! every step committed synchronously. Runs against a throwaway server of its own (see
//! `test_cluster`), on loopback, with PostgreSQL's default settings. Run with
//! `cargo bench -p sm-store-postgres --bench store_throughput`.
//!
//! Senders run concurrently, one target session each, as in a server with many agents, so
//! the figure includes PostgreSQL's group commit of concurrent transactions.
#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::sync::Arc;
use std::time::Instant;

use sm_lib::{AgentKind, DeliveryMode, MessageStore, NewMessage, Session, SessionId};
use sm_store_postgres::test_cluster::TestCluster;
use sm_store_postgres::{PostgresConfig, PostgresStore};

const MESSAGES: usize = 6_000;

async fn run(cluster: &TestCluster, concurrency: usize) -> f64 {
    let url = cluster.fresh_database().await.unwrap();
    let mut config = PostgresConfig::new(url);
    config.pool_size = concurrency.max(1);
    let store = Arc::new(PostgresStore::connect(config).await.unwrap());
    let mut targets = Vec::new();
    for _ in 0..concurrency {
        let s = Session::new(SessionId::new_random(), AgentKind::Fake, "/tmp".into());
        store.insert_session(&s).await.unwrap();
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
                        .unwrap();
                    let m = store
                        .claim_next(&target, &DeliveryMode::BY_PRIORITY)
                        .await
                        .unwrap()
                        .unwrap();
                    store.mark_delivered(m.id).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_task * concurrency) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("this benchmark needs PostgreSQL's server programs: {e}"));
    println!(
        "PostgreSQL: enqueue → claim → mark-delivered, {MESSAGES} messages, 3 synchronous commits each"
    );
    println!("{:>12} {:>14}", "senders", "messages/s");
    for concurrency in [1, 4, 16, 64] {
        let rate = run(&cluster, concurrency).await;
        println!("{concurrency:>12} {rate:>14.0}");
    }
}
