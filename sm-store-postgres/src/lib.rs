//! # sm-store-postgres — sm's durable state in PostgreSQL, shared by several servers
//!
//! [`PostgresStore`] implements [`sm_lib::MessageStore`] over a PostgreSQL database: the
//! message queue, the session registry, workspace locks, waits and the event log. One
//! database can back several sm servers (nodes) at once; every guarantee of the store
//! contract holds across them, as it does across processes for the SQLite store.
//!
//! How it keeps the contract:
//! - **Durable**: every change is committed with PostgreSQL's `synchronous_commit` (on by
//!   default): when a call returns, the change is in the server's fsynced WAL. Unlike the
//!   SQLite store, the engine's progress (claims, deliveries) is not allowed to lag: the
//!   database may restart while the agents live on, so a lost claim would mean a message
//!   typed twice.
//! - **Few round trips**: most calls are one statement, committed on its own (PostgreSQL's
//!   group commit batches concurrent callers' WAL flushes); only calls that must read before
//!   they write (spawn, delete, lock) use a transaction with row locks.
//! - **Exclusive claims**: `FOR UPDATE SKIP LOCKED` picks the next queued message, so
//!   concurrent claimers on any node never get the same one and never wait on each other.
//! - **Event ids in commit order**: appending takes a transaction-level advisory lock before
//!   it draws ids, so a reader that follows the log by id never skips an event committed
//!   late with a smaller id.
//! - **Races end in retries, not wrong answers**: a unique index or foreign key hit by a
//!   concurrent writer (two spawns with one key, two nodes taking one lock) makes the call
//!   run again and see the winner's row. A lost connection is retried with a fresh one while
//!   [`PostgresConfig::reconnect_for`] lasts — always for a call that is safe to repeat, and
//!   for the others only when nothing was sent yet.
//! - **Migrations**: the schema version lives in the `sm_schema` table; connecting applies
//!   the missing migrations under an advisory lock (several nodes may start together) and
//!   refuses a database written by a newer sm.
//!
//! With the `test-cluster` feature, [`test_cluster::TestCluster`] runs a throwaway
//! PostgreSQL server for tests.

mod cluster;
mod rows;
mod schema;
#[cfg(feature = "test-cluster")]
pub mod test_cluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sm_lib::{
    Created, DeliveryMode, Error, Event, EventId, EventKind, Inserted, Lock, LockKind, LockRequest,
    Message, MessageFilter, MessageId, MessageState, MessageStore, NewMessage, NewSession, Result,
    Session, SessionId, SessionName, SessionStatus, Timestamp, Wait, Workspace,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use rows::{EVENT_COLUMNS, LOCK_COLUMNS, MESSAGE_COLUMNS, SESSION_COLUMNS, WAIT_COLUMNS};

pub use cluster::{PostgresCluster, valid_node_name};
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;

/// The advisory lock key event appends hold until they commit (ASCII "sm_evt").
const EVENT_LOCK: i64 = 0x736d_5f65_7674;
/// How often a call that lost a race runs again before giving up.
const MAX_RACE_RETRIES: u32 = 50;

/// Where the store's database is and how to reach it.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq-style URL or key=value string: `postgres://user:password@host:5432/db`.
    /// TLS is used when it says `sslmode=require`.
    pub url: String,
    /// PEM file of the certificate authorities that may sign the server's certificate
    /// (TLS only); without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Most connections this store keeps open.
    pub pool_size: usize,
    /// How long a call keeps trying to reach the database after losing it (a restart, a
    /// failover) before it fails with a store error.
    pub reconnect_for: Duration,
}

impl PostgresConfig {
    /// A configuration for `url` with the defaults: 16 connections, 30 s of reconnecting.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            ca_file: None,
            pool_size: 16,
            reconnect_for: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL itself: it may carry a password.
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("reconnect_for", &self.reconnect_for)
            .finish()
    }
}

/// `url` without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    // postgres://user:secret@host → postgres://user:***@host; key=value strings: password=***.
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        if let Some(at) = rest.rfind('@') {
            let (auth, host) = rest.split_at(at);
            if let Some(colon) = auth.find(':') {
                return format!("{scheme}{}:***{host}", &auth[..colon]);
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=***"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A [`MessageStore`] in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    reconnect_for: Duration,
    /// How to open a connection of its own (a node's LISTEN connection).
    direct: std::sync::Arc<Direct>,
}

/// What a connection outside the pool needs.
pub(crate) struct Direct {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// The database's own words for an error (tokio-postgres's `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None if e.is_closed() => "the connection to PostgreSQL was lost".into(),
        // The cause too: "error performing TLS handshake" alone does not say the
        // certificate was not trusted.
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
    }
}

fn store_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::store(format!("{what} failed: {}", describe(&e)), e)
}

/// Why a call stopped before it was done.
enum Abort {
    /// A refusal the caller is told about (not found, conflict…): nothing was changed.
    Refused(Error),
    /// The database said no, or the connection failed.
    Db(tokio_postgres::Error),
    /// A concurrent writer won a race; running the call again will see its change.
    Race,
}

impl From<Error> for Abort {
    fn from(e: Error) -> Self {
        Abort::Refused(e)
    }
}

impl From<tokio_postgres::Error> for Abort {
    fn from(e: tokio_postgres::Error) -> Self {
        Abort::Db(e)
    }
}

