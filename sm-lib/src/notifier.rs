//! The [`Notifier`] trait — how sm tells people what agents are doing — and
//! [`FanoutNotifier`], which sends each notification to several notifiers at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::types::{SessionId, SessionName};

/// What a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// The agent finished a turn.
    TurnCompleted {
        /// Its last assistant message, when known.
        last_message: Option<String>,
    },
    /// Something went wrong.
    Error {
        /// What.
        message: String,
    },
    /// The agent waits for an answer (e.g. a permission prompt).
    NeedsInput {
        /// The question, when known.
        prompt: Option<String>,
        /// The answers offered, in order.
        options: Vec<String>,
    },
    /// The agent has been idle past the idle timeout with nobody waiting on it.
    IdleTimeout {
        /// For how long, in seconds.
        idle_secs: u64,
    },
}

/// One notification, naming the session it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The session.
    pub session: SessionId,
    /// Its friendly name, if it has one.
    pub name: Option<SessionName>,
    /// What happened.
    #[serde(flatten)]
    pub kind: NotificationKind,
}

/// Tells people (or programs) about agent events.
///
/// # Contract
/// - `notify` may be slow (network); the engine never awaits it on a delivery path: it runs
///   notifiers in their own tasks.
/// - An error means this notification was not sent; the caller logs it and moves on. Retries
///   are the notifier's own business.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// A short name for logs (`telegram`, `webhook`, …).
    fn name(&self) -> &str;

    /// Sends one notification.
    async fn notify(&self, notification: &Notification) -> Result<()>;
}

/// Sends each notification to every inner notifier concurrently. A failing or slow notifier
/// is logged and cut off after `timeout`; it never delays or fails the others.
pub struct FanoutNotifier {
    notifiers: Vec<Arc<dyn Notifier>>,
    timeout: Duration,
}

impl FanoutNotifier {
    /// A fan-out over `notifiers`, each given at most `timeout` per notification.
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>, timeout: Duration) -> Self {
        FanoutNotifier { notifiers, timeout }
    }
}

#[async_trait]
impl Notifier for FanoutNotifier {
    fn name(&self) -> &str {
        "fanout"
    }

    async fn notify(&self, notification: &Notification) -> Result<()> {
        let sends = self.notifiers.iter().map(|n| async move {
            match tokio::time::timeout(self.timeout, n.notify(notification)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(notifier = n.name(), error = %e, "notification failed"),
                Err(_) => tracing::warn!(notifier = n.name(), timeout = ?self.timeout, "notification timed out"),
            }
        });
        futures::future::join_all(sends).await;
        Ok(())
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use super::*;

    fn fanout(notifiers: Vec<Arc<dyn Notifier>>, timeout: Duration) -> Arc<dyn Notifier> {
        Arc::new(FanoutNotifier::new(notifiers, timeout))
    }

    crate::fanout_notifier_conformance!(fanout);
}
