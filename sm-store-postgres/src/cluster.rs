//! [`PostgresCluster`]: sm servers as nodes of one PostgreSQL database.
//!
//! - **Leases**: each node upserts its row in `sm_nodes` (name, URL, heartbeat stamped
//!   with the database's clock); a node whose heartbeat is older than the lease is
//!   unreachable.
//! - **Pokes**: `pg_notify('sm:<node>', <session id>)`, sent on commit; each node LISTENs
//!   on its own channel over a connection of its own (not from the pool), reconnects when
//!   it drops, and then says [`Signal::Resync`] — notifications sent while it was away are
//!   lost, and the engine looks at every session instead.
//! - **Pending work**: one query over the node's live sessions, their queued messages and
//!   their waits.
//! - **Orphans**: a node adopts the live sessions of a node dead past the grace in one
//!   `UPDATE … RETURNING`, so each goes to exactly one adopter.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sm_lib::cluster::{Cluster, NodeInfo, Pending, Signal};
use sm_lib::{Error, Result, Session, SessionId, Timestamp};
use tokio::sync::broadcast;

use crate::rows::SESSION_COLUMNS;
use crate::{PostgresStore, query, query_opt, store_error};

/// The database's clock in milliseconds since the epoch, as SQL.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Whether `name` can name a node: 1–63 characters of ASCII letters, digits, `.`, `_`
/// and `-` (it becomes part of a notification channel's name).
pub fn valid_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 60
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid node name {name:?}: use 1 to 60 ASCII letters, digits, '.', '_' or '-'"
        )))
    }
}

fn channel_of(node: &str) -> String {
    format!("sm:{node}")
}

/// One node of a cluster whose store is a [`PostgresStore`].
pub struct PostgresCluster {
    store: PostgresStore,
    node: String,
    lease: Duration,
    signals: broadcast::Sender<Signal>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresCluster {
    /// Joins the cluster of `store`'s database as `node`, with `lease` as how long a node
    /// counts as reachable after its last heartbeat. Starts listening for this node's
    /// pokes before it returns (so none sent after it returns is missed while the
    /// connection holds).
    pub async fn join(store: &PostgresStore, node: &str, lease: Duration) -> Result<Self> {
        valid_node_name(node)?;
        let (signals, _) = broadcast::channel(4096);
        let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            store.clone(),
            channel_of(node),
            signals.clone(),
            listening_tx,
        ));
        let started = Instant::now();
        match tokio::time::timeout(store.reconnect_for, listening_rx).await {
            Ok(Ok(())) => {}
            _ => {
                listener.abort();
                return Err(Error::Store {
                    message: format!(
                        "cannot listen for this node's notifications (tried for {:?})",
                        started.elapsed()
                    ),
                    source: None,
                });
            }
        }
        Ok(PostgresCluster {
            store: store.clone(),
            node: node.to_string(),
            lease,
            signals,
            listener,
        })
    }
}

/// Keeps a LISTEN connection for `channel`, forwarding notifications; says `Resync` after
/// each reconnect. Tells `listening` once the first LISTEN is in place.
async fn listen(
    store: PostgresStore,
    channel: String,
    signals: broadcast::Sender<Signal>,
    listening: tokio::sync::oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    let mut pause = Duration::from_millis(50);
    loop {
        let direct = store.direct.clone();
        let result = match &direct.tls {
            Some(tls) => {
                listen_once(
                    &direct.config,
                    tls.clone(),
                    &channel,
                    &signals,
                    &mut listening,
                )
                .await
            }
            None => {
                listen_once(
                    &direct.config,
                    tokio_postgres::NoTls,
                    &channel,
                    &signals,
                    &mut listening,
                )
                .await
            }
        };
        match result {
            // It was listening, then the connection went: whatever came meanwhile is lost.
            Ok(()) => {
                tracing::warn!("the PostgreSQL notification connection closed; reconnecting");
                pause = Duration::from_millis(50);
            }
            Err(e) => {
                tracing::debug!(error = %crate::describe(&e), "cannot listen for notifications yet");
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
        let _ = signals.send(Signal::Resync);
        tokio::time::sleep(pause).await;
    }
}

/// One LISTEN connection's life: `Ok` once it was listening and then closed.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    signals: &broadcast::Sender<Signal>,
    listening: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> std::result::Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    let forward = signals.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    match n.payload().parse::<SessionId>() {
                        Ok(id) => {
                            let _ = forward.send(Signal::Poke(id));
                        }
                        Err(_) => {
                            tracing::warn!(
                                payload = n.payload(),
                                "a notification that names no session"
                            )
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %crate::describe(&e), "notification connection error");
                    break;
                }
            }
        }
        let _ = closed_tx.send(());
    });
    // The channel is a quoted identifier; node names are checked to need no escaping.
    let listened = client.batch_execute(&format!("LISTEN \"{channel}\"")).await;
    if let Err(e) = listened {
        driver.abort();
        return Err(e);
    }
    match listening.take() {
        Some(tx) => {
            let _ = tx.send(());
        }
        // A reconnect: what was sent while away is lost.
        None => {
            let _ = signals.send(Signal::Resync);
        }
    }
    // Keep the client (and so the session) until the connection ends.
    let _ = (&mut closed_rx).await;
    drop(client);
    Ok(())
}