type Step<T> = std::result::Result<T, Abort>;

/// Whether a call may simply be made again after its connection died mid-way (the first
/// attempt may or may not have taken effect).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Doing it twice is the same as once.
    Safe,
    /// A second time would add a second row or take a second message.
    Unsafe,
}

fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_none() && e.code().is_none()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        )
}

/// Errors that mean "this attempt lost to a concurrent one; try again".
fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The constraint a unique or foreign-key violation hit, if that is what `e` is.
fn violated(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    if *db.code() == SqlState::UNIQUE_VIOLATION || *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
        db.constraint()
    } else {
        None
    }
}

/// PostgreSQL's text cannot hold a NUL character (SQLite's can): refused before it is sent.
fn no_nul(value: &str, what: &str) -> Result<()> {
    if value.contains('\0') {
        Err(Error::InvalidInput(format!(
            "{what} contains a NUL character, which the PostgreSQL store cannot keep"
        )))
    } else {
        Ok(())
    }
}

/// Prepares (once per connection) and runs a statement.
async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> std::result::Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query_opt(&statement, params).await
}

/// Runs `$body` on a pooled connection `$c` (each statement committed on its own), again
/// after a lost race or — when `$repeat` allows — a lost connection. Evaluates to the
/// call's `Result`. (A macro rather than a method taking an async closure: the futures of
/// such closures cannot yet be shown to be `Send` for every lifetime, which
/// `async_trait` needs.)
macro_rules! run {
    ($store:expr, $what:expr, $repeat:expr, |$c:ident| $body:expr) => {{
        let store: &PostgresStore = $store;
        let started = Instant::now();
        let mut races = 0;
        loop {
            let client = store.client(started).await?;
            let $c: &deadpool_postgres::Client = &client;
            let step: Step<_> = async { $body }.await;
            match step {
                Ok(value) => break Ok::<_, Error>(value),
                Err(abort) => store.retry_or_fail($what, $repeat, abort, started, &mut races)?,
            }
        }
    }};
}

/// Runs `$body` in one transaction `$tx`, again after a lost race or a connection lost
/// before the commit was sent (the server then rolled it back). Evaluates to the call's
/// `Result`.
macro_rules! transact {
    ($store:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let store: &PostgresStore = $store;
        let what: &str = $what;
        let started = Instant::now();
        let mut races = 0;
        loop {
            let mut client = store.client(started).await?;
            let tx = match client.transaction().await {
                Ok(tx) => tx,
                Err(e) => {
                    store.retry_or_fail(what, Repeat::Safe, Abort::Db(e), started, &mut races)?;
                    continue;
                }
            };
            let step: Step<_> = {
                let $tx: &deadpool_postgres::Transaction<'_> = &tx;
                async { $body }.await
            };
            match step {
                Ok(value) => match tx.commit().await {
                    Ok(()) => break Ok::<_, Error>(value),
                    Err(e) if is_race(&e) => {
                        store.retry_or_fail(what, Repeat::Safe, Abort::Race, started, &mut races)?
                    }
                    // The commit was sent: whether it happened is not known, so it is never
                    // repeated blindly.
                    Err(e) => break Err(store_error(&format!("{what} (commit)"), e)),
                },
                Err(abort) => {
                    let _ = tx.rollback().await;
                    store.retry_or_fail(what, Repeat::Safe, abort, started, &mut races)?;
                }
            }
        }
    }};
}

