//! Workspace locks: explicit, automatic (from the agent's before-tool hook) and forced releases.

use std::path::Path;

use super::{Caller, Engine, ForceUnlock};
use crate::error::{Error, Result};
use crate::lock_policy::Contention;
use crate::types::{EventKind, Lock, LockKind, LockRequest, SessionId};

/// How often a blocked auto-lock looks again in a cluster.
const CLUSTER_LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

impl Engine {
    /// Takes the lock on the caller's workspace (explicit, held until released or death).
    pub async fn lock(&self, holder: &SessionId, reason: &str) -> Result<Lock> {
        let session = self.session(holder).await?;
        let workspace = self.workspace_for(&session.working_dir).await?;
        let lock = self
            .inner
            .store
            .acquire_lock(&LockRequest {
                workspace: workspace.clone(),
                holder: holder.clone(),
                reason: reason.to_string(),
                kind: LockKind::Explicit,
            })
            .await?;
        self.record(
            Some(holder),
            EventKind::LockAcquired {
                workspace,
                reason: reason.to_string(),
            },
        )
        .await;
        Ok(lock.into_inner())
    }

    /// Releases the caller's locks (explicit and automatic); returns what was released.
    pub async fn unlock(&self, holder: &SessionId) -> Result<Vec<Lock>> {
        let released = self.inner.store.release_locks_of(holder, None).await?;
        self.after_release(holder, &released).await;
        Ok(released)
    }

    /// Releases locks whatever their holder (an admin freeing a workspace a hung agent
    /// holds): every lock of `holder`, or the lock on the workspace of `dir`. Returns what
    /// was released.
    ///
    /// Errors: [`Error::Forbidden`] for any caller but an admin.
    pub async fn force_unlock(&self, caller: &Caller, target: ForceUnlock) -> Result<Vec<Lock>> {
        if *caller != Caller::Admin {
            return Err(Error::Forbidden(
                "only an admin may release another session's locks".into(),
            ));
        }
        let released = match target {
            ForceUnlock::Holder(holder) => self.unlock(&holder).await?,
            ForceUnlock::Workspace(dir) => {
                let workspace = self.workspace_for(&dir).await?;
                match self.inner.store.get_lock(&workspace).await? {
                    Some(lock) => {
                        let released = self
                            .inner
                            .store
                            .release_lock(&workspace, &lock.holder)
                            .await?
                            .into_iter()
                            .collect::<Vec<_>>();
                        self.after_release(&lock.holder, &released).await;
                        released
                    }
                    None => Vec::new(),
                }
            }
        };
        for lock in &released {
            self.record(
                Some(&lock.holder),
                EventKind::Note {
                    text: format!("an admin released the lock on {}", lock.workspace),
                },
            )
            .await;
        }
        Ok(released)
    }

    /// The auto-lock an agent's before-tool hook asks for: takes the lock on the workspace of `file` for `holder`,
    /// waiting as the policy says when another live session holds it. Released when the
    /// holder's turn ends.
    ///
    /// Errors: [`Error::LockConflict`] naming the holder and its reason once the wait is over.
    pub async fn auto_lock(&self, holder: &SessionId, file: &Path) -> Result<Lock> {
        let session = self.session(holder).await?;
        let file = if file.is_absolute() {
            file.to_path_buf()
        } else {
            session.working_dir.join(file)
        };
        // The file may not exist yet: its nearest existing ancestor decides the workspace.
        let dir = file
            .ancestors()
            .skip(1)
            .find(|a| a.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| session.working_dir.clone());
        let workspace = self.workspace_for(&dir).await?;
        let request = LockRequest {
            workspace: workspace.clone(),
            holder: holder.clone(),
            reason: format!("writing {}", file.display()),
            kind: LockKind::Auto,
        };
        let deadline = match self.inner.lock_policy.contention(LockKind::Auto) {
            Contention::Fail => tokio::time::Instant::now(),
            Contention::WaitUpTo(d) => tokio::time::Instant::now() + d,
        };
        loop {
            let released = self.inner.lock_released.notified();
            match self.inner.store.acquire_lock(&request).await {
                Ok(lock) => {
                    // Each write takes the lock again: only a new lock is worth a line.
                    if lock.inserted {
                        self.record(
                            Some(holder),
                            EventKind::LockAcquired {
                                workspace: workspace.clone(),
                                reason: lock.reason.clone(),
                            },
                        )
                        .await;
                    }
                    return Ok(lock.into_inner());
                }
                Err(Error::LockConflict(held)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::LockConflict(held));
                    }
                    // Retry when any lock is released, or at the deadline; in a cluster
                    // also every little while (another node's release is not heard here).
                    let mut retry_at = deadline;
                    if self.inner.cluster.is_some() {
                        retry_at = retry_at.min(tokio::time::Instant::now() + CLUSTER_LOCK_RETRY);
                    }
                    let _ = tokio::time::timeout_at(retry_at, released).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn workspace_for(&self, dir: &Path) -> Result<crate::types::Workspace> {
        let policy = self.inner.lock_policy.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || policy.workspace_for(&dir))
            .await
            .map_err(|e| Error::backend("workspace lookup failed", e))?
    }

    pub(super) async fn after_release(&self, holder: &SessionId, released: &[Lock]) {
        for lock in released {
            self.record(
                Some(holder),
                EventKind::LockReleased {
                    workspace: lock.workspace.clone(),
                },
            )
            .await;
        }
        if !released.is_empty() {
            self.inner.lock_released.notify_waiters();
        }
    }
}
