//! The fan-out [`Notifier`] conformance suite: what every notifier that passes each
//! notification on to several others must guarantee — one bad notifier (failing, hanging)
//! never fails, blocks or starves the rest, and each good one hears every notification
//! once, in order.
//!
//! Run it with [`crate::fanout_notifier_conformance!`], giving a function that builds the
//! fan-out over a list of notifiers with a per-notifier timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::notifier::{Notification, NotificationKind, Notifier};
use crate::types::SessionId;

/// Builds the fan-out under test over `notifiers`, cutting each off after `timeout`.
pub type MakeFanout = fn(Vec<Arc<dyn Notifier>>, Duration) -> Arc<dyn Notifier>;

/// Generates one `#[tokio::test]` per case, on paused time, for the fan-out `$make` builds.
#[macro_export]
macro_rules! fanout_notifier_conformance {
    ($make:path) => {
        $crate::fanout_notifier_conformance!(@cases $make;
            a_failing_notifier_does_not_fail_the_fanout_or_the_others,
            a_hanging_notifier_is_cut_off_and_does_not_hold_back_the_others,
            every_good_notifier_hears_each_notification_once_in_order,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $case() {
                $crate::conformance::notifier::$case($make).await;
            }
        )*
    };
}

/// Remembers what it was told.
#[derive(Default)]
struct Recording(Mutex<Vec<Notification>>);

impl Recording {
    fn heard(&self) -> Vec<Notification> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Notifier for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    async fn notify(&self, n: &Notification) -> Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(n.clone());
        Ok(())
    }
}

/// Always fails.
struct Failing;

#[async_trait]
impl Notifier for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    async fn notify(&self, _: &Notification) -> Result<()> {
        Err(Error::NotSupported("this notifier always fails".into()))
    }
}

/// Never answers.
struct Hanging;

#[async_trait]
impl Notifier for Hanging {
    fn name(&self) -> &str {
        "hanging"
    }
    async fn notify(&self, _: &Notification) -> Result<()> {
        std::future::pending().await
    }
}

fn notification(n: u64) -> Notification {
    Notification {
        session: SessionId::new_random(),
        name: None,
        kind: NotificationKind::IdleTimeout { idle_secs: n },
    }
}

/// A notifier that always fails is logged, not passed up; the others still hear it.
pub async fn a_failing_notifier_does_not_fail_the_fanout_or_the_others(make: MakeFanout) {
    let good = Arc::new(Recording::default());
    let fanout = make(
        vec![Arc::new(Failing), good.clone()],
        Duration::from_secs(5),
    );
    let n = notification(1);
    fanout
        .notify(&n)
        .await
        .expect("the fan-out itself succeeds");
    assert_eq!(good.heard(), [n]);
}

/// A notifier that never answers is cut off after the timeout; the fan-out returns then,
/// and the others heard the notification without waiting for it.
pub async fn a_hanging_notifier_is_cut_off_and_does_not_hold_back_the_others(make: MakeFanout) {
    let good = Arc::new(Recording::default());
    let timeout = Duration::from_secs(5);
    let fanout = make(vec![Arc::new(Hanging), good.clone()], timeout);
    let started = tokio::time::Instant::now();
    let n = notification(2);
    let sent = tokio::time::timeout(timeout * 2, fanout.notify(&n)).await;
    assert!(
        matches!(sent, Ok(Ok(()))),
        "the fan-out did not return within twice the per-notifier timeout"
    );
    assert!(started.elapsed() <= timeout * 2);
    assert_eq!(good.heard(), [n]);
}

/// Every good notifier hears every notification exactly once, in the order sent.
pub async fn every_good_notifier_hears_each_notification_once_in_order(make: MakeFanout) {
    let (a, b) = (
        Arc::new(Recording::default()),
        Arc::new(Recording::default()),
    );
    let fanout = make(
        vec![a.clone(), Arc::new(Failing), b.clone()],
        Duration::from_secs(5),
    );
    let sent: Vec<Notification> = (0..5).map(notification).collect();
    for n in &sent {
        fanout.notify(n).await.expect("notify");
    }
    assert_eq!(a.heard(), sent);
    assert_eq!(b.heard(), sent);
}
