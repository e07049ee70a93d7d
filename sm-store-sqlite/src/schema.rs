//! Schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;
use sm_lib::{Error, Result};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, messages, locks, events.
    "
    CREATE TABLE sessions (
        id                TEXT PRIMARY KEY NOT NULL,
        name              TEXT,
        parent            TEXT,
        agent             TEXT NOT NULL,
        model             TEXT,
        working_dir       BLOB NOT NULL,
        status            TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        status_changed_at INTEGER NOT NULL
    );
    -- Names are unique among live sessions; dead ones keep theirs for the record.
    CREATE UNIQUE INDEX sessions_live_name ON sessions (name)
        WHERE name IS NOT NULL AND status NOT IN ('stopped', 'dead');

    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        target     TEXT NOT NULL REFERENCES sessions (id),
        sender     TEXT,
        text       TEXT NOT NULL,
        mode       TEXT NOT NULL,
        priority   INTEGER NOT NULL,
        state      TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        reason     TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX messages_queue ON messages (target, state, priority DESC, id);

    CREATE TABLE locks (
        workspace   BLOB PRIMARY KEY NOT NULL,
        holder      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        acquired_at INTEGER NOT NULL
    );
    CREATE INDEX locks_holder ON locks (holder);

    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        session TEXT,
        kind    TEXT NOT NULL,
        data    TEXT NOT NULL
    );
    CREATE INDEX events_session ON events (session, id);
    ",
    // 2: waits.
    "
    CREATE TABLE waits (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        waiter     TEXT,
        target     TEXT NOT NULL,
        deadline   INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX waits_target ON waits (target);
    ",
    // 3: what each session says it is working on.
    "ALTER TABLE sessions ADD COLUMN task TEXT;",
    // 4: senders' idempotency keys.
    "
    ALTER TABLE messages ADD COLUMN client_key TEXT;
    CREATE UNIQUE INDEX messages_client_key ON messages (client_key) WHERE client_key IS NOT NULL;
    ",
    // 5: spawners' idempotency keys, each session's first message, why a session ended.
    "
    ALTER TABLE sessions ADD COLUMN client_key TEXT;
    ALTER TABLE sessions ADD COLUMN first_message INTEGER;
    ALTER TABLE sessions ADD COLUMN end_reason TEXT;
    CREATE UNIQUE INDEX sessions_client_key ON sessions (client_key) WHERE client_key IS NOT NULL;
    ",
    // 6: whether a session runs without permission prompts (what its children may get).
    "ALTER TABLE sessions ADD COLUMN skip_permissions INTEGER NOT NULL DEFAULT 0;",
    // 7: the node whose terminal runs a session (unset for records made before nodes).
    "ALTER TABLE sessions ADD COLUMN node TEXT;",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`] in one transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let store_err = |what: &'static str| move |e: rusqlite::Error| Error::store(what, e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_err("begin migration"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(store_err("read schema version"))?;
    if version > CURRENT_VERSION {
        return Err(Error::Store {
            message: format!(
                "the database has schema version {version}, newer than this sm understands \
                 ({CURRENT_VERSION}); upgrade sm or use another state dir"
            ),
            source: None,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| Error::store(format!("apply schema migration {}", i + 1), e))?;
    }
    tx.pragma_update(None, "user_version", CURRENT_VERSION)
        .map_err(store_err("write schema version"))?;
    tx.commit().map_err(store_err("commit migration"))
}