#[async_trait]
impl Cluster for PostgresCluster {
    fn node(&self) -> &str {
        &self.node
    }

    async fn heartbeat(&self, url: &str) -> Result<()> {
        let client = self.store.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        query(
            client,
            &format!(
                "INSERT INTO sm_nodes (name, url, started_at, heartbeat_at) \
                 VALUES ($1, $2, {DB_NOW_MS}, {DB_NOW_MS}) \
                 ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, \
                 heartbeat_at = EXCLUDED.heartbeat_at"
            ),
            &[&self.node, &url],
        )
        .await
        .map_err(|e| store_error("renew this node's lease", e))?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let client = self.store.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        let lease = self.lease.as_millis() as i64;
        let rows = query(
            client,
            &format!(
                "SELECT name, url, heartbeat_at, heartbeat_at > {DB_NOW_MS} - $1 \
                 FROM sm_nodes ORDER BY name"
            ),
            &[&lease],
        )
        .await
        .map_err(|e| store_error("list the nodes", e))?;
        rows.iter()
            .map(|r| {
                Ok(NodeInfo {
                    name: r.try_get(0)?,
                    url: r.try_get(1)?,
                    heartbeat_at: Timestamp(r.try_get(2)?),
                    reachable: r.try_get(3)?,
                })
            })
            .collect::<std::result::Result<_, tokio_postgres::Error>>()
            .map_err(|e| store_error("read the nodes", e))
    }

    async fn poke(&self, node: &str, session: &SessionId) -> Result<()> {
        let client = self.store.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        query_opt(
            client,
            "SELECT pg_notify($1, $2)::text",
            &[&channel_of(node), &session.as_str()],
        )
        .await
        .map_err(|e| store_error("poke a node", e))?;
        Ok(())
    }

    fn signals(&self) -> broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }

    async fn adopt_orphans(&self, node: &str, grace: Duration) -> Result<Vec<Session>> {
        if node == self.node {
            return Ok(Vec::new());
        }
        let client = self.store.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        let cutoff = (self.lease + grace).as_millis() as i64;
        // Two nodes adopting at once: the second waits on the row locks, then re-checks
        // the condition against the moved rows (now on a live node) and skips them.
        let rows = query(
            client,
            &format!(
                "UPDATE sessions SET node = $1 \
                 WHERE status NOT IN ('stopped', 'dead') AND node = $2 AND EXISTS ( \
                   SELECT 1 FROM sm_nodes WHERE name = $2 AND heartbeat_at < {DB_NOW_MS} - $3) \
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[&self.node, &node, &cutoff],
        )
        .await
        .map_err(|e| store_error("adopt the sessions of dead nodes", e))?;
        rows.iter()
            .map(crate::rows::session)
            .collect::<Result<Vec<Session>>>()
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        let client = self.store.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        let rows = query(
            client,
            "SELECT id, queued, newest_wait FROM ( \
               SELECT s.id, \
                 EXISTS (SELECT 1 FROM messages m \
                         WHERE m.target = s.id AND m.state = 'queued') AS queued, \
                 COALESCE((SELECT max(w.id) FROM waits w WHERE w.target = s.id), 0) \
                   AS newest_wait \
               FROM sessions s \
               WHERE s.node = $1 AND s.status NOT IN ('stopped', 'dead')) p \
             WHERE queued OR newest_wait > 0",
            &[&self.node],
        )
        .await
        .map_err(|e| store_error("look for pending work", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: &str = r
                .try_get(0)
                .map_err(|e| store_error("read pending work", e))?;
            out.push(Pending {
                session: id.parse()?,
                queued: r
                    .try_get(1)
                    .map_err(|e| store_error("read pending work", e))?,
                newest_wait: r
                    .try_get(2)
                    .map_err(|e| store_error("read pending work", e))?,
            });
        }
        Ok(out)
    }
}
