//! # sm-store-sqlite — sm's durable state in one SQLite file
//!
//! [`SqliteStore`] implements [`sm_lib::MessageStore`]: the message queue, the session
//! registry, workspace locks and the event log, in one database file (`sm.db` in the state
//! dir). The server uses it by default; embedders can too.
//!
//! How it keeps the store contract:
//! - **Durable**: WAL journal. What a caller is told was accepted (a message enqueued, a
//!   session registered, a lock taken, a wait added) is committed with `synchronous = FULL`:
//!   it survives the process being killed and the machine losing power. The engine's own
//!   progress (claims, deliveries, requeues, statuses, the event log) is committed without
//!   its own fsync: it survives the process being killed at once (the WAL is written before
//!   the call returns), and a power loss once the next fsynced commit or the background sync
//!   ([`SYNC_INTERVAL`] later at most) has passed — a power loss ends every agent too, so a
//!   delivery step it takes back only concerns an agent that is gone.
//! - **Fast while durable**: every write goes to one writer thread that commits concurrent
//!   writes together (group commit): each caller still gets its own savepoint, so one
//!   refused write never undoes another, and nobody is answered before the commit that holds
//!   their change is on disk.
//! - **Off the runtime**: the writer is a plain thread and reads run in
//!   `tokio::task::spawn_blocking`; no SQLite call blocks an async worker.
//! - **Several processes**: writes take SQLite's write lock with `BEGIN IMMEDIATE` and wait
//!   up to `busy_timeout` for another process; claims happen inside that lock, so they stay
//!   exclusive across processes.
//! - **Migrations**: the schema version lives in `PRAGMA user_version`; opening a database
//!   applies the missing migrations in one transaction and refuses a database written by a
//!   newer sm.

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sm_lib::{
    Created, DeliveryMode, Error, Event, EventId, EventKind, Inserted, Lock, LockKind, LockRequest,
    Message, MessageFilter, MessageId, MessageState, MessageStore, NewMessage, NewSession, Result,
    Session, SessionId, SessionName, SessionStatus, Timestamp, Wait, Workspace,
};

/// How long a write waits for another process holding SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most writes committed together in one transaction.
const MAX_BATCH: usize = 512;
/// The longest a commit made without its own fsync waits for one.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// How far a write must reach before its caller is answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Durability {
    /// On disk (fsynced): survives a power loss.
    PowerLoss,
    /// In the WAL (written, not yet fsynced): survives the process being killed.
    ProcessCrash,
}

type Finish = Box<dyn FnOnce(Option<String>) + Send>;
/// A write: run with the writer's connection inside the batch transaction, or with the
/// reason the transaction could not start. Returns whether it succeeded and how to answer
/// its caller once the batch's fate is known.
type WriteFn = Box<dyn FnOnce(std::result::Result<&Connection, String>) -> (bool, Finish) + Send>;

/// A write and how durable its commit must be.
struct WriteJob {
    run: WriteFn,
    durability: Durability,
}

/// A [`MessageStore`] in a SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    reader: Arc<Mutex<Connection>>,
}

fn sql_error(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| Error::store(format!("{}{what} failed: {e}", hint(&e)), e)
}

/// What an operator must fix, said plainly before SQLite's own words.
fn hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => "the disk is full; ",
        Some(rusqlite::ErrorCode::ReadOnly) => "the database is read-only; ",
        Some(rusqlite::ErrorCode::CannotOpen) => "the database cannot be opened; ",
        Some(rusqlite::ErrorCode::SystemIoFailure) => {
            "writing the database failed (is the disk full?); "
        }
        _ => "",
    }
}

