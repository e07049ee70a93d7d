//! The engine as one node of a [`Cluster`]: which sessions are its own, poking the owner
//! of another's, and the tasks that keep its lease, hear its pokes and sweep for work
//! missed pokes would have announced.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Engine, Inner, actor::Command, display_name, lock_map};
use crate::cluster::{Cluster, NodeInfo, Signal};
use crate::error::{Error, Result};
use crate::types::{Session, SessionId};

impl Engine {
    /// This node's name: the cluster's, else the configured one.
    pub fn node(&self) -> Option<&str> {
        match &self.inner.cluster {
            Some(c) => Some(c.node()),
            None => self.inner.config.node.as_deref(),
        }
    }

    /// The cluster this engine is a node of, if any.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// The cluster's nodes as read at the last heartbeat (empty without a cluster).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        lock_map(&self.inner.nodes).clone()
    }

    /// Whether `node` held its lease at the last heartbeat; `None` for a node the cluster
    /// does not know (or without a cluster).
    pub fn node_reachable(&self, node: &str) -> Option<bool> {
        lock_map(&self.inner.nodes)
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.reachable)
    }

    /// Reads the cluster's nodes now (and keeps them for [`Engine::nodes`]).
    pub async fn refresh_nodes(&self) -> Result<Vec<NodeInfo>> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(Vec::new());
        };
        let nodes = cluster.nodes().await?;
        *lock_map(&self.inner.nodes) = nodes.clone();
        Ok(nodes)
    }

    /// Whether this engine runs `session`'s terminal. Without a cluster every session is
    /// its own; in a cluster, those recorded with its node name.
    pub fn owns(&self, session: &Session) -> bool {
        match &self.inner.cluster {
            None => true,
            Some(c) => session.node.as_deref() == Some(c.node()),
        }
    }

    /// Tells the node that owns `session` to look at it (nothing when it is this node's:
    /// its actor, if any, was told directly).
    pub(super) async fn poke_owner(&self, session: &Session) {
        let (Some(cluster), Some(node)) = (&self.inner.cluster, session.node.as_deref()) else {
            return;
        };
        if node == cluster.node() {
            return;
        }
        if let Err(e) = cluster.poke(node, &session.id).await {
            // The owner's sweep finds the work; this costs latency only.
            tracing::warn!(session = %session.id, %node, error = %e, "cannot poke the owning node");
        }
    }

    /// `Err(Elsewhere)` when `id` is another node's session and has no actor here: what
    /// needs its terminal must be asked of its owner.
    pub(super) async fn refuse_if_elsewhere(&self, id: &SessionId) -> Result<()> {
        if self.inner.cluster.is_none() || lock_map(&self.inner.actors).contains_key(id) {
            return Ok(());
        }
        match self.inner.store.get_session(id).await? {
            Some(s) if !self.owns(&s) => Err(Error::Elsewhere {
                session: display_name(&s),
                node: s.node.unwrap_or_else(|| "(none)".into()),
            }),
            _ => Ok(()),
        }
    }

    /// With a cluster: takes the lease, then keeps it, listens for pokes and sweeps.
    pub(super) async fn listen_to_cluster(&self) -> Result<()> {
        let Some(cluster) = self.inner.cluster.clone() else {
            return Ok(());
        };
        let config = &self.inner.config;
        let url = config
            .node_url
            .clone()
            .or_else(|| config.server_url.clone())
            .unwrap_or_default();
        cluster.heartbeat(&url).await?;
        self.refresh_nodes().await?;
        let signals = cluster.signals();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(keep_lease(weak.clone(), cluster.clone(), url));
        tokio::spawn(hear_signals(weak.clone(), signals));
        tokio::spawn(sweep(weak, cluster));
        Ok(())
    }
}

/// Why a session of a node gone past the grace ended (names the node, so that node, if it
/// comes back, knows the agent it still runs was declared dead).
pub(super) fn orphan_reason(node: &str, grace: std::time::Duration) -> String {
    format!(
        "its node {node} was unreachable for longer than the grace of {} s",
        grace.as_secs()
    )
}

