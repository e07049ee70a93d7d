//! Spawning agents: idempotent by the caller's key, ready before it returns, and a spawn
//! that sm stopped before its agent started is started anew when repeated.

use super::{
    ActorHandle, Caller, Engine, Launch, NEVER_STARTED, SpawnRequest, actor::Command, lock_map,
    sanitize_message,
};
use crate::backend::SpawnSpec;
use crate::error::{Error, Result};
use crate::types::{DeliveryMode, EventKind, NewMessage, Session, SessionId, SessionStatus};
use crate::wire::env;

impl Engine {
    /// Starts an agent and returns once it is ready for input (its first message, if any,
    /// is queued by then). The caller becomes its parent.
    ///
    /// Errors: invalid name, model or working dir; [`Error::NameTaken`];
    /// [`Error::InvalidInput`] for an agent kind without a profile; [`Error::Backend`] when
    /// the agent cannot start or never becomes ready (it is then killed and marked dead).
    pub async fn spawn(&self, caller: &Caller, request: SpawnRequest) -> Result<Session> {
        let profile = self
            .inner
            .profiles
            .get(&request.agent)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .agent_kinds()
                    .iter()
                    .map(|k| k.to_string())
                    .collect();
                Error::InvalidInput(format!(
                    "unknown agent kind {} (known here: {}; define more under agents: in the configuration)",
                    request.agent,
                    known.join(", ")
                ))
            })?;
        let working_dir =
            request
                .working_dir
                .canonicalize()
                .map_err(|e| Error::InvalidWorkingDir {
                    path: request.working_dir.clone(),
                    reason: e.to_string(),
                })?;
        if !working_dir.is_dir() {
            return Err(Error::InvalidWorkingDir {
                path: request.working_dir.clone(),
                reason: "not a directory".into(),
            });
        }
        let prompt = match &request.prompt {
            Some(p) => Some(sanitize_message(p, self.inner.config.max_message_bytes)?),
            None => None,
        };
        if let Some(parent) = caller.session() {
            let parent_session = self.session(parent).await?;
            if !parent_session.status.is_live() {
                return Err(Error::InvalidInput(format!(
                    "session {parent} is {} and cannot spawn agents",
                    parent_session.status
                )));
            }
            // An agent cannot give a child more than it has.
            if request.skip_permissions && !parent_session.skip_permissions {
                return Err(Error::Forbidden(
                    "a session started with permission prompts cannot start a child without \
                     them (skip_permissions)"
                        .into(),
                ));
            }
        }
        let id = SessionId::new_random();
        let (program, args, profile_env) = profile.command(&Launch {
            id: &id,
            model: request.model.as_deref(),
            skip_permissions: request.skip_permissions,
            resume: request.resume.as_deref(),
        })?;
        if let Some(why) = self.inner.backend.cannot_run(&program, &profile_env) {
            return Err(Error::backend_msg(format!(
                "cannot start a {} agent: {why}",
                request.agent
            )));
        }
        let mut session = Session::new(id.clone(), request.agent.clone(), working_dir.clone());
        session.name = request.name.clone();
        session.parent = caller.session().cloned();
        session.model = request.model.clone();
        session.skip_permissions = request.skip_permissions;
        session.node = self.node().map(str::to_string);
        // The session and its first message are stored together, before anything runs: a
        // crash at any later point leaves an agent that still gets its prompt, once.
        let created = self
            .inner
            .store
            .create_session(crate::store::NewSession {
                session,
                first_message: prompt.map(|text| NewMessage {
                    target: id.clone(),
                    sender: caller.session().cloned(),
                    text,
                    mode: DeliveryMode::Sequential,
                    client_key: None,
                }),
                client_key: request.client_key.clone(),
            })
            .await?;
        if !created.inserted {
            // A repeat of a spawn already made: answer as the first request would have.
            return Box::pin(self.respawned(caller, created.session, &request)).await;
        }
        let session = created.session;
        self.record(
            Some(&id),
            EventKind::SessionCreated {
                agent: request.agent,
            },
        )
        .await;
        if let Some(first) = &created.first_message {
            self.record(
                Some(&id),
                EventKind::MessageQueued {
                    message: first.id,
                    mode: first.mode,
                },
            )
            .await;
        }

        let mut spec = SpawnSpec::new(id.clone(), program, &working_dir);
        spec.args = args;
        spec.env = profile_env;
        spec.env.insert(env::SESSION_ID.into(), id.to_string());
        spec.env
            .insert(env::LEGACY_SESSION_ID.into(), id.to_string());
        if let Some(url) = &self.inner.config.server_url {
            spec.env.insert(env::SERVER_URL.into(), url.clone());
            spec.env.insert(env::LEGACY_SERVER_URL.into(), url.clone());
        }
        if let Some(extra) = &self.inner.config.agent_env {
            spec.env.extend((extra.0)(&id));
        }
        spec.cols = self.inner.config.cols;
        spec.rows = self.inner.config.rows;
        if let Some(sandbox) = &self.inner.config.sandbox {
            sandbox.wrap(&mut spec, &self.inner.backend.private_paths());
        }
        let handle = self.start_actor(session.clone(), profile.clone(), None);
        if let Err(e) = self.inner.backend.create(&spec).await {
            let reason = format!("could not start: {e}");
            // The caller hears why from this error; its prompt fails quietly.
            let _ = self.inner.store.fail_pending(&id, &reason).await;
            let _ = handle.commands.send(Command::Exited {
                status: None,
                reason,
            });
            handle.until_ended().await;
            return Err(e);
        }
        let _ = handle.commands.send(Command::Activity);
        self.until_ready(&id, &handle).await?;
        if let (Some(wait), Some(parent)) = (request.wait, caller.session()) {
            self.register_wait(Some(parent), &id, wait).await?;
        }
        self.session(&id).await
    }

    /// The answer to a repeated spawn: the session the first request created, once it is
    /// ready (or why it is not), with the caller's wait registered again (waits of one
    /// caller on one session wake it once, so a wait the first request registered is not
    /// doubled). A session whose agent was never started (sm stopped between storing it
    /// and starting its terminal) is started anew, under a key derived from the first, so
    /// a further repeat finds the new one.
    pub(super) async fn respawned(
        &self,
        caller: &Caller,
        session: Session,
        request: &SpawnRequest,
    ) -> Result<Session> {
        if session.end_reason.as_deref() == Some(NEVER_STARTED) {
            let mut again = request.clone();
            again.client_key = request
                .client_key
                .as_ref()
                .map(|key| format!("{key}#{}", session.id));
            return self.spawn(caller, again).await;
        }
        let handle = lock_map(&self.inner.actors).get(&session.id).cloned();
        let Some(handle) = handle.filter(|_| session.status.is_live()) else {
            return Err(Error::backend_msg(format!(
                "the agent this spawn started has ended ({}): {}",
                session.status,
                session
                    .end_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )));
        };
        self.until_ready(&session.id, &handle).await?;
        if let (Some(wait), Some(parent)) = (request.wait, caller.session()) {
            self.register_wait(Some(parent), &session.id, wait).await?;
        }
        self.session(&session.id).await
    }

    /// Waits (on the actor's status) until a new agent is ready for input; past the
    /// deadline it is killed and the error shows the end of its screen.
    pub(super) async fn until_ready(&self, id: &SessionId, handle: &ActorHandle) -> Result<()> {
        let mut status = handle.status.clone();
        let ready = tokio::time::timeout(self.inner.config.ready_timeout, async {
            loop {
                let s = *status.borrow_and_update();
                if s != SessionStatus::Starting {
                    return s;
                }
                if status.changed().await.is_err() {
                    return SessionStatus::Dead;
                }
            }
        })
        .await;
        let tail = || async {
            self.inner
                .backend
                .capture_tail(id, 10)
                .await
                .unwrap_or_default()
                .join("\n")
        };
        match ready {
            Ok(s) if s.is_live() => Ok(()),
            Ok(s) => Err(Error::backend_msg(format!(
                "the agent ended while starting ({s}); last output:\n{}",
                tail().await
            ))),
            Err(_) => {
                let screen = tail().await;
                let why = format!(
                    "it did not become ready within {:?}",
                    self.inner.config.ready_timeout
                );
                let _ = self.end_agent(id, Some(why.clone())).await;
                Err(Error::backend_msg(format!(
                    "the agent did not become ready within {:?}; its screen ended with:\n{screen}",
                    self.inner.config.ready_timeout,
                )))
            }
        }
    }
}
