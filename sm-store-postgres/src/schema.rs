//! Schema migrations, tracked in the `sm_schema` table.
//!
//! Several nodes may start at once against one database: migrating takes a transaction-level
//! advisory lock first, so exactly one of them applies the missing migrations and the others
//! find them applied.

use sm_lib::{Error, Result};
use tokio_postgres::Client;

/// The advisory lock key migrations hold (ASCII "sm_mig").
const MIGRATION_LOCK: i64 = 0x736d_5f6d_6967;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, messages, locks, waits, events — the SQLite store's schema at its
    // version 6, in PostgreSQL's types.
    "
    CREATE TABLE sessions (
        seq               BIGSERIAL UNIQUE NOT NULL,
        id                TEXT PRIMARY KEY NOT NULL,
        name              TEXT,
        parent            TEXT,
        agent             TEXT NOT NULL,
        model             TEXT,
        working_dir       BYTEA NOT NULL,
        status            TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        status_changed_at BIGINT NOT NULL,
        task              TEXT,
        client_key        TEXT,
        first_message     BIGINT,
        end_reason        TEXT,
        skip_permissions  BOOLEAN NOT NULL DEFAULT FALSE
    );
    -- Names are unique among live sessions; dead ones keep theirs for the record.
    CREATE UNIQUE INDEX sessions_live_name ON sessions (name)
        WHERE name IS NOT NULL AND status NOT IN ('stopped', 'dead');
    CREATE UNIQUE INDEX sessions_client_key ON sessions (client_key)
        WHERE client_key IS NOT NULL;

    CREATE TABLE messages (
        id         BIGSERIAL PRIMARY KEY,
        target     TEXT NOT NULL REFERENCES sessions (id),
        sender     TEXT,
        text       TEXT NOT NULL,
        mode       TEXT NOT NULL,
        priority   SMALLINT NOT NULL,
        state      TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        reason     TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        client_key TEXT
    );
    -- The queue: only queued messages, in claim order.
    CREATE INDEX messages_queue ON messages (target, priority DESC, id)
        WHERE state = 'queued';
    CREATE INDEX messages_target ON messages (target, id);
    CREATE UNIQUE INDEX messages_client_key ON messages (client_key)
        WHERE client_key IS NOT NULL;

    CREATE TABLE locks (
        workspace   BYTEA PRIMARY KEY NOT NULL,
        holder      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        acquired_at BIGINT NOT NULL
    );
    CREATE INDEX locks_holder ON locks (holder);

    CREATE TABLE waits (
        id         BIGSERIAL PRIMARY KEY,
        waiter     TEXT,
        target     TEXT NOT NULL,
        deadline   BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX waits_target ON waits (target);

    -- Event ids are taken under an advisory lock held to commit (see append_events), so
    -- they increase in commit order and a reader following ids never skips one.
    CREATE TABLE events (
        id      BIGSERIAL PRIMARY KEY,
        at      BIGINT NOT NULL,
        session TEXT,
        kind    TEXT NOT NULL,
        data    TEXT NOT NULL
    );
    CREATE INDEX events_session ON events (session, id);
    ",
    // 2: nodes — which node runs each session, the nodes' leases, secrets nodes share.
    "
    ALTER TABLE sessions ADD COLUMN node TEXT;
    CREATE INDEX sessions_node ON sessions (node) WHERE status NOT IN ('stopped', 'dead');
    -- Heartbeats are stamped with the database's clock, so nodes' clocks need not agree.
    CREATE TABLE sm_nodes (
        name         TEXT PRIMARY KEY NOT NULL,
        url          TEXT NOT NULL,
        started_at   BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    );
    CREATE TABLE sm_secrets (
        name  TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i32 = MIGRATIONS.len() as i32;

fn store_err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::store(format!("{what}: {}", crate::describe(&e)), e)
}

/// Brings the database up to [`CURRENT_VERSION`] in one transaction.
pub async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(store_err("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(store_err("take the migration lock"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sm_schema (version INTEGER NOT NULL)")
        .await
        .map_err(store_err("create the schema table"))?;
    let version: i32 = match tx
        .query_opt("SELECT version FROM sm_schema", &[])
        .await
        .map_err(store_err("read schema version"))?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO sm_schema (version) VALUES (0)", &[])
                .await
                .map_err(store_err("write schema version"))?;
            0
        }
    };
    if version > CURRENT_VERSION {
        return Err(Error::Store {
            message: format!(
                "the database has schema version {version}, newer than this sm understands \
                 ({CURRENT_VERSION}); upgrade sm on this node"
            ),
            source: None,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            Error::store(
                format!("apply schema migration {}: {}", i + 1, crate::describe(&e)),
                e,
            )
        })?;
    }
    tx.execute("UPDATE sm_schema SET version = $1", &[&CURRENT_VERSION])
        .await
        .map_err(store_err("write schema version"))?;
    tx.commit().await.map_err(store_err("commit migration"))
}