impl PostgresStore {
    /// Connects to the database, applies missing migrations, and keeps a pool of
    /// connections. Fails when the database cannot be reached within `reconnect_for`.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let pg: tokio_postgres::Config =
            with_libpq_ssl_modes(&config.url).parse().map_err(|e| {
                Error::InvalidInput(format!(
                    "the PostgreSQL URL {} is not valid: {e}",
                    redact(&config.url)
                ))
            })?;
        let mut pg = pg;
        if pg.get_application_name().is_none() {
            pg.application_name("sm");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            Some(tls_connector(config.ca_file.as_deref())?)
        } else {
            None
        };
        let direct = std::sync::Arc::new(Direct {
            config: pg.clone(),
            tls: tls.clone(),
        });
        let manager = match tls {
            Some(tls) => Manager::from_config(pg, tls, manager_config),
            None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::store("cannot build the PostgreSQL connection pool", e))?;
        let store = PostgresStore {
            pool,
            reconnect_for: config.reconnect_for,
            direct,
        };
        let mut client = store
            .client(Instant::now())
            .await
            .map_err(|e| Error::Store {
                message: format!(
                    "cannot connect to PostgreSQL at {}: {e}",
                    redact(&config.url)
                ),
                source: Some(Box::new(e)),
            })?;
        let raw: &mut tokio_postgres::Client = &mut client;
        schema::migrate(raw).await?;
        Ok(store)
    }

    /// The secret called `name` that every node of this database shares: `proposed`
    /// when no node stored one before (this node is the first), else the stored one.
    pub async fn shared_secret(&self, name: &str, proposed: &str) -> Result<String> {
        let client = self.client(Instant::now()).await?;
        let client: &deadpool_postgres::Client = &client;
        let row = query_opt(
            client,
            "WITH added AS (INSERT INTO sm_secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING value) \
             SELECT value FROM added UNION ALL SELECT value FROM sm_secrets WHERE name = $1",
            &[&name, &proposed],
        )
        .await
        .map_err(|e| store_error("read the shared secret", e))?;
        match row {
            Some(row) => row
                .try_get::<_, String>(0)
                .map_err(|e| store_error("read the shared secret", e)),
            None => Err(Error::Store {
                message: format!("the shared secret {name} is missing"),
                source: None,
            }),
        }
    }

    /// A connection from the pool, waiting out a lost database for `reconnect_for`.
    pub(crate) async fn client(&self, started: Instant) -> Result<deadpool_postgres::Object> {
        let mut pause = Duration::from_millis(20);
        loop {
            match self.pool.get().await {
                Ok(client) => return Ok(client),
                Err(e) if started.elapsed() < self.reconnect_for => {
                    tracing::debug!(error = %e, "PostgreSQL not reachable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(Error::store(
                        format!("cannot reach PostgreSQL: {}", pool_error_text(&e)),
                        e,
                    ));
                }
            }
        }
    }

    /// `Ok` when the call should run again; the error to return otherwise.
    fn retry_or_fail(
        &self,
        what: &str,
        repeat: Repeat,
        abort: Abort,
        started: Instant,
        races: &mut u32,
    ) -> Result<()> {
        match abort {
            Abort::Refused(e) => Err(e),
            Abort::Race => {
                *races += 1;
                if *races <= MAX_RACE_RETRIES {
                    Ok(())
                } else {
                    Err(Error::Store {
                        message: format!("{what} kept losing to concurrent writers"),
                        source: None,
                    })
                }
            }
            Abort::Db(e) if is_race(&e) || violated(&e).is_some() => {
                *races += 1;
                if *races <= MAX_RACE_RETRIES {
                    Ok(())
                } else {
                    Err(store_error(what, e))
                }
            }
            Abort::Db(e)
                if is_connection_error(&e)
                    && repeat == Repeat::Safe
                    && started.elapsed() < self.reconnect_for =>
            {
                tracing::debug!(what, error = %describe(&e), "PostgreSQL connection lost; retrying");
                Ok(())
            }
            Abort::Db(e) => Err(store_error(what, e)),
        }
    }

    /// The live session called `name` other than `except`, if any.
    async fn live_holder_of_name<C: GenericClient>(
        c: &C,
        name: &SessionName,
        except: &SessionId,
    ) -> Step<Option<SessionId>> {
        let row = query_opt(
            c,
            "SELECT id FROM sessions WHERE name = $1 AND id <> $2 \
             AND status NOT IN ('stopped', 'dead') LIMIT 1",
            &[&name.as_str(), &except.as_str()],
        )
        .await?;
        Ok(row
            .map(|r| r.get::<_, &str>(0).parse::<SessionId>())
            .transpose()?)
    }

    /// Turns a hit on the live-name index into [`Error::NameTaken`] (or a retry when the
    /// holder is already gone).
    async fn name_taken<C: GenericClient>(
        c: &C,
        name: Option<&SessionName>,
        except: &SessionId,
    ) -> Abort {
        let Some(name) = name else {
            return Abort::Race;
        };
        match Self::live_holder_of_name(c, name, except).await {
            Ok(Some(holder)) => Abort::Refused(Error::NameTaken {
                name: name.clone(),
                holder,
            }),
            Ok(None) => Abort::Race,
            Err(e) => e,
        }
    }
}

