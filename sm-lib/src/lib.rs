//! # sm-lib — the core of sm, the session manager for swarms of AI coding agents
//!
//! sm runs many coding agents (Claude Code first) in terminals it owns, passes messages
//! between them exactly once, knows when each is idle, working or stuck, and wakes an
//! orchestrating agent when a worker finishes. This crate is everything that does not depend
//! on a particular terminal system, database or network protocol:
//!
//! - [`types`]: sessions, messages, locks and events;
//! - four traits, each with a written contract: [`TerminalBackend`] (tmux, raw PTY),
//!   [`MessageStore`] (queue, registry, locks, event log), [`Notifier`] (Telegram, webhook,
//!   your own) and [`LockPolicy`] (what a workspace lock covers);
//! - in-memory and default implementations: [`MemoryStore`], [`DefaultLockPolicy`],
//!   [`FanoutNotifier`];
//! - [`config`]: the YAML configuration file;
//! - `conformance` (feature `conformance`): the tests every implementation runs.
//!
//! Backends and the SQLite store live in their own crates (`sm-backend-tmux`,
//! `sm-backend-pty`, `sm-store-sqlite`); `sm-server` and the `sm` CLI compose them.
//!
//! ```
//! use sm_lib::{AgentKind, DeliveryMode, MemoryStore, MessageStore, NewMessage, Session, SessionId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> sm_lib::Result<()> {
//! let store = MemoryStore::new();
//! let worker = Session::new(SessionId::new_random(), AgentKind::Fake, "/tmp".into());
//! store.insert_session(&worker).await?;
//! store
//!     .enqueue(NewMessage {
//!         target: worker.id.clone(),
//!         sender: None,
//!         text: "implement the parser".into(),
//!         mode: DeliveryMode::Sequential,
//!         client_key: None,
//!     })
//!     .await?;
//! let next = store.claim_next(&worker.id, &DeliveryMode::BY_PRIORITY).await?;
//! assert_eq!(next.map(|m| m.text).as_deref(), Some("implement the parser"));
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod lock_policy;
pub mod memory;
pub mod memory_backend;
pub mod notifier;
pub mod sandbox;
pub mod store;
pub mod types;
pub mod wire;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::{
    BackendEvent, Capabilities, EventCoalescer, Key, RawActivity, SpawnSpec, TerminalBackend,
};
pub use cluster::{Cluster, MemoryCluster, NodeInfo, Pending, Signal};
pub use config::{Config, LoadedConfig};
pub use engine::{Caller, Engine, EngineConfig, HookEvent, SpawnRequest};
pub use error::{Error, Result};
pub use lock_policy::{Contention, DefaultLockPolicy, LockPolicy};
pub use memory::MemoryStore;
pub use memory_backend::MemoryBackend;
pub use notifier::{FanoutNotifier, Notification, NotificationKind, Notifier};
pub use store::{Created, Inserted, MessageFilter, MessageStore, NewSession};
pub use types::{
    AgentKind, DeliveryMode, Event, EventId, EventKind, Lock, LockKind, LockRequest, Message,
    MessageId, MessageState, NewMessage, Session, SessionId, SessionName, SessionStatus, Timestamp,
    Wait, WaitOutcome, Workspace,
};
