//! A notifier of your own, written against the public `Notifier` trait and plugged into an
//! embedded engine: here it prints each notification and keeps a count.
//!
//! `cargo run -p sm-examples --example custom_notifier -- --agent fake`

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sm_lib::{
    Caller, DeliveryMode, MemoryStore, Notification, NotificationKind, Notifier, SpawnRequest,
};

/// Prints every notification, one line each.
#[derive(Default)]
struct ConsoleNotifier {
    seen: Mutex<Vec<Notification>>,
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        "console"
    }

    async fn notify(&self, n: &Notification) -> sm_lib::Result<()> {
        let who = n
            .name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| n.session.to_string());
        let what = match &n.kind {
            NotificationKind::TurnCompleted { last_message } => {
                format!(
                    "finished: {}",
                    last_message.as_deref().unwrap_or("(no message)")
                )
            }
            NotificationKind::NeedsInput { prompt, .. } => {
                format!("needs input: {}", prompt.as_deref().unwrap_or("?"))
            }
            NotificationKind::Error { message } => format!("error: {message}"),
            NotificationKind::IdleTimeout { idle_secs } => format!("idle for {idle_secs}s"),
            other => format!("{other:?}"),
        };
        println!("[notify] {who} {what}");
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(n.clone());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent = common::Agent::from_args()?;
    let dir = tempfile::tempdir()?;
    let console = Arc::new(ConsoleNotifier::default());
    let backend = Arc::new(sm_backend_pty::PtyBackend::new()?);
    let engine = common::engine(
        Arc::new(MemoryStore::new()),
        backend,
        dir.path(),
        Some(console.clone()),
    )
    .await?;
    let mut request = SpawnRequest::new(agent.kind(), dir.path());
    request.name = Some("reporter".parse()?);
    let reporter = engine.spawn(&Caller::Admin, request).await?;
    let task = agent.prompt(
        "summarise the logs [[sleep 0.3]] [[reply 3 errors, all timeouts]]",
        "Reply with one short sentence: what is 2 + 2?",
    );
    engine
        .send(
            &Caller::Admin,
            &reporter.id,
            &task,
            DeliveryMode::Sequential,
        )
        .await?;
    engine
        .wait_for(&reporter.id, Duration::from_secs(600))
        .await?;
    // Notifications run in their own tasks; give this one a moment to print.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let completed = loop {
        let seen = console
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let done = seen
            .into_iter()
            .find(|n| matches!(n.kind, NotificationKind::TurnCompleted { .. }));
        if let Some(n) = done {
            break n;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no notification arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    engine.kill(&Caller::Admin, &reporter.id).await?;
    anyhow::ensure!(
        completed.session == reporter.id,
        "the notification names the session"
    );
    if agent == common::Agent::Fake {
        let NotificationKind::TurnCompleted { last_message } = completed.kind else {
            unreachable!()
        };
        anyhow::ensure!(
            last_message.as_deref() == Some("3 errors, all timeouts"),
            "unexpected message {last_message:?}"
        );
    }
    println!("the custom notifier saw the turn complete");
    Ok(())
}