/// Every message text is in the database: it is created 0600 (SQLite gives its WAL and
/// shared-memory files the database's mode), and an existing one readable by others is
/// tightened, with its WAL and shared-memory files.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| Error::store(format!("cannot protect {}", path.display()), e);
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(fail)?;
            }
        }
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::store(format!("cannot open the database {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_error("set busy_timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_error("enable WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_error("set synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql_error("enable foreign keys"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating its parent directory and
    /// applying migrations. Runs the blocking work off the async runtime.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| Error::store("open task failed", e))?
    }

    /// [`SqliteStore::open`] for synchronous callers (not on an async runtime thread).
    pub fn open_blocking(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::store(format!("cannot create {}", parent.display()), e))?;
        }
        make_private(path)?;
        let mut writer = connect(path)?;
        schema::migrate(&mut writer)?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let wal = wal_path(path);
        std::thread::Builder::new()
            .name("sm-sqlite-writer".into())
            .spawn(move || writer_loop(writer, &rx, &wal))
            .map_err(|e| Error::store("cannot start the writer thread", e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                reader: Arc::new(Mutex::new(reader)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's transaction; answers after the commit that holds it is on
    /// disk.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_as(Durability::PowerLoss, f).await
    }

    /// [`SqliteStore::write`] for the engine's own progress: answers once the commit is in
    /// the WAL, which the next fsync makes durable (see the crate docs).
    async fn write_progress<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_as(Durability::ProcessCrash, f).await
    }

    async fn write_as<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let run: WriteFn = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(message) => Err(Error::Store {
                    message,
                    source: None,
                }),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error| {
                let answer = match commit_error {
                    Some(message) if ok => Err(Error::Store {
                        message: format!("commit failed: {message}"),
                        source: None,
                    }),
                    _ => result,
                };
                let _ = tx.send(answer);
            });
            (ok, finish)
        });
        let job = WriteJob { run, durability };
        let sender = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed("the SQLite store"))?;
        sender
            .send(job)
            .map_err(|_| Error::Closed("the SQLite writer"))?;
        rx.await.map_err(|_| Error::Closed("the SQLite writer"))?
    }

    /// A page of the event log: `sql` takes the id bound (`?1`), the session or NULL
    /// (`?2`) and the limit (`?3`, 0 for none).
    async fn read_events(
        &self,
        sql: &'static str,
        bound: i64,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let session = session.cloned();
        self.read(move |conn| {
            let limit = if limit == 0 { -1 } else { limit as i64 };
            collect(
                conn,
                sql,
                params![bound, session.as_ref().map(|s| s.as_str()), limit],
                event_from_row,
                "read events",
            )
        })
        .await
    }

    /// Runs `f` on the read connection, off the runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.inner.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| Error::store("read task failed", e))?
    }
}

/// The WAL file SQLite keeps beside the database.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

/// Commits batches of writes: each job in its own savepoint, the batch in one transaction,
/// fsynced when any job in it must survive a power loss. Commits made without an fsync get
/// one within [`SYNC_INTERVAL`].
fn writer_loop(conn: Connection, jobs: &mpsc::Receiver<WriteJob>, wal: &Path) {
    let mut synchronous = Durability::PowerLoss;
    let mut unsynced_since: Option<std::time::Instant> = None;
    loop {
        let first = match unsynced_since {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Some(since) => {
                let left = SYNC_INTERVAL.saturating_sub(since.elapsed());
                match jobs.recv_timeout(left) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        sync_wal(wal);
                        unsynced_since = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        sync_wal(wal);
                        return;
                    }
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let needs = if batch.iter().any(|j| j.durability == Durability::PowerLoss) {
            Durability::PowerLoss
        } else {
            Durability::ProcessCrash
        };
        if needs != synchronous {
            let level = match needs {
                Durability::PowerLoss => "FULL",
                Durability::ProcessCrash => "NORMAL",
            };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => synchronous = needs,
                Err(e) => tracing::warn!(error = %e, "SQLite: cannot change synchronous"),
            }
        }
        if let Err(e) = conn.exec("BEGIN IMMEDIATE", []) {
            tracing::error!(error = %e, "SQLite: cannot begin a write transaction");
            let message = format!("{}cannot begin a write transaction: {e}", hint(&e));
            for job in batch {
                let (_, finish) = (job.run)(Err(message.clone()));
                finish(None);
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(batch.len());
        for job in batch {
            finishes.push(run_job(&conn, job).1);
        }
        let commit_error = conn.exec("COMMIT", []).err().map(|e| {
            tracing::error!(error = %e, "SQLite: commit failed");
            let _ = conn.exec("ROLLBACK", []);
            format!("{}{e}", hint(&e))
        });
        if commit_error.is_none() {
            // An fsynced commit makes everything before it in the WAL durable as well.
            unsynced_since = match synchronous {
                Durability::PowerLoss => None,
                Durability::ProcessCrash => {
                    unsynced_since.or_else(|| Some(std::time::Instant::now()))
                }
            };
        }
        for finish in finishes {
            finish(commit_error.clone());
        }
    }
}

/// Makes commits made without an fsync durable: fsyncs the WAL file they are in.
fn sync_wal(wal: &Path) {
    match std::fs::File::open(wal) {
        Ok(file) => {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "SQLite: cannot sync the WAL");
            }
        }
        // Checkpointed and removed: nothing left to sync.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(error = %e, "SQLite: cannot open the WAL to sync it"),
    }
}