fn pool_error_text(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// libpq's `sslmode=verify-full` and `verify-ca` as `require`, which with rustls always
/// checks the certificate's chain and host name (so both get at least what they ask).
fn with_libpq_ssl_modes(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::InvalidInput(format!(
                    "cannot read the PostgreSQL CA file {}: {e}",
                    path.display()
                ))
            })?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    Error::InvalidInput(format!(
                        "the PostgreSQL CA file {} is not PEM: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::InvalidInput(format!(
                        "a certificate in {} is not usable: {e}",
                        path.display()
                    ))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(Error::InvalidInput(format!(
                    "the PostgreSQL CA file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::store("cannot set up TLS", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

// ----- statements shared by several calls -----

async fn get_session<C: GenericClient>(c: &C, id: &SessionId) -> Step<Option<Session>> {
    let row = query_opt(
        c,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"),
        &[&id.as_str()],
    )
    .await?;
    Ok(row.as_ref().map(rows::session).transpose()?)
}

async fn require_session<C: GenericClient>(c: &C, id: &SessionId) -> Step<Session> {
    get_session(c, id)
        .await?
        .ok_or_else(|| Abort::Refused(Error::SessionNotFound(id.to_string())))
}

async fn get_message<C: GenericClient>(c: &C, id: MessageId) -> Step<Option<Message>> {
    let row = query_opt(
        c,
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"),
        &[&id.0],
    )
    .await?;
    Ok(row.as_ref().map(rows::message).transpose()?)
}

async fn get_lock<C: GenericClient>(
    c: &C,
    workspace: &Workspace,
    for_update: bool,
) -> Step<Option<Lock>> {
    let sql = if for_update {
        format!("SELECT {LOCK_COLUMNS} FROM locks WHERE workspace = $1 FOR UPDATE")
    } else {
        format!("SELECT {LOCK_COLUMNS} FROM locks WHERE workspace = $1")
    };
    let row = query_opt(c, &sql, &[&rows::path_bytes(&workspace.0)]).await?;
    Ok(row.as_ref().map(rows::lock).transpose()?)
}

fn invalid(m: &Message, to: MessageState) -> Abort {
    Abort::Refused(Error::InvalidTransition {
        message: m.id,
        from: m.state,
        to,
    })
}

/// Inserts a session row; a taken id or live name is refused.
async fn insert_session<C: GenericClient>(
    c: &C,
    s: &Session,
    client_key: Option<&str>,
) -> Step<()> {
    let working_dir = rows::path_bytes(&s.working_dir);
    let result = query(
        c,
        &format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}, client_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &[
            &s.id.as_str(),
            &s.name.as_ref().map(|n| n.as_str()),
            &s.parent.as_ref().map(|p| p.as_str()),
            &s.agent.as_str(),
            &s.model,
            &working_dir,
            &s.status.as_str(),
            &s.created_at.0,
            &s.status_changed_at.0,
            &s.task,
            &s.end_reason,
            &s.skip_permissions,
            &s.node,
            &client_key,
        ],
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => match violated(&e) {
            Some("sessions_pkey") => Err(Abort::Refused(Error::SessionExists(s.id.clone()))),
            // The statement failed, so in a transaction nothing more can be asked: the
            // caller's retry finds the holder (see create_session / insert_session).
            Some("sessions_live_name") => Err(Abort::Race),
            _ => Err(Abort::Db(e)),
        },
    }
}

/// Refuses a session whose id or live name is taken, before inserting it (so a
/// transaction is not aborted by the constraint in the common case).
async fn check_session_free<C: GenericClient>(c: &C, s: &Session) -> Step<()> {
    if get_session(c, &s.id).await?.is_some() {
        return Err(Abort::Refused(Error::SessionExists(s.id.clone())));
    }
    if let (Some(name), true) = (&s.name, s.status.is_live()) {
        if let Some(holder) = PostgresStore::live_holder_of_name(c, name, &s.id).await? {
            return Err(Abort::Refused(Error::NameTaken {
                name: name.clone(),
                holder,
            }));
        }
    }
    Ok(())
}

fn check_session_text(s: &Session) -> Result<()> {
    if let Some(model) = &s.model {
        no_nul(model, "the model")?;
    }
    if let Some(task) = &s.task {
        no_nul(task, "the task")?;
    }
    if let Some(reason) = &s.end_reason {
        no_nul(reason, "the end reason")?;
    }
    if let Some(node) = &s.node {
        no_nul(node, "the node name")?;
    }
    Ok(())
}

/// Queues a message; a repeated client key returns the first message with that key.
async fn enqueue<C: GenericClient>(c: &C, m: &NewMessage) -> Step<Inserted<Message>> {
    let now = Timestamp::now().0;
    let priority = i16::from(m.mode.priority());
    let inserted = query_opt(
        c,
        &format!(
            "INSERT INTO messages (target, sender, text, mode, priority, state, attempts, \
             created_at, updated_at, client_key) \
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6, $7) \
             ON CONFLICT (client_key) WHERE client_key IS NOT NULL DO NOTHING \
             RETURNING {MESSAGE_COLUMNS}"
        ),
        &[
            &m.target.as_str(),
            &m.sender.as_ref().map(|s| s.as_str()),
            &m.text,
            &m.mode.as_str(),
            &priority,
            &now,
            &m.client_key,
        ],
    )
    .await;
    match inserted {
        Ok(Some(row)) => Ok(Inserted::new(rows::message(&row)?)),
        Ok(None) => {
            // The key was used: the message stored under it, if it is the same message.
            let row = query_opt(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE client_key = $1"),
                &[&m.client_key],
            )
            .await?;
            let Some(row) = row else {
                return Err(Abort::Race);
            };
            Ok(sm_lib::store::same_message_for_key(rows::message(&row)?, m)
                .map(Inserted::existing)?)
        }
        Err(e) if violated(&e) == Some("messages_target_fkey") => {
            Err(Abort::Refused(Error::SessionNotFound(m.target.to_string())))
        }
        Err(e) => Err(Abort::Db(e)),
    }
}

fn check_message_text(m: &NewMessage) -> Result<()> {
    no_nul(&m.text, "the message")?;
    if let Some(key) = &m.client_key {
        no_nul(key, "the client key")?;
    }
    Ok(())
}

fn priorities(modes: &[DeliveryMode]) -> Vec<i16> {
    modes.iter().map(|m| i16::from(m.priority())).collect()
}

/// Where `claim_next` and `peek_next` look: the oldest queued message for `$1` of the
/// highest priority in `$2`.
const NEXT_IN_QUEUE: &str = "FROM messages WHERE target = $1 AND state = 'queued' \
     AND priority = ANY($2) ORDER BY priority DESC, id LIMIT 1";

/// Moves a message from one of `from` to `to` in one statement; `None` when it was in none
/// of them (or does not exist).
async fn transition<C: GenericClient>(
    c: &C,
    id: MessageId,
    from: &[MessageState],
    to: MessageState,
    reason: Option<&str>,
) -> Step<Option<Message>> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let row = query_opt(
        c,
        &format!(
            "UPDATE messages SET state = $2, reason = COALESCE($3, reason), updated_at = $4 \
             WHERE id = $1 AND state = ANY($5) RETURNING {MESSAGE_COLUMNS}"
        ),
        &[&id.0, &to.as_str(), &reason, &Timestamp::now().0, &from],
    )
    .await?;
    Ok(row.as_ref().map(rows::message).transpose()?)
}

/// One event row under the event lock; see the crate docs for why.
const APPEND_EVENTS: &str = "WITH serialised AS (SELECT pg_advisory_xact_lock($1)) \
     INSERT INTO events (at, session, kind, data) \
     SELECT $2, $3, e.kind, e.data FROM serialised, \
     unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(kind, data, n) ORDER BY e.n \
     RETURNING id";

#[async_trait]
impl MessageStore for PostgresStore {
    async fn insert_session(&self, session: &Session) -> Result<()> {
        check_session_text(session)?;
        transact!(self, "insert session", |tx| {
            check_session_free(tx, session).await?;
            insert_session(tx, session, None).await
        })
    }

    async fn create_session(&self, new: NewSession) -> Result<Created> {
        sm_lib::store::check_new_session(&new)?;
        check_session_text(&new.session)?;
        if let Some(m) = &new.first_message {
            check_message_text(m)?;
        }
        if let Some(key) = &new.client_key {
            no_nul(key, "the spawn key")?;
        }
        transact!(self, "create session", |tx| {
            if let Some(key) = &new.client_key {
                let existing = query_opt(
                    tx,
                    "SELECT id, first_message FROM sessions WHERE client_key = $1",
                    &[key],
                )
                .await?;
                if let Some(row) = existing {
                    let id: SessionId = row.get::<_, &str>(0).parse()?;
                    let first: Option<i64> = row.get(1);
                    let session = require_session(tx, &id).await?;
                    let first_message = match first {
                        Some(m) => get_message(tx, MessageId(m)).await?,
                        None => None,
                    };
                    return Ok(Created {
                        session,
                        first_message,
                        inserted: false,
                    });
                }
            }
            check_session_free(tx, &new.session).await?;
            insert_session(tx, &new.session, new.client_key.as_deref()).await?;
            let first_message = match &new.first_message {
                Some(m) => {
                    let m = enqueue(tx, m).await?.into_inner();
                    query(
                        tx,
                        "UPDATE sessions SET first_message = $2 WHERE id = $1",
                        &[&new.session.id.as_str(), &m.id.0],
                    )
                    .await?;
                    Some(m)
                }
                None => None,
            };
            Ok(Created {
                session: new.session.clone(),
                first_message,
                inserted: true,
            })
        })
    }

    async fn end_session(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<Session> {
        sm_lib::store::check_end_status(status)?;
        no_nul(reason, "the end reason")?;
        run!(self, "end session", Repeat::Safe, |c| {
            let ended = query_opt(
                c,
                &format!(
                    "UPDATE sessions SET status = $2, status_changed_at = $3, end_reason = $4 \
                     WHERE id = $1 AND status NOT IN ('stopped', 'dead') \
                     RETURNING {SESSION_COLUMNS}"
                ),
                &[&id.as_str(), &status.as_str(), &Timestamp::now().0, &reason],
            )
            .await?;
            match ended {
                Some(row) => Ok(rows::session(&row)?),
                // Already ended (keeps its first reason), or unknown.
                None => require_session(c, id).await,
            }
        })
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        run!(self, "read session", Repeat::Safe, |c| get_session(c, id)
            .await)
    }

    async fn find_live_by_name(&self, name: &SessionName) -> Result<Option<Session>> {
        run!(self, "find session by name", Repeat::Safe, |c| {
            let row = query_opt(
                c,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE name = $1 \
                     AND status NOT IN ('stopped', 'dead')"
                ),
                &[&name.as_str()],
            )
            .await?;
            Ok(row.as_ref().map(rows::session).transpose()?)
        })
    }

    async fn list_sessions(&self) -> Result<Vec<Session>> {
        run!(self, "list sessions", Repeat::Safe, |c| {
            let found = query(
                c,
                &format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY seq"),
                &[],
            )
            .await?;
            Ok(rows::all(found, rows::session)?)
        })
    }

    async fn set_status(&self, id: &SessionId, status: SessionStatus) -> Result<Session> {
        run!(self, "update status", Repeat::Safe, |c| {
            let updated = query_opt(
                c,
                &format!(
                    "UPDATE sessions SET status = $2, status_changed_at = $3 \
                     WHERE id = $1 AND status <> $2 RETURNING {SESSION_COLUMNS}"
                ),
                &[&id.as_str(), &status.as_str(), &Timestamp::now().0],
            )
            .await;
            match updated {
                Ok(Some(row)) => Ok(rows::session(&row)?),
                // Unknown, or already in that status (idempotent).
                Ok(None) => require_session(c, id).await,
                Err(e) if violated(&e) == Some("sessions_live_name") => {
                    let current = require_session(c, id).await?;
                    Err(Self::name_taken(c, current.name.as_ref(), id).await)
                }
                Err(e) => Err(Abort::Db(e)),
            }
        })
    }

    async fn rename_session(&self, id: &SessionId, name: Option<SessionName>) -> Result<Session> {
        run!(self, "rename session", Repeat::Safe, |c| {
            let renamed = query_opt(
                c,
                &format!("UPDATE sessions SET name = $2 WHERE id = $1 RETURNING {SESSION_COLUMNS}"),
                &[&id.as_str(), &name.as_ref().map(|n| n.as_str())],
            )
            .await;
            match renamed {
                Ok(Some(row)) => Ok(rows::session(&row)?),
                Ok(None) => Err(Abort::Refused(Error::SessionNotFound(id.to_string()))),
                Err(e) if violated(&e) == Some("sessions_live_name") => {
                    Err(Self::name_taken(c, name.as_ref(), id).await)
                }
                Err(e) => Err(Abort::Db(e)),
            }
        })
    }

    async fn set_task(&self, id: &SessionId, task: Option<String>) -> Result<Session> {
        if let Some(task) = &task {
            no_nul(task, "the task")?;
        }
        run!(self, "set task", Repeat::Safe, |c| {
            let row = query_opt(
                c,
                &format!("UPDATE sessions SET task = $2 WHERE id = $1 RETURNING {SESSION_COLUMNS}"),
                &[&id.as_str(), &task],
            )
            .await?;
            match row {
                Some(row) => Ok(rows::session(&row)?),
                None => Err(Abort::Refused(Error::SessionNotFound(id.to_string()))),
            }
        })
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        transact!(self, "delete session", |tx| {
            let current = query_opt(
                tx,
                "SELECT status FROM sessions WHERE id = $1 FOR UPDATE",
                &[&id.as_str()],
            )
            .await?;
            let Some(current) = current else {
                return Ok(false);
            };
            let status: SessionStatus = current.get::<_, &str>(0).parse()?;
            if status.is_live() {
                return Err(Abort::Refused(Error::InvalidInput(format!(
                    "session {id} is still live; kill it before deleting it"
                ))));
            }
            query(
                tx,
                "DELETE FROM messages WHERE target = $1",
                &[&id.as_str()],
            )
            .await?;
            query(tx, "DELETE FROM waits WHERE target = $1", &[&id.as_str()]).await?;
            query(tx, "DELETE FROM sessions WHERE id = $1", &[&id.as_str()]).await?;
            Ok(true)
        })
    }

    async fn enqueue(&self, message: NewMessage) -> Result<Inserted<Message>> {
        check_message_text(&message)?;
        // Without a key a repeat would queue the message twice.
        let repeat = if message.client_key.is_some() {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        run!(self, "enqueue", repeat, |c| enqueue(c, &message).await)
    }

    async fn claim_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        if modes.is_empty() {
            return Ok(None);
        }
        let priorities = priorities(modes);
        run!(self, "claim", Repeat::Unsafe, |c| {
            let row = query_opt(
                c,
                &format!(
                    "UPDATE messages SET state = 'delivering', attempts = attempts + 1, \
                     updated_at = $3 \
                     WHERE id = (SELECT id {NEXT_IN_QUEUE} FOR UPDATE SKIP LOCKED) \
                     RETURNING {MESSAGE_COLUMNS}"
                ),
                &[&target.as_str(), &priorities, &Timestamp::now().0],
            )
            .await?;
            Ok(row.as_ref().map(rows::message).transpose()?)
        })
    }

    async fn peek_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        if modes.is_empty() {
            return Ok(None);
        }
        let priorities = priorities(modes);
        run!(self, "peek at the queue", Repeat::Safe, |c| {
            let row = query_opt(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} {NEXT_IN_QUEUE}"),
                &[&target.as_str(), &priorities],
            )
            .await?;
            Ok(row.as_ref().map(rows::message).transpose()?)
        })
    }

    async fn mark_delivered(&self, id: MessageId) -> Result<Message> {
        run!(self, "mark delivered", Repeat::Safe, |c| {
            let to = MessageState::Delivered;
            if let Some(m) = transition(c, id, &[MessageState::Delivering], to, None).await? {
                return Ok(m);
            }
            match get_message(c, id).await? {
                None => Err(Abort::Refused(Error::MessageNotFound(id))),
                Some(m) if m.state == to => Ok(m),
                // Claimed between the two statements: try the move again.
                Some(m) if m.state == MessageState::Delivering => Err(Abort::Race),
                Some(m) => Err(invalid(&m, to)),
            }
        })
    }

    async fn mark_failed(&self, id: MessageId, reason: &str) -> Result<Message> {
        no_nul(reason, "the reason")?;
        run!(self, "mark failed", Repeat::Safe, |c| {
            let to = MessageState::Failed;
            let from = [MessageState::Queued, MessageState::Delivering];
            if let Some(m) = transition(c, id, &from, to, Some(reason)).await? {
                return Ok(m);
            }
            match get_message(c, id).await? {
                None => Err(Abort::Refused(Error::MessageNotFound(id))),
                Some(m) if m.state == to => Ok(m),
                Some(m) if from.contains(&m.state) => Err(Abort::Race),
                Some(m) => Err(invalid(&m, to)),
            }
        })
    }

    async fn requeue(&self, id: MessageId, reason: &str) -> Result<Message> {
        no_nul(reason, "the reason")?;
        run!(self, "requeue", Repeat::Unsafe, |c| {
            let to = MessageState::Queued;
            let from = [MessageState::Delivering];
            if let Some(m) = transition(c, id, &from, to, Some(reason)).await? {
                return Ok(m);
            }
            match get_message(c, id).await? {
                None => Err(Abort::Refused(Error::MessageNotFound(id))),
                Some(m) if m.state == MessageState::Delivering => Err(Abort::Race),
                Some(m) => Err(invalid(&m, to)),
            }
        })
    }

    async fn fail_pending(&self, target: &SessionId, reason: &str) -> Result<Vec<Message>> {
        no_nul(reason, "the reason")?;
        run!(self, "fail pending messages", Repeat::Safe, |c| {
            let failed = query(
                c,
                &format!(
                    "UPDATE messages SET state = 'failed', reason = $2, updated_at = $3 \
                     WHERE target = $1 AND state IN ('queued', 'delivering') \
                     RETURNING {MESSAGE_COLUMNS}"
                ),
                &[&target.as_str(), &reason, &Timestamp::now().0],
            )
            .await?;
            let mut failed = rows::all(failed, rows::message)?;
            failed.sort_by_key(|m| m.id);
            Ok(failed)
        })
    }

    async fn get_message(&self, id: MessageId) -> Result<Option<Message>> {
        run!(self, "read message", Repeat::Safe, |c| get_message(c, id)
            .await)
    }

    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let limit = if filter.limit == 0 {
            None
        } else {
            Some(i64::try_from(filter.limit).unwrap_or(i64::MAX))
        };
        let target = filter.target.as_ref().map(|t| t.as_str());
        let where_clause = "WHERE ($1::text IS NULL OR target = $1) \
                            AND (cardinality($2::text[]) = 0 OR state = ANY($2))";
        // The newest N: the last N in descending order, turned back into id order.
        let sql = if filter.newest {
            format!(
                "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages {where_clause} \
                 ORDER BY id DESC LIMIT $3) newest ORDER BY id"
            )
        } else {
            format!("SELECT {MESSAGE_COLUMNS} FROM messages {where_clause} ORDER BY id LIMIT $3")
        };
        run!(self, "list messages", Repeat::Safe, |c| {
            let found = query(c, &sql, &[&target, &states, &limit]).await?;
            Ok(rows::all(found, rows::message)?)
        })
    }

    async fn acquire_lock(&self, request: &LockRequest) -> Result<Inserted<Lock>> {
        no_nul(&request.reason, "the lock reason")?;
        let ws = rows::path_bytes(&request.workspace.0);
        transact!(self, "take lock", |tx| {
            if let Some(current) = get_lock(tx, &request.workspace, true).await? {
                if current.holder == request.holder {
                    let kind = if current.kind == LockKind::Explicit {
                        LockKind::Explicit
                    } else {
                        request.kind
                    };
                    query(
                        tx,
                        "UPDATE locks SET reason = $2, kind = $3 WHERE workspace = $1",
                        &[&ws, &request.reason, &kind.as_str()],
                    )
                    .await?;
                    return Ok(Inserted::existing(Lock {
                        reason: request.reason.clone(),
                        kind,
                        ..current
                    }));
                }
                let holder_live = get_session(tx, &current.holder)
                    .await?
                    .is_some_and(|s| s.status.is_live());
                if holder_live {
                    return Err(Abort::Refused(Error::LockConflict(Box::new(current))));
                }
                query(tx, "DELETE FROM locks WHERE workspace = $1", &[&ws]).await?;
            }
            let lock = Lock {
                workspace: request.workspace.clone(),
                holder: request.holder.clone(),
                reason: request.reason.clone(),
                kind: request.kind,
                acquired_at: Timestamp::now(),
            };
            let taken = query_opt(
                tx,
                "INSERT INTO locks (workspace, holder, reason, kind, acquired_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace) DO NOTHING \
                 RETURNING workspace",
                &[
                    &ws,
                    &lock.holder.as_str(),
                    &lock.reason,
                    &lock.kind.as_str(),
                    &lock.acquired_at.0,
                ],
            )
            .await?;
            match taken {
                Some(_) => Ok(Inserted::new(lock)),
                // Another node took it between our look and our insert.
                None => Err(Abort::Race),
            }
        })
    }

    async fn release_lock(
        &self,
        workspace: &Workspace,
        holder: &SessionId,
    ) -> Result<Option<Lock>> {
        let ws = rows::path_bytes(&workspace.0);
        run!(self, "release lock", Repeat::Safe, |c| {
            let released = query_opt(
                c,
                &format!(
                    "DELETE FROM locks WHERE workspace = $1 AND holder = $2 \
                     RETURNING {LOCK_COLUMNS}"
                ),
                &[&ws, &holder.as_str()],
            )
            .await?;
            if let Some(row) = released {
                return Ok(Some(rows::lock(&row)?));
            }
            match get_lock(c, workspace, false).await? {
                None => Ok(None),
                Some(current) if current.holder != *holder => {
                    Err(Abort::Refused(Error::LockConflict(Box::new(current))))
                }
                // Taken again by the holder between the two statements.
                Some(_) => Err(Abort::Race),
            }
        })
    }

    async fn release_locks_of(
        &self,
        holder: &SessionId,
        kind: Option<LockKind>,
    ) -> Result<Vec<Lock>> {
        let kind = kind.map(|k| k.as_str());
        run!(self, "release locks", Repeat::Safe, |c| {
            let released = query(
                c,
                &format!(
                    "DELETE FROM locks WHERE holder = $1 AND ($2::text IS NULL OR kind = $2) \
                     RETURNING {LOCK_COLUMNS}"
                ),
                &[&holder.as_str(), &kind],
            )
            .await?;
            let mut released = rows::all(released, rows::lock)?;
            released.sort_by(|a, b| a.workspace.0.cmp(&b.workspace.0));
            Ok(released)
        })
    }

    async fn get_lock(&self, workspace: &Workspace) -> Result<Option<Lock>> {
        run!(self, "read lock", Repeat::Safe, |c| {
            get_lock(c, workspace, false).await
        })
    }

    async fn list_locks(&self) -> Result<Vec<Lock>> {
        run!(self, "list locks", Repeat::Safe, |c| {
            let found = query(
                c,
                &format!("SELECT {LOCK_COLUMNS} FROM locks ORDER BY workspace"),
                &[],
            )
            .await?;
            Ok(rows::all(found, rows::lock)?)
        })
    }

    async fn add_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        deadline: Timestamp,
    ) -> Result<Wait> {
        let waiter_id = waiter.map(|w| w.as_str());
        run!(self, "add wait", Repeat::Unsafe, |c| {
            let created_at = Timestamp::now();
            let row = query_opt(
                c,
                &format!(
                    "INSERT INTO waits (waiter, target, deadline, created_at) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $2) \
                     RETURNING {WAIT_COLUMNS}"
                ),
                &[&waiter_id, &target.as_str(), &deadline.0, &created_at.0],
            )
            .await?;
            match row {
                Some(row) => Ok(rows::wait(&row)?),
                None => Err(Abort::Refused(Error::SessionNotFound(target.to_string()))),
            }
        })
    }

    async fn remove_wait(&self, id: i64) -> Result<bool> {
        run!(self, "remove wait", Repeat::Safe, |c| {
            Ok(
                !query(c, "DELETE FROM waits WHERE id = $1 RETURNING id", &[&id])
                    .await?
                    .is_empty(),
            )
        })
    }

    async fn list_waits(&self, target: Option<&SessionId>) -> Result<Vec<Wait>> {
        let target = target.map(|t| t.as_str());
        run!(self, "list waits", Repeat::Safe, |c| {
            let found = query(
                c,
                &format!(
                    "SELECT {WAIT_COLUMNS} FROM waits WHERE ($1::text IS NULL OR target = $1) \
                     ORDER BY id"
                ),
                &[&target],
            )
            .await?;
            Ok(rows::all(found, rows::wait)?)
        })
    }

    async fn append_event(&self, session: Option<&SessionId>, kind: EventKind) -> Result<Event> {
        let mut events = self.append_events(session, vec![kind]).await?;
        events.pop().ok_or_else(|| Error::Store {
            message: "appending an event returned nothing".into(),
            source: None,
        })
    }

    async fn append_events(
        &self,
        session: Option<&SessionId>,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut tags = Vec::with_capacity(kinds.len());
        let mut data = Vec::with_capacity(kinds.len());
        for kind in &kinds {
            let json =
                serde_json::to_string(kind).map_err(|e| Error::store("serialise event", e))?;
            // JSON escapes a NUL as \u0000, so only the tag could hold one; ours never do.
            tags.push(kind.tag());
            data.push(json);
        }
        let at = Timestamp::now();
        let session_id = session.map(|s| s.as_str());
        let mut ids: Vec<i64> = run!(self, "append events", Repeat::Unsafe, |c| {
            let inserted = query(
                c,
                APPEND_EVENTS,
                &[&EVENT_LOCK, &at.0, &session_id, &tags, &data],
            )
            .await?;
            Ok(inserted
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>())
        })?;
        ids.sort_unstable();
        if ids.len() != kinds.len() {
            return Err(Error::Store {
                message: format!(
                    "appending {} events stored {} of them",
                    kinds.len(),
                    ids.len()
                ),
                source: None,
            });
        }
        Ok(ids
            .into_iter()
            .zip(kinds)
            .map(|(id, kind)| Event {
                id: EventId(id),
                at,
                session: session.cloned(),
                kind,
            })
            .collect())
    }

    async fn events(
        &self,
        after: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.read_events(
            "WHERE id > $1 AND ($2::text IS NULL OR session = $2) ORDER BY id",
            after.map_or(0, |a| a.0),
            session,
            limit,
        )
        .await
    }

    async fn events_before(
        &self,
        before: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.read_events(
            "WHERE id < $1 AND ($2::text IS NULL OR session = $2) ORDER BY id DESC",
            before.map_or(i64::MAX, |b| b.0),
            session,
            limit,
        )
        .await
    }
}

impl PostgresStore {
    /// A page of the event log: `clause` filters by the id bound (`$1`) and the session or
    /// NULL (`$2`), and orders.
    async fn read_events(
        &self,
        clause: &str,
        bound: i64,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let limit = if limit == 0 {
            None
        } else {
            Some(i64::try_from(limit).unwrap_or(i64::MAX))
        };
        let session = session.map(|s| s.as_str());
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events {clause} LIMIT $3");
        run!(self, "read events", Repeat::Safe, |c| {
            let found = query(c, &sql, &[&bound, &session, &limit]).await?;
            Ok(rows::all(found, rows::event)?)
        })
    }
}
