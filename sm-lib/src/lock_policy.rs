//! The [`LockPolicy`] trait — what a workspace lock covers and how contention is handled —
//! and [`DefaultLockPolicy`], which locks git top-levels.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{LockKind, Workspace};

/// What a contended lock request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// Refuse at once, naming the holder.
    Fail,
    /// Retry until the deadline, then refuse naming the holder.
    WaitUpTo(Duration),
}

/// Decides what a lock covers and what a writer does when someone else holds it.
///
/// The store enforces exclusivity and releases locks whose holder is no longer live; the
/// policy maps directories to workspaces and chooses waiting behaviour. Every implementation
/// must pass [`crate::conformance::lock_policy`].
pub trait LockPolicy: Send + Sync + 'static {
    /// The workspace that `dir` belongs to. Two directories in one workspace map to equal
    /// values; the result is absolute and canonical (symlinks resolved), so different
    /// spellings of one directory agree.
    ///
    /// This may touch the file system: call it off the async runtime
    /// (`tokio::task::spawn_blocking`).
    ///
    /// Errors: [`Error::InvalidWorkingDir`] when `dir` does not exist or is not a directory.
    fn workspace_for(&self, dir: &Path) -> Result<Workspace>;

    /// What a request of `kind` does when another live session holds the lock.
    fn contention(&self, kind: LockKind) -> Contention;
}

/// The default policy.
///
/// - A workspace is the top-level of the git work tree containing the directory. A linked
///   git worktree (where `.git` is a file) is its own workspace, so agents in separate
///   worktrees of one repository never block each other. Outside git, the directory itself
///   is the workspace.
/// - Explicit locks fail at once when held by someone else; automatic locks (file writes
///   from the PreToolUse hook) wait up to `auto_wait` for the holder's turn to end.
#[derive(Debug, Clone)]
pub struct DefaultLockPolicy {
    /// How long an automatic lock request waits before it is refused.
    pub auto_wait: Duration,
}

impl Default for DefaultLockPolicy {
    fn default() -> Self {
        DefaultLockPolicy {
            auto_wait: Duration::from_secs(30),
        }
    }
}

impl LockPolicy for DefaultLockPolicy {
    fn workspace_for(&self, dir: &Path) -> Result<Workspace> {
        let canonical = dir.canonicalize().map_err(|e| Error::InvalidWorkingDir {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        if !canonical.is_dir() {
            return Err(Error::InvalidWorkingDir {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        // `.git` is a directory at a repository's top-level and a file in a linked worktree
        // or submodule; either way the directory holding it is the work tree top.
        let top = canonical
            .ancestors()
            .find(|a| a.join(".git").exists())
            .unwrap_or(&canonical);
        Ok(Workspace(top.to_path_buf()))
    }

    fn contention(&self, kind: LockKind) -> Contention {
        match kind {
            LockKind::Explicit => Contention::Fail,
            LockKind::Auto => Contention::WaitUpTo(self.auto_wait),
        }
    }
}
