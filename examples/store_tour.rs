//! A tour of sm's durable store: register two agents, queue messages in all three modes,
//! and take them in the order sm delivers them. Runs on the SQLite store in a temporary
//! directory.
//!
//! `cargo run -p sm-examples --example store_tour`

use sm_lib::{AgentKind, DeliveryMode, MessageStore, NewMessage, Session, SessionId};
use sm_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("sm.db")).await?;
    println!("store: {}", store.path().display());

    let mut em = Session::new(SessionId::new_random(), AgentKind::Fake, dir.path().into());
    em.name = Some("em".parse()?);
    let mut worker = Session::new(SessionId::new_random(), AgentKind::Fake, dir.path().into());
    worker.name = Some("worker".parse()?);
    worker.parent = Some(em.id.clone());
    store.insert_session(&em).await?;
    store.insert_session(&worker).await?;
    println!("registered em ({}) and worker ({})", em.id, worker.id);

    for (text, mode) in [
        ("write the parser", DeliveryMode::Sequential),
        ("then add tests", DeliveryMode::Sequential),
        ("use the new error type", DeliveryMode::Important),
        ("stop: wrong branch", DeliveryMode::Urgent),
    ] {
        let m = store
            .enqueue(NewMessage {
                target: worker.id.clone(),
                sender: Some(em.id.clone()),
                text: text.into(),
                mode,
                client_key: None,
            })
            .await?;
        println!("queued #{} ({mode}): {text}", m.id);
    }

    let mut order = Vec::new();
    while let Some(m) = store
        .claim_next(&worker.id, &DeliveryMode::BY_PRIORITY)
        .await?
    {
        println!("deliver #{} ({}): {}", m.id, m.mode, m.text);
        store.mark_delivered(m.id).await?;
        order.push(m.text);
    }
    anyhow::ensure!(
        order
            == [
                "stop: wrong branch",
                "use the new error type",
                "write the parser",
                "then add tests"
            ],
        "unexpected delivery order: {order:?}"
    );
    println!("delivered in priority order: urgent, important, then sequential FIFO");
    Ok(())
}