fn run_job(conn: &Connection, job: WriteJob) -> (bool, Finish) {
    if let Err(e) = conn.exec("SAVEPOINT job", []) {
        return (job.run)(Err(format!("cannot open a savepoint: {e}")));
    }
    let (ok, finish) = (job.run)(Ok(conn));
    if !ok {
        // Undo whatever the refused write did, leaving the rest of the batch intact.
        let _ = conn.exec("ROLLBACK TO job", []);
    }
    let _ = conn.exec("RELEASE job", []);
    (ok, finish)
}

/// Statements through the connection's statement cache: the store runs the same few
/// statements for every message, and parsing them again each time was a visible share of
/// the writer's time.
trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

// ----- row mapping -----

/// A stored value that does not convert back into its domain type.
fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn parse_col<T: std::str::FromStr<Err = Error>>(row: &Row<'_>, idx: &str) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    text.parse().map_err(conversion)
}

/// Like [`parse_col`] for a nullable column.
fn parse_opt_col<T: std::str::FromStr<Err = Error>>(
    row: &Row<'_>,
    idx: &str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| t.parse()).transpose().map_err(conversion)
}

fn path_to_blob(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

fn blob_to_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

const SESSION_COLUMNS: &str = "id, name, parent, agent, model, working_dir, status, created_at, \
     status_changed_at, task, end_reason, skip_permissions, node";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: parse_col(row, "id")?,
        name: parse_opt_col(row, "name")?,
        parent: parse_opt_col(row, "parent")?,
        agent: parse_col(row, "agent")?,
        model: row.get("model")?,
        working_dir: blob_to_path(row.get("working_dir")?),
        status: parse_col(row, "status")?,
        task: row.get("task")?,
        created_at: Timestamp(row.get("created_at")?),
        status_changed_at: Timestamp(row.get("status_changed_at")?),
        end_reason: row.get("end_reason")?,
        skip_permissions: row.get("skip_permissions")?,
        node: row.get("node")?,
    })
}

const MESSAGE_COLUMNS: &str =
    "id, target, sender, text, mode, state, attempts, reason, created_at, updated_at";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId(row.get("id")?),
        target: parse_col(row, "target")?,
        sender: parse_opt_col(row, "sender")?,
        text: row.get("text")?,
        mode: parse_col(row, "mode")?,
        state: parse_col(row, "state")?,
        attempts: row.get("attempts")?,
        reason: row.get("reason")?,
        created_at: Timestamp(row.get("created_at")?),
        updated_at: Timestamp(row.get("updated_at")?),
    })
}

fn lock_from_row(row: &Row<'_>) -> rusqlite::Result<Lock> {
    Ok(Lock {
        workspace: Workspace(blob_to_path(row.get("workspace")?)),
        holder: parse_col(row, "holder")?,
        reason: row.get("reason")?,
        kind: parse_col(row, "kind")?,
        acquired_at: Timestamp(row.get("acquired_at")?),
    })
}

fn wait_from_row(row: &Row<'_>) -> rusqlite::Result<Wait> {
    Ok(Wait {
        id: row.get("id")?,
        waiter: parse_opt_col(row, "waiter")?,
        target: parse_col(row, "target")?,
        deadline: Timestamp(row.get("deadline")?),
        created_at: Timestamp(row.get("created_at")?),
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let data: String = row.get("data")?;
    let kind: EventKind = serde_json::from_str(&data).map_err(conversion)?;
    Ok(Event {
        id: EventId(row.get("id")?),
        at: Timestamp(row.get("at")?),
        session: parse_opt_col(row, "session")?,
        kind,
    })
}

// ----- queries used inside write transactions -----

fn get_session_tx(conn: &Connection, id: &SessionId) -> Result<Option<Session>> {
    conn.row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id.as_str()],
        session_from_row,
    )
    .optional()
    .map_err(sql_error("read session"))
}

