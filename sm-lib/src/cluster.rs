//! The [`Cluster`] trait: several engines (nodes), each owning the agents whose terminals
//! it runs, sharing one store.
//!
//! The store stays the only truth: a message, a wait, a session are rows every node reads.
//! What the cluster adds is *who acts* and *how fast they learn*:
//! - each node has a name and only the owner of a session (its [`crate::Session::node`])
//!   runs its actor, types into its terminal or changes its status;
//! - a node that changes something another node's session must act on (a message queued
//!   for it, a wait registered on it) *pokes* the owner; pokes are best effort — a missed
//!   one costs latency, never a message, because every node also sweeps the store for its
//!   sessions with work pending ([`Cluster::pending`]) at an interval and after it
//!   reconnects;
//! - each node holds a lease it renews ([`Cluster::heartbeat`]); one whose lease ran out
//!   is unreachable, and its sessions are shown so.
//!
//! Implementations: [`MemoryCluster`] (engines in one process over one
//! [`crate::MemoryStore`]: tests and embedding) and `sm-store-postgres`'s cluster
//! (LISTEN/NOTIFY, a nodes table with leases).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::types::{SessionId, Timestamp};

/// What a node is told by others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Something changed in the store for this session of the node (a message queued, a
    /// wait registered): look at its queue and waits.
    Poke(SessionId),
    /// Signals may have been missed (the channel reconnected): look at every session.
    Resync,
}

/// One of this node's sessions with work in the store ([`Cluster::pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The session.
    pub session: SessionId,
    /// Something is queued for it.
    pub queued: bool,
    /// The id of the newest wait on it (0: none).
    pub newest_wait: i64,
}

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Where its API answers (requests that need its terminals are sent there).
    pub url: String,
    /// When it last renewed its lease.
    pub heartbeat_at: Timestamp,
    /// Whether its lease still holds.
    pub reachable: bool,
}

/// Several engines sharing one store.
///
/// # Contract
/// - [`Cluster::node`] never changes for the value's life.
/// - [`Cluster::poke`] returns once the signal is sent (not necessarily received); a node
///   that is down or not listening misses it. Poking this node itself is allowed.
/// - [`Cluster::signals`] receives every signal sent to this node after the call, in
///   order, while the channel holds; after any gap it receives [`Signal::Resync`] (or the
///   receiver reports lag, which means the same).
/// - [`Cluster::pending`] lists this node's live sessions that have a queued message or a
///   wait, from the store itself, so it finds what missed pokes would have said.
/// - [`Cluster::heartbeat`] registers or renews this node with its URL; a node whose last
///   heartbeat is older than the lease is listed not reachable by [`Cluster::nodes`].
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;

    /// Registers (first call) or renews this node's lease, with the URL its API answers at.
    async fn heartbeat(&self, url: &str) -> Result<()>;

    /// Every node ever registered, by name, with whether its lease holds.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;

    /// Tells `node` that something changed for its session `session`.
    async fn poke(&self, node: &str, session: &SessionId) -> Result<()>;

    /// Signals for this node from now on.
    fn signals(&self) -> broadcast::Receiver<Signal>;

    /// This node's live sessions with a queued message or a wait.
    async fn pending(&self) -> Result<Vec<Pending>>;

    /// When `node`'s lease ran out more than `grace` ago: moves every live session of it
    /// to this node and returns them as now stored (this node then ends them — their
    /// agents are out of reach — so their waiters and senders are told); otherwise none.
    /// Atomic: when several nodes adopt at once, each session goes to exactly one.
    async fn adopt_orphans(
        &self,
        node: &str,
        grace: Duration,
    ) -> Result<Vec<crate::types::Session>>;
}

/// How long a node's lease lasts without a heartbeat, unless configured.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// The nodes of a [`MemoryCluster`] family, shared.
#[derive(Default)]
struct Registry {
    nodes: HashMap<String, (String, Timestamp)>,
    channels: HashMap<String, broadcast::Sender<Signal>>,
}