impl Engine {
    /// Whether `session` was this node's and was declared dead by another node while this
    /// one was away.
    pub(super) fn was_declared_dead_as_orphan(&self, session: &Session) -> bool {
        let Some(me) = self.node() else { return false };
        !session.status.is_live()
            && session
                .end_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(&format!("its node {me} was unreachable")))
    }

    /// Adopts and ends the live sessions of every node whose lease ran out more than the
    /// grace ago: each ends as its actor ends a dead agent (queue failed with senders told,
    /// waiters woken, the parent told), on this node.
    async fn end_orphans(&self, cluster: &Arc<dyn Cluster>, grace: std::time::Duration) {
        let me = cluster.node().to_string();
        for node in self.nodes() {
            if node.reachable || node.name == me {
                continue;
            }
            let adopted = match cluster.adopt_orphans(&node.name, grace).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "cannot adopt a dead node's sessions");
                    continue;
                }
            };
            for session in adopted {
                let Some(profile) = self.inner.profiles.get(&session.agent).cloned() else {
                    let _ = self
                        .inner
                        .store
                        .end_session(
                            &session.id,
                            crate::types::SessionStatus::Dead,
                            &orphan_reason(&node.name, grace),
                        )
                        .await;
                    continue;
                };
                tracing::warn!(session = %session.id, node = %node.name, "declaring dead a session of a node gone past the grace");
                self.start_actor(
                    session,
                    profile,
                    Some(Command::Exited {
                        status: None,
                        reason: orphan_reason(&node.name, grace),
                    }),
                );
            }
        }
    }
}

/// Tells the local actor of `id`, if any, to look at its queue and waits again.
fn refresh(inner: &Inner, id: &SessionId) {
    if let Some(h) = lock_map(&inner.actors).get(id) {
        let _ = h.commands.send(Command::Refresh);
    }
}

fn refresh_all(inner: &Inner) {
    for h in lock_map(&inner.actors).values() {
        let _ = h.commands.send(Command::Refresh);
    }
}

async fn keep_lease(weak: std::sync::Weak<Inner>, cluster: Arc<dyn Cluster>, url: String) {
    loop {
        let every = match weak.upgrade() {
            Some(inner) => inner.config.heartbeat_interval,
            None => return,
        };
        tokio::time::sleep(every).await;
        if let Err(e) = cluster.heartbeat(&url).await {
            tracing::warn!(error = %e, "cannot renew this node's lease");
        }
        match cluster.nodes().await {
            Ok(nodes) => match weak.upgrade() {
                Some(inner) => *lock_map(&inner.nodes) = nodes,
                None => return,
            },
            Err(e) => tracing::warn!(error = %e, "cannot read the cluster's nodes"),
        }
    }
}

async fn hear_signals(weak: std::sync::Weak<Inner>, mut signals: broadcast::Receiver<Signal>) {
    loop {
        let signal = signals.recv().await;
        let Some(inner) = weak.upgrade() else { return };
        match signal {
            Ok(Signal::Poke(id)) => refresh(&inner, &id),
            Ok(Signal::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => refresh_all(&inner),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Every `sweep_interval`: this node's sessions with queued messages, or with a wait
/// newer than the last one seen, are looked at again. Idle with nothing pending, a sweep
/// is one query and no work.
async fn sweep(weak: std::sync::Weak<Inner>, cluster: Arc<dyn Cluster>) {
    let mut seen_waits: HashMap<SessionId, i64> = HashMap::new();
    loop {
        let every = match weak.upgrade() {
            Some(inner) => inner.config.sweep_interval,
            None => return,
        };
        tokio::time::sleep(every).await;
        let pending = match cluster.pending().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sweep for pending work");
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        if let Some(grace) = inner.config.orphan_grace {
            let engine = Engine {
                inner: inner.clone(),
            };
            engine.end_orphans(&cluster, grace).await;
        }
        let mut still = HashMap::new();
        for p in pending {
            let known = seen_waits.get(&p.session).copied().unwrap_or(0);
            if p.queued || p.newest_wait > known {
                refresh(&inner, &p.session);
            }
            still.insert(p.session, p.newest_wait);
        }
        seen_waits = still;
    }
}