fn require_session(conn: &Connection, id: &SessionId) -> Result<Session> {
    get_session_tx(conn, id)?.ok_or_else(|| Error::SessionNotFound(id.to_string()))
}

fn live_holder_of_name(
    conn: &Connection,
    name: &SessionName,
    except: &SessionId,
) -> Result<Option<SessionId>> {
    let id: Option<String> = conn
        .row(
            "SELECT id FROM sessions WHERE name = ?1 AND id != ?2 \
             AND status NOT IN ('stopped', 'dead') LIMIT 1",
            params![name.as_str(), except.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_error("check name"))?;
    id.map(|s| s.parse()).transpose()
}

fn check_name_free(conn: &Connection, name: &SessionName, except: &SessionId) -> Result<()> {
    match live_holder_of_name(conn, name, except)? {
        Some(holder) => Err(Error::NameTaken {
            name: name.clone(),
            holder,
        }),
        None => Ok(()),
    }
}

fn get_message_tx(conn: &Connection, id: MessageId) -> Result<Message> {
    conn.row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        [id.0],
        message_from_row,
    )
    .optional()
    .map_err(sql_error("read message"))?
    .ok_or(Error::MessageNotFound(id))
}

fn set_message_state(
    conn: &Connection,
    id: MessageId,
    state: MessageState,
    reason: Option<&str>,
) -> Result<Message> {
    conn.exec(
        "UPDATE messages SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4 \
         WHERE id = ?1",
        params![id.0, state.as_str(), reason, Timestamp::now().0],
    )
    .map_err(sql_error("update message"))?;
    get_message_tx(conn, id)
}

fn invalid(m: &Message, to: MessageState) -> Error {
    Error::InvalidTransition {
        message: m.id,
        from: m.state,
        to,
    }
}

fn get_lock_tx(conn: &Connection, workspace: &Workspace) -> Result<Option<Lock>> {
    conn.row(
        "SELECT workspace, holder, reason, kind, acquired_at FROM locks WHERE workspace = ?1",
        [path_to_blob(&workspace.0)],
        lock_from_row,
    )
    .optional()
    .map_err(sql_error("read lock"))
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
    what: &str,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error(what))?;
    let rows = stmt
        .query_map(params, map)
        .map_err(sql_error(what))?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(sql_error(what))?;
    Ok(rows)
}

fn insert_session_tx(conn: &Connection, s: &Session, client_key: Option<&str>) -> Result<()> {
    if get_session_tx(conn, &s.id)?.is_some() {
        return Err(Error::SessionExists(s.id.clone()));
    }
    if let (Some(name), true) = (&s.name, s.status.is_live()) {
        check_name_free(conn, name, &s.id)?;
    }
    conn.exec(
        &format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}, client_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ),
        params![
            s.id.as_str(),
            s.name.as_ref().map(|n| n.as_str()),
            s.parent.as_ref().map(|p| p.as_str()),
            s.agent.as_str(),
            s.model,
            path_to_blob(&s.working_dir),
            s.status.as_str(),
            s.created_at.0,
            s.status_changed_at.0,
            s.task,
            s.end_reason,
            s.skip_permissions,
            s.node,
            client_key,
        ],
    )
    .map_err(sql_error("insert session"))?;
    Ok(())
}