/// Nodes in one process over one [`crate::MemoryStore`]: [`MemoryCluster::join`] makes
/// each node's handle. Pokes go through in-process channels.
#[derive(Clone)]
pub struct MemoryCluster {
    node: String,
    store: Arc<crate::MemoryStore>,
    registry: Arc<Mutex<Registry>>,
    lease: Duration,
}

impl MemoryCluster {
    /// The first node of a new cluster over `store`.
    pub fn new(node: impl Into<String>, store: Arc<crate::MemoryStore>) -> Self {
        let cluster = MemoryCluster {
            node: String::new(),
            store,
            registry: Arc::default(),
            lease: DEFAULT_LEASE,
        };
        cluster.join(node)
    }

    /// Another node of the same cluster.
    pub fn join(&self, node: impl Into<String>) -> Self {
        let node = node.into();
        let mut registry = crate::engine::lock_map(&self.registry);
        registry
            .channels
            .entry(node.clone())
            .or_insert_with(|| broadcast::channel(1024).0);
        MemoryCluster {
            node,
            store: self.store.clone(),
            registry: self.registry.clone(),
            lease: self.lease,
        }
    }

    /// Ends this node's lease at once, as if it had stopped renewing it long ago.
    pub fn expire(&self) {
        let mut registry = crate::engine::lock_map(&self.registry);
        if let Some((_, at)) = registry.nodes.get_mut(&self.node) {
            *at = Timestamp(0);
        }
    }
}

#[async_trait]
impl Cluster for MemoryCluster {
    fn node(&self) -> &str {
        &self.node
    }

    async fn heartbeat(&self, url: &str) -> Result<()> {
        crate::engine::lock_map(&self.registry)
            .nodes
            .insert(self.node.clone(), (url.to_string(), Timestamp::now()));
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let now = Timestamp::now().0;
        let registry = crate::engine::lock_map(&self.registry);
        let mut nodes: Vec<NodeInfo> = registry
            .nodes
            .iter()
            .map(|(name, (url, at))| NodeInfo {
                name: name.clone(),
                url: url.clone(),
                heartbeat_at: *at,
                reachable: now - at.0 < self.lease.as_millis() as i64,
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    async fn poke(&self, node: &str, session: &SessionId) -> Result<()> {
        if let Some(tx) = crate::engine::lock_map(&self.registry).channels.get(node) {
            let _ = tx.send(Signal::Poke(session.clone()));
        }
        Ok(())
    }

    fn signals(&self) -> broadcast::Receiver<Signal> {
        crate::engine::lock_map(&self.registry)
            .channels
            .entry(self.node.clone())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    async fn adopt_orphans(
        &self,
        node: &str,
        grace: Duration,
    ) -> Result<Vec<crate::types::Session>> {
        let cutoff = Timestamp::now().0 - (self.lease + grace).as_millis() as i64;
        // The registry's lock is held while moving, so two adopters never both move one.
        let registry = crate::engine::lock_map(&self.registry);
        let gone = node != self.node
            && registry
                .nodes
                .get(node)
                .is_some_and(|(_, at)| at.0 < cutoff);
        if !gone {
            return Ok(Vec::new());
        }
        Ok(self.store.move_live_sessions(node, &self.node))
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        use crate::MessageStore;
        let mut out = Vec::new();
        let waits = self.store.list_waits(None).await?;
        for s in self.store.list_sessions().await? {
            if !s.status.is_live() || s.node.as_deref() != Some(self.node.as_str()) {
                continue;
            }
            let newest_wait = waits
                .iter()
                .filter(|w| w.target == s.id)
                .map(|w| w.id)
                .max()
                .unwrap_or(0);
            let queued = self
                .store
                .peek_next(&s.id, &crate::DeliveryMode::BY_PRIORITY)
                .await?
                .is_some();
            if queued || newest_wait > 0 {
                out.push(Pending {
                    session: s.id,
                    queued,
                    newest_wait,
                });
            }
        }
        Ok(out)
    }
}
