//! From PostgreSQL rows to sm's types, and the column lists the queries select.

use std::path::{Path, PathBuf};

use sm_lib::{
    Error, Event, EventId, EventKind, Lock, Message, MessageId, Result, Session, Timestamp, Wait,
    Workspace,
};
use tokio_postgres::Row;

/// A value that came back from the database in a shape sm did not write.
fn corrupt(column: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        message: format!("the stored {column} is not valid: {e}"),
        source: None,
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: &str) -> Result<T> {
    row.try_get(column).map_err(|e| corrupt(column, e))
}

fn parse<T: std::str::FromStr<Err = Error>>(row: &Row, column: &str) -> Result<T> {
    let text: &str = get(row, column)?;
    text.parse().map_err(|e| corrupt(column, e))
}

fn parse_opt<T: std::str::FromStr<Err = Error>>(row: &Row, column: &str) -> Result<Option<T>> {
    let text: Option<&str> = get(row, column)?;
    text.map(str::parse)
        .transpose()
        .map_err(|e| corrupt(column, e))
}

/// Paths are stored as their bytes: a working directory need not be UTF-8.
pub fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn path_from(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

pub const SESSION_COLUMNS: &str = "id, name, parent, agent, model, working_dir, status, \
     created_at, status_changed_at, task, end_reason, skip_permissions, node";

pub fn session(row: &Row) -> Result<Session> {
    Ok(Session {
        id: parse(row, "id")?,
        name: parse_opt(row, "name")?,
        parent: parse_opt(row, "parent")?,
        agent: parse(row, "agent")?,
        model: get(row, "model")?,
        working_dir: path_from(get(row, "working_dir")?),
        status: parse(row, "status")?,
        task: get(row, "task")?,
        created_at: Timestamp(get(row, "created_at")?),
        status_changed_at: Timestamp(get(row, "status_changed_at")?),
        end_reason: get(row, "end_reason")?,
        skip_permissions: get(row, "skip_permissions")?,
        node: get(row, "node")?,
    })
}

pub const MESSAGE_COLUMNS: &str =
    "id, target, sender, text, mode, state, attempts, reason, created_at, updated_at";

pub fn message(row: &Row) -> Result<Message> {
    let attempts: i32 = get(row, "attempts")?;
    Ok(Message {
        id: MessageId(get(row, "id")?),
        target: parse(row, "target")?,
        sender: parse_opt(row, "sender")?,
        text: get(row, "text")?,
        mode: parse(row, "mode")?,
        state: parse(row, "state")?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
        reason: get(row, "reason")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

pub const LOCK_COLUMNS: &str = "workspace, holder, reason, kind, acquired_at";

pub fn lock(row: &Row) -> Result<Lock> {
    Ok(Lock {
        workspace: Workspace(path_from(get(row, "workspace")?)),
        holder: parse(row, "holder")?,
        reason: get(row, "reason")?,
        kind: parse(row, "kind")?,
        acquired_at: Timestamp(get(row, "acquired_at")?),
    })
}

pub const WAIT_COLUMNS: &str = "id, waiter, target, deadline, created_at";

pub fn wait(row: &Row) -> Result<Wait> {
    Ok(Wait {
        id: get(row, "id")?,
        waiter: parse_opt(row, "waiter")?,
        target: parse(row, "target")?,
        deadline: Timestamp(get(row, "deadline")?),
        created_at: Timestamp(get(row, "created_at")?),
    })
}

pub const EVENT_COLUMNS: &str = "id, at, session, data";

pub fn event(row: &Row) -> Result<Event> {
    let data: &str = get(row, "data")?;
    let kind: EventKind = serde_json::from_str(data).map_err(|e| corrupt("event", e))?;
    Ok(Event {
        id: EventId(get(row, "id")?),
        at: Timestamp(get(row, "at")?),
        session: parse_opt(row, "session")?,
        kind,
    })
}

/// Maps every row with `f`.
pub fn all<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}