fn enqueue_tx(conn: &Connection, message: NewMessage) -> Result<Inserted<Message>> {
    require_session(conn, &message.target)?;
    if let Some(key) = &message.client_key {
        let existing: Option<i64> = conn
            .row(
                "SELECT id FROM messages WHERE client_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_error("look up a client key"))?;
        if let Some(id) = existing {
            let existing = get_message_tx(conn, MessageId(id))?;
            return sm_lib::store::same_message_for_key(existing, &message).map(Inserted::existing);
        }
    }
    let now = Timestamp::now().0;
    conn.exec(
        "INSERT INTO messages (target, sender, text, mode, priority, state, attempts, \
         created_at, updated_at, client_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?6, ?7)",
        params![
            message.target.as_str(),
            message.sender.as_ref().map(|s| s.as_str()),
            message.text,
            message.mode.as_str(),
            message.mode.priority(),
            now,
            message.client_key,
        ],
    )
    .map_err(sql_error("enqueue"))?;
    get_message_tx(conn, MessageId(conn.last_insert_rowid())).map(Inserted::new)
}

fn append_event_tx(
    conn: &Connection,
    session: Option<&SessionId>,
    kind: EventKind,
) -> Result<Event> {
    let data = serde_json::to_string(&kind).map_err(|e| Error::store("serialise event", e))?;
    let at = Timestamp::now();
    conn.exec(
        "INSERT INTO events (at, session, kind, data) VALUES (?1, ?2, ?3, ?4)",
        params![at.0, session.map(|s| s.as_str()), kind.tag(), data],
    )
    .map_err(sql_error("append event"))?;
    Ok(Event {
        id: EventId(conn.last_insert_rowid()),
        at,
        session: session.cloned(),
        kind,
    })
}

/// Where the message `claim_next` takes (and `peek_next` shows) is found: the oldest queued
/// message for target `?1` of the highest priority among `modes`. The priorities come from
/// our own enum, never from input, so inlining them is safe.
fn next_in_queue(modes: &[DeliveryMode]) -> String {
    let priorities = modes
        .iter()
        .map(|m| m.priority().to_string())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "FROM messages WHERE target = ?1 AND state = 'queued' AND priority IN ({priorities}) \
         ORDER BY priority DESC, id LIMIT 1"
    )
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn insert_session(&self, session: &Session) -> Result<()> {
        let s = session.clone();
        self.write(move |conn| insert_session_tx(conn, &s, None))
            .await
    }

    async fn create_session(&self, new: NewSession) -> Result<Created> {
        self.write(move |conn| {
            if let Some(key) = &new.client_key {
                let existing: Option<(String, Option<i64>)> = conn
                    .row(
                        "SELECT id, first_message FROM sessions WHERE client_key = ?1",
                        [key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_error("look up a spawn key"))?;
                if let Some((id, first)) = existing {
                    let id: SessionId = id.parse()?;
                    let session = require_session(conn, &id)?;
                    let first_message = match first {
                        Some(m) => Some(get_message_tx(conn, MessageId(m))?),
                        None => None,
                    };
                    return Ok(Created {
                        session,
                        first_message,
                        inserted: false,
                    });
                }
            }
            sm_lib::store::check_new_session(&new)?;
            insert_session_tx(conn, &new.session, new.client_key.as_deref())?;
            let first_message = match new.first_message {
                Some(m) => {
                    let m = enqueue_tx(conn, m)?.into_inner();
                    conn.exec(
                        "UPDATE sessions SET first_message = ?2 WHERE id = ?1",
                        params![new.session.id.as_str(), m.id.0],
                    )
                    .map_err(sql_error("record the first message"))?;
                    Some(m)
                }
                None => None,
            };
            Ok(Created {
                session: new.session,
                first_message,
                inserted: true,
            })
        })
        .await
    }

    async fn end_session(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<Session> {
        sm_lib::store::check_end_status(status)?;
        let id = id.clone();
        let reason = reason.to_string();
        self.write(move |conn| {
            let current = require_session(conn, &id)?;
            if !current.status.is_live() {
                return Ok(current);
            }
            conn.exec(
                "UPDATE sessions SET status = ?2, status_changed_at = ?3, end_reason = ?4 \
                 WHERE id = ?1",
                params![id.as_str(), status.as_str(), Timestamp::now().0, reason],
            )
            .map_err(sql_error("end session"))?;
            require_session(conn, &id)
        })
        .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        let id = id.clone();
        self.read(move |conn| get_session_tx(conn, &id)).await
    }

    async fn find_live_by_name(&self, name: &SessionName) -> Result<Option<Session>> {
        let name = name.clone();
        self.read(move |conn| {
            conn.row(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE name = ?1 \
                     AND status NOT IN ('stopped', 'dead')"
                ),
                [name.as_str()],
                session_from_row,
            )
            .optional()
            .map_err(sql_error("find session by name"))
        })
        .await
    }

    async fn list_sessions(&self) -> Result<Vec<Session>> {
        self.read(|conn| {
            collect(
                conn,
                &format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY rowid"),
                [],
                session_from_row,
                "list sessions",
            )
        })
        .await
    }

    async fn set_status(&self, id: &SessionId, status: SessionStatus) -> Result<Session> {
        let id = id.clone();
        self.write_progress(move |conn| {
            let current = require_session(conn, &id)?;
            if current.status == status {
                return Ok(current);
            }
            if status.is_live() && !current.status.is_live() {
                if let Some(name) = &current.name {
                    check_name_free(conn, name, &id)?;
                }
            }
            conn.exec(
                "UPDATE sessions SET status = ?2, status_changed_at = ?3 WHERE id = ?1",
                params![id.as_str(), status.as_str(), Timestamp::now().0],
            )
            .map_err(sql_error("update status"))?;
            require_session(conn, &id)
        })
        .await
    }

    async fn rename_session(&self, id: &SessionId, name: Option<SessionName>) -> Result<Session> {
        let id = id.clone();
        self.write(move |conn| {
            let current = require_session(conn, &id)?;
            if let (Some(name), true) = (&name, current.status.is_live()) {
                check_name_free(conn, name, &id)?;
            }
            conn.exec(
                "UPDATE sessions SET name = ?2 WHERE id = ?1",
                params![id.as_str(), name.as_ref().map(|n| n.as_str())],
            )
            .map_err(sql_error("rename session"))?;
            require_session(conn, &id)
        })
        .await
    }

    async fn set_task(&self, id: &SessionId, task: Option<String>) -> Result<Session> {
        let id = id.clone();
        self.write(move |conn| {
            require_session(conn, &id)?;
            conn.exec(
                "UPDATE sessions SET task = ?2 WHERE id = ?1",
                params![id.as_str(), task],
            )
            .map_err(sql_error("set task"))?;
            require_session(conn, &id)
        })
        .await
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool> {
        let id = id.clone();
        self.write(move |conn| {
            let Some(current) = get_session_tx(conn, &id)? else {
                return Ok(false);
            };
            if current.status.is_live() {
                return Err(Error::InvalidInput(format!(
                    "session {id} is still live; kill it before deleting it"
                )));
            }
            conn.exec("DELETE FROM messages WHERE target = ?1", [id.as_str()])
                .map_err(sql_error("delete messages"))?;
            conn.exec("DELETE FROM waits WHERE target = ?1", [id.as_str()])
                .map_err(sql_error("delete waits"))?;
            conn.exec("DELETE FROM sessions WHERE id = ?1", [id.as_str()])
                .map_err(sql_error("delete session"))?;
            Ok(true)
        })
        .await
    }

    async fn enqueue(&self, message: NewMessage) -> Result<Inserted<Message>> {
        self.write(move |conn| enqueue_tx(conn, message)).await
    }

    async fn peek_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        if modes.is_empty() {
            return Ok(None);
        }
        let next = next_in_queue(modes);
        let target = target.clone();
        self.read(move |conn| {
            conn.row(
                &format!("SELECT {MESSAGE_COLUMNS} {next}"),
                [target.as_str()],
                message_from_row,
            )
            .optional()
            .map_err(sql_error("peek at the queue"))
        })
        .await
    }

    async fn claim_next(
        &self,
        target: &SessionId,
        modes: &[DeliveryMode],
    ) -> Result<Option<Message>> {
        if modes.is_empty() {
            return Ok(None);
        }
        let next = next_in_queue(modes);
        let target = target.clone();
        self.write_progress(move |conn| {
            conn.row(
                &format!(
                    "UPDATE messages SET state = 'delivering', attempts = attempts + 1, \
                     updated_at = ?2 WHERE id = (SELECT id {next}) RETURNING {MESSAGE_COLUMNS}"
                ),
                params![target.as_str(), Timestamp::now().0],
                message_from_row,
            )
            .optional()
            .map_err(sql_error("claim"))
        })
        .await
    }

    async fn mark_delivered(&self, id: MessageId) -> Result<Message> {
        self.write_progress(move |conn| {
            let m = get_message_tx(conn, id)?;
            match m.state {
                MessageState::Delivered => Ok(m),
                MessageState::Delivering => {
                    set_message_state(conn, id, MessageState::Delivered, None)
                }
                _ => Err(invalid(&m, MessageState::Delivered)),
            }
        })
        .await
    }

    async fn mark_failed(&self, id: MessageId, reason: &str) -> Result<Message> {
        let reason = reason.to_string();
        self.write_progress(move |conn| {
            let m = get_message_tx(conn, id)?;
            match m.state {
                MessageState::Failed => Ok(m),
                MessageState::Queued | MessageState::Delivering => {
                    set_message_state(conn, id, MessageState::Failed, Some(&reason))
                }
                MessageState::Delivered => Err(invalid(&m, MessageState::Failed)),
            }
        })
        .await
    }

    async fn requeue(&self, id: MessageId, reason: &str) -> Result<Message> {
        let reason = reason.to_string();
        self.write_progress(move |conn| {
            let m = get_message_tx(conn, id)?;
            if m.state != MessageState::Delivering {
                return Err(invalid(&m, MessageState::Queued));
            }
            set_message_state(conn, id, MessageState::Queued, Some(&reason))
        })
        .await
    }

    async fn fail_pending(&self, target: &SessionId, reason: &str) -> Result<Vec<Message>> {
        let target = target.clone();
        let reason = reason.to_string();
        self.write(move |conn| {
            collect(
                conn,
                &format!(
                    "UPDATE messages SET state = 'failed', reason = ?2, updated_at = ?3 \
                     WHERE target = ?1 AND state IN ('queued', 'delivering') \
                     RETURNING {MESSAGE_COLUMNS}"
                ),
                params![target.as_str(), reason, Timestamp::now().0],
                message_from_row,
                "fail pending messages",
            )
        })
        .await
    }

    async fn get_message(&self, id: MessageId) -> Result<Option<Message>> {
        self.read(move |conn| match get_message_tx(conn, id) {
            Ok(m) => Ok(Some(m)),
            Err(Error::MessageNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>> {
        let filter = filter.clone();
        self.read(move |conn| {
            let states = filter
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect::<Vec<_>>()
                .join(",");
            let state_clause = if states.is_empty() {
                String::new()
            } else {
                format!("AND state IN ({states})")
            };
            let limit = if filter.limit == 0 {
                -1
            } else {
                filter.limit as i64
            };
            // The newest N: the last N in descending order, turned back into id order.
            let query = if filter.newest {
                format!(
                    "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages \
                     WHERE (?1 IS NULL OR target = ?1) {state_clause} ORDER BY id DESC LIMIT ?2) \
                     ORDER BY id"
                )
            } else {
                format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages \
                     WHERE (?1 IS NULL OR target = ?1) {state_clause} ORDER BY id LIMIT ?2"
                )
            };
            collect(
                conn,
                &query,
                params![filter.target.as_ref().map(|t| t.as_str()), limit],
                message_from_row,
                "list messages",
            )
        })
        .await
    }

    async fn acquire_lock(&self, request: &LockRequest) -> Result<Inserted<Lock>> {
        let req = request.clone();
        self.write(move |conn| {
            let ws = path_to_blob(&req.workspace.0);
            if let Some(current) = get_lock_tx(conn, &req.workspace)? {
                if current.holder == req.holder {
                    let kind = if current.kind == LockKind::Explicit {
                        LockKind::Explicit
                    } else {
                        req.kind
                    };
                    conn.exec(
                        "UPDATE locks SET reason = ?2, kind = ?3 WHERE workspace = ?1",
                        params![ws, req.reason, kind.as_str()],
                    )
                    .map_err(sql_error("update lock"))?;
                    return Ok(Inserted::existing(Lock {
                        reason: req.reason,
                        kind,
                        ..current
                    }));
                }
                let holder_live =
                    get_session_tx(conn, &current.holder)?.is_some_and(|s| s.status.is_live());
                if holder_live {
                    return Err(Error::LockConflict(Box::new(current)));
                }
            }
            let lock = Lock {
                workspace: req.workspace,
                holder: req.holder,
                reason: req.reason,
                kind: req.kind,
                acquired_at: Timestamp::now(),
            };
            conn.exec(
                "INSERT OR REPLACE INTO locks (workspace, holder, reason, kind, acquired_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    ws,
                    lock.holder.as_str(),
                    lock.reason,
                    lock.kind.as_str(),
                    lock.acquired_at.0
                ],
            )
            .map_err(sql_error("take lock"))?;
            Ok(Inserted::new(lock))
        })
        .await
    }

    async fn release_lock(
        &self,
        workspace: &Workspace,
        holder: &SessionId,
    ) -> Result<Option<Lock>> {
        let workspace = workspace.clone();
        let holder = holder.clone();
        self.write(move |conn| match get_lock_tx(conn, &workspace)? {
            None => Ok(None),
            Some(current) if current.holder != holder => {
                Err(Error::LockConflict(Box::new(current)))
            }
            Some(current) => {
                conn.exec(
                    "DELETE FROM locks WHERE workspace = ?1",
                    [path_to_blob(&workspace.0)],
                )
                .map_err(sql_error("release lock"))?;
                Ok(Some(current))
            }
        })
        .await
    }

    async fn release_locks_of(
        &self,
        holder: &SessionId,
        kind: Option<LockKind>,
    ) -> Result<Vec<Lock>> {
        let holder = holder.clone();
        self.write(move |conn| {
            collect(
                conn,
                "DELETE FROM locks WHERE holder = ?1 AND (?2 IS NULL OR kind = ?2) \
                 RETURNING workspace, holder, reason, kind, acquired_at",
                params![holder.as_str(), kind.map(|k| k.as_str())],
                lock_from_row,
                "release locks",
            )
        })
        .await
    }

    async fn get_lock(&self, workspace: &Workspace) -> Result<Option<Lock>> {
        let workspace = workspace.clone();
        self.read(move |conn| get_lock_tx(conn, &workspace)).await
    }

    async fn list_locks(&self) -> Result<Vec<Lock>> {
        self.read(|conn| {
            collect(
                conn,
                "SELECT workspace, holder, reason, kind, acquired_at FROM locks ORDER BY workspace",
                [],
                lock_from_row,
                "list locks",
            )
        })
        .await
    }

    async fn add_wait(
        &self,
        waiter: Option<&SessionId>,
        target: &SessionId,
        deadline: Timestamp,
    ) -> Result<Wait> {
        let waiter = waiter.cloned();
        let target = target.clone();
        self.write(move |conn| {
            require_session(conn, &target)?;
            let created_at = Timestamp::now();
            conn.exec(
                "INSERT INTO waits (waiter, target, deadline, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    waiter.as_ref().map(|w| w.as_str()),
                    target.as_str(),
                    deadline.0,
                    created_at.0
                ],
            )
            .map_err(sql_error("add wait"))?;
            Ok(Wait {
                id: conn.last_insert_rowid(),
                waiter,
                target,
                deadline,
                created_at,
            })
        })
        .await
    }

    async fn remove_wait(&self, id: i64) -> Result<bool> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM waits WHERE id = ?1", [id])
                .map_err(sql_error("remove wait"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_waits(&self, target: Option<&SessionId>) -> Result<Vec<Wait>> {
        let target = target.cloned();
        self.read(move |conn| {
            collect(
                conn,
                "SELECT id, waiter, target, deadline, created_at FROM waits \
                 WHERE (?1 IS NULL OR target = ?1) ORDER BY id",
                params![target.as_ref().map(|t| t.as_str())],
                wait_from_row,
                "list waits",
            )
        })
        .await
    }

    async fn append_event(&self, session: Option<&SessionId>, kind: EventKind) -> Result<Event> {
        let session = session.cloned();
        self.write_progress(move |conn| append_event_tx(conn, session.as_ref(), kind))
            .await
    }

    async fn append_events(
        &self,
        session: Option<&SessionId>,
        kinds: Vec<EventKind>,
    ) -> Result<Vec<Event>> {
        let session = session.cloned();
        self.write_progress(move |conn| {
            kinds
                .into_iter()
                .map(|k| append_event_tx(conn, session.as_ref(), k))
                .collect()
        })
        .await
    }

    async fn events(
        &self,
        after: Option<EventId>,
        session: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.read_events(
            "SELECT id, at, session, data FROM events WHERE id > ?1 \
             AND (?2 IS NULL OR session = ?2) ORDER BY id LIMIT ?3",
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
            "SELECT id, at, session, data FROM events WHERE id < ?1 \
             AND (?2 IS NULL OR session = ?2) ORDER BY id DESC LIMIT ?3",
            before.map_or(i64::MAX, |b| b.0),
            session,
            limit,
        )
        .await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the sender ends the writer thread once it has committed what it holds.
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
