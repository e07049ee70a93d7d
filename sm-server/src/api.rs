//! The HTTP API: routes, JSON bodies, authentication and error mapping.

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, body::Bytes};
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sm_lib::engine::ForceUnlock;
use sm_lib::wire::{
    AnswerBody, Answered, AutoLockBody, Cleared, InputBody, LockBody, NameBody, Output,
    SessionView, SpawnBody, TaskBody, WatchAnswer, WatchBody,
};
pub use sm_lib::wire::{ErrorBody, ErrorDetail};
use sm_lib::{
    AgentKind, Caller, DeliveryMode, Engine, Error, EventId, HookEvent, Session, SessionName,
    SpawnRequest,
};

use crate::auth::Auth;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// Token checks.
    pub auth: Auth,
    /// The server's own URL.
    pub url: String,
    /// The model, per agent kind, for spawns that do not name one.
    pub default_models: std::collections::HashMap<sm_lib::AgentKind, String>,
    /// Whether and to whom the web dashboard is served.
    pub dashboard: crate::dashboard::Settings,
    /// Reaches the other nodes of a cluster (requests that need their terminals).
    pub nodes: crate::proxy::NodeClient,
}

/// The OpenAPI document of this API (served at `/openapi.json`, browsable at `/docs`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "sm", description = "Session manager for swarms of AI coding agents"),
    paths(
        health, me, status, nodes, list_sessions, spawn, get_session, kill, input, watch, clear, answer, rename,
        children, output, messages, set_task, subagents, what, hook, list_locks, lock, unlock, auto_lock, events, event_stream
    ),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The largest request body accepted (the wire protocol's limit).
pub use sm_lib::wire::MAX_BODY_BYTES;

/// The HTTP API as an axum router.
pub fn router(state: AppState) -> Router {
    let dashboard = if state.dashboard.enabled {
        crate::dashboard::routes()
    } else {
        Router::new()
    };
    Router::new()
        .route("/health", get(health))
        .route("/me", get(me))
        .route("/status", get(status))
        .route("/nodes", get(nodes))
        .route("/sessions", get(list_sessions).post(spawn))
        .route("/sessions/{id}", get(get_session).delete(kill))
        .route("/sessions/{id}/input", post(input))
        .route("/sessions/{id}/watch", post(watch))
        .route("/sessions/{id}/clear", post(clear))
        .route("/sessions/{id}/answer", post(answer))
        .route("/sessions/{id}/name", post(rename))
        .route("/sessions/{id}/children", get(children))
        .route("/sessions/{id}/task", post(set_task))
        .route("/sessions/{id}/subagents", get(subagents))
        .route("/sessions/{id}/what", get(what))
        .route("/sessions/{id}/output", get(output))
        .route("/sessions/{id}/messages", get(messages))
        .route("/hooks/{event}", post(hook))
        .route("/locks", get(list_locks).post(lock).delete(unlock))
        .route("/locks/auto", post(auto_lock))
        .route("/events", get(events))
        .route("/events/stream", get(event_stream))
        .merge(dashboard)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::proxy::to_owner,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Answers shrink for clients that ask (browsers do; the CLI does not): a listing of
        // a thousand sessions is a sixth of its size in gzip. The event stream is never
        // compressed (tower-http's default predicate), so live events are not held back.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .with_state(state)
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .url("/openapi.json", <ApiDoc as utoipa::OpenApi>::openapi()),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

// ----- errors -----

/// An API error: a stable code, a human message and an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What a person is told.
    pub(crate) fn message(&self) -> String {
        self.message.clone()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::SessionNotFound(_) | Error::MessageNotFound(_) => StatusCode::NOT_FOUND,
            Error::NameTaken { .. }
            | Error::SessionExists(_)
            | Error::LockConflict(_)
            | Error::InvalidTransition { .. }
            | Error::NotLive { .. }
            | Error::Busy(_) => StatusCode::CONFLICT,
            Error::AgentUnresponsive(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Elsewhere { .. } => StatusCode::MISDIRECTED_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Closed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store { .. } | Error::Backend { .. } | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let mut message = e.to_string();
        if let Error::LockConflict(lock) = &e {
            message = format!(
                "{} is locked by session {} ({})",
                lock.workspace, lock.holder, lock.reason
            );
        }
        ApiError {
            status,
            code: e.code(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not UTF-8",
        )
    })?;
    serde_json::from_str(if text.trim().is_empty() { "{}" } else { text }).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("invalid JSON body: {e}"),
        )
    })
}

// ----- extractors with JSON errors -----

/// axum's `Path`, answering a bad path segment with a JSON error like every other.
struct Path<T>(T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::new(e.status(), "invalid_input", e.body_text()))
    }
}

/// axum's `Query`, answering a bad query string with a JSON error like every other.
struct Query<T>(T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::new(e.status(), "invalid_input", e.body_text()))
    }
}

/// The raw body, answering one over the size limit with a JSON error like every other.
struct Body(Bytes);

impl<S> axum::extract::FromRequest<S> for Body
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "invalid_body"
                };
                ApiError::new(e.status(), code, e.body_text())
            })
    }
}

/// Answers a request for a path that is not part of the API.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such route: {method} {} (see /docs)", uri.path()),
    )
}

/// Answers a known path asked with the wrong method.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method} (see /docs)", uri.path()),
    )
}

// ----- authentication -----

/// The authenticated caller of a request.
pub struct Authed(pub Caller);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid token (Authorization: Bearer <token>)",
            )
        };
        let caller = match header {
            Some(value) => {
                let token = value.to_str().ok().and_then(bearer_token).unwrap_or("");
                state.auth.caller(token).ok_or_else(unauthorized)?
            }
            // A browser logged in to the dashboard (a cookie, never the token itself).
            None => crate::dashboard::cookie_caller(parts, state)?.ok_or_else(unauthorized)?,
        };
        if caller == Caller::Admin {
            refuse_admin_inside_an_agent(parts, state).await?;
        }
        if let Caller::Session(id) = &caller {
            // A token for a session the server never made is worthless, and one for a
            // session that has ended can no longer act.
            match state.engine.store().get_session(id).await? {
                None => return Err(unauthorized()),
                Some(s) if !s.status.is_live() => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "this token belongs to a session that has ended",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(Authed(caller))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive,
/// as HTTP auth schemes are.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// An idempotency key as sent, checked and scoped to its caller (one caller's key never
/// matches another's request) and to what it keys (`what`).
fn scoped_key(
    caller: &Caller,
    what: &str,
    key: Option<String>,
) -> Result<Option<String>, ApiError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 200 || k.chars().any(char::is_control) => {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "idempotency_key must be 1 to 200 characters without control characters",
            ))
        }
        Some(k) => Ok(Some(match caller {
            Caller::Admin => format!("{what}admin:{k}"),
            Caller::Session(id) => format!("{what}{id}:{k}"),
        })),
        None => Ok(None),
    }
}

/// Refuses the admin token when the request comes from a process in a live agent's process
/// tree (see [`crate::peer`] for what can and cannot be told).
pub(crate) async fn refuse_admin_inside_an_agent(
    parts: &Parts,
    state: &AppState,
) -> Result<(), ApiError> {
    // Sandboxed agents cannot read the admin token at all; the look costs a scan of every
    // process when the client names no pid, so it is made only where it matters.
    if state.engine.config().sandbox.is_some() {
        return Ok(());
    }
    let Some(connection) = parts.extensions.get::<crate::peer::Connection>().cloned() else {
        return Ok(());
    };
    if !connection.peer.ip().is_loopback() {
        return Ok(());
    }
    let behind = match connection.behind.get() {
        Some(found) => found.clone(),
        None => {
            let hint = parts
                .headers
                .get("x-sm-pid")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            let (peer, local) = (connection.peer, connection.local);
            let found = tokio::task::spawn_blocking(move || {
                crate::peer::sessions_behind(peer, local, hint)
            })
            .await
            .unwrap_or_default();
            connection.behind.get_or_init(|| found).clone()
        }
    };
    if behind.is_empty() {
        return Ok(());
    }
    let mut found = None;
    for id in behind {
        let Ok(id) = id.parse::<sm_lib::SessionId>() else {
            continue;
        };
        if state
            .engine
            .store()
            .get_session(&id)
            .await?
            .is_some_and(|s| s.status.is_live())
        {
            found = Some(id);
            break;
        }
    }
    match found {
        Some(session) => {
            tracing::warn!(%session, "refused the admin token from inside an agent's process tree");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the admin token is not accepted from inside an agent (session {session}); \
                     an agent acts with its own token"
                ),
            ))
        }
        None => Ok(()),
    }
}

fn require_session(caller: &Caller) -> Result<&sm_lib::SessionId, ApiError> {
    match caller {
        Caller::Session(id) => Ok(id),
        Caller::Admin => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "this call is made by an agent about itself; it needs an agent's token",
        )),
    }
}

// ----- handlers -----

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    version: &'static str,
    backend: &'static str,
    sessions: usize,
}

#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, body = Health)))]
async fn health(State(state): State<AppState>) -> ApiResult<Health> {
    let sessions = state.engine.sessions().await?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        backend: state.engine.backend().name(),
        sessions: sessions.len(),
    }))
}

/// Every session with its queue depth (two store reads, whatever the number of sessions).
async fn all_views(state: &AppState) -> Result<Vec<SessionView>, ApiError> {
    let sessions = state.engine.sessions().await?;
    let depths = state.engine.queue_depths().await?;
    Ok(sessions
        .into_iter()
        .map(|s| {
            let queued = depths.get(&s.id).copied().unwrap_or(0);
            SessionView {
                queued,
                ..view(state, s)
            }
        })
        .collect())
}

fn view(state: &AppState, session: Session) -> SessionView {
    // Another node's terminal cannot be attached from here.
    let owned = state.engine.owns(&session);
    let attach = owned
        .then(|| state.engine.backend().attach_command(&session.id))
        .flatten();
    let unreachable = !owned
        && session.status.is_live()
        && session
            .node
            .as_deref()
            .and_then(|n| state.engine.node_reachable(n))
            == Some(false);
    SessionView {
        session,
        attach,
        queued: 0,
        unreachable,
    }
}

#[utoipa::path(get, path = "/me", tag = "sessions", security(("token" = [])), responses((status = 200, body = SessionView, description = "The calling agent's session, or {\"admin\": true}"), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<sm_lib::wire::Me> {
    Ok(Json(whoami(&state, caller).await?))
}

/// Who the caller is, as `/me` and `/status` say it.
async fn whoami(state: &AppState, caller: Caller) -> Result<sm_lib::wire::Me, ApiError> {
    Ok(match caller {
        Caller::Admin => sm_lib::wire::Me::Admin { admin: true },
        Caller::Session(id) => {
            let s = state.engine.resolve(id.as_str()).await?;
            sm_lib::wire::Me::Session(Box::new(view(state, s)))
        }
    })
}

#[utoipa::path(get, path = "/status", tag = "sessions", security(("token" = [])), responses((status = 200, body = sm_lib::wire::Status, description = "The caller, every session and every lock: `sm status` in one request"), (status = 401, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<sm_lib::wire::Status> {
    let me = whoami(&state, caller).await?;
    let sessions = all_views(&state).await?;
    let locks = state.engine.store().list_locks().await?;
    Ok(Json(sm_lib::wire::Status {
        me,
        sessions,
        locks,
        node: state.engine.node().map(str::to_string),
        nodes: state.engine.nodes(),
    }))
}

#[utoipa::path(get, path = "/nodes", tag = "sessions", security(("token" = [])), responses((status = 200, body = Vec<sm_lib::NodeInfo>, description = "The cluster's nodes (empty without a cluster), each with its URL, last heartbeat and whether its lease holds"), (status = 401, body = ErrorBody)))]
async fn nodes(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> ApiResult<Vec<sm_lib::NodeInfo>> {
    Ok(Json(state.engine.refresh_nodes().await?))
}

#[utoipa::path(get, path = "/sessions", tag = "sessions", security(("token" = [])), responses((status = 200, body = Vec<SessionView>), (status = 401, body = ErrorBody)))]
async fn list_sessions(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> ApiResult<Vec<SessionView>> {
    Ok(Json(all_views(&state).await?))
}

#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), security(("token" = [])), responses((status = 200, body = SessionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let s = state.engine.resolve(&id).await?;
    let queued = state.engine.queue_depth(&s.id).await?;
    Ok(Json(SessionView {
        queued,
        ..view(&state, s)
    }))
}

#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = SpawnBody, security(("token" = [])), responses((status = 200, body = SessionView, description = "The new agent, ready for input"), (status = 409, body = ErrorBody, description = "Name taken"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn spawn(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Body(body): Body,
) -> ApiResult<SessionView> {
    let body: SpawnBody = parse(&body)?;
    if let Some(node) = &body.node {
        // Another node's spawns were forwarded to it before reaching here.
        if Some(node.as_str()) != state.engine.node() {
            let reason = if state.engine.cluster().is_some() {
                format!(
                    "this request for node {node} reached node {} (it was forwarded once already)",
                    state.engine.node().unwrap_or("?")
                )
            } else {
                format!(
                    "this server is not in a cluster; it runs agents only on itself, not on node {node}"
                )
            };
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                reason,
            ));
        }
    }
    let agent: AgentKind = body.agent.as_deref().unwrap_or("claude").parse()?;
    let working_dir = match (body.working_dir, &caller) {
        (Some(dir), _) => dir,
        (None, Caller::Session(id)) => state.engine.resolve(id.as_str()).await?.working_dir,
        (None, Caller::Admin) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "working_dir is required",
            ));
        }
    };
    let mut request = SpawnRequest::new(agent.clone(), working_dir);
    request.prompt = body.prompt;
    request.name = body.name.map(|n| n.parse::<SessionName>()).transpose()?;
    request.model = body
        .model
        .or_else(|| state.default_models.get(&agent).cloned());
    request.skip_permissions = body.skip_permissions;
    request.resume = body.resume;
    request.wait = body.wait_secs.map(Duration::from_secs);
    request.client_key = scoped_key(&caller, "spawn:", body.idempotency_key)?;
    let session = state.engine.spawn(&caller, request).await?;
    Ok(Json(view(&state, session)))
}

#[utoipa::path(post, path = "/sessions/{id}/input", tag = "messages", params(("id" = String, Path, description = "Session id, unique id prefix or name")), request_body = InputBody, security(("token" = [])), responses((status = 200, body = sm_lib::Message, description = "Queued (durable)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn input(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<sm_lib::Message> {
    let body: InputBody = parse(&body)?;
    let mode: DeliveryMode = body.mode.as_deref().unwrap_or("sequential").parse()?;
    let key = scoped_key(&caller, "", body.idempotency_key)?;
    let target = state.engine.resolve(&id).await?;
    let message = state
        .engine
        .send_with_key(&caller, &target.id, &body.text, mode, key)
        .await?;
    Ok(Json(message))
}

#[utoipa::path(post, path = "/sessions/{id}/watch", tag = "messages", params(("id" = String, Path, description = "Session id, unique id prefix or name")), request_body = WatchBody, security(("token" = [])), responses((status = 200, body = WatchAnswer, description = "Watching; the caller gets a message later. With block: the outcome (idle, timeout or ended), the last message and every turn finished meanwhile"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn watch(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<WatchAnswer> {
    let body: WatchBody = parse(&body)?;
    if body.timeout_secs == 0 || body.timeout_secs > 7 * 24 * 3600 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "timeout_secs must be between 1 and 604800",
        ));
    }
    let target = state.engine.resolve(&id).await?;
    let timeout = Duration::from_secs(body.timeout_secs);
    if body.block {
        let result = state.engine.wait_for(&target.id, timeout).await?;
        return Ok(Json(WatchAnswer::Ended {
            target: target.id,
            outcome: result.outcome,
            last_message: result.last_message,
            turns: result.turns,
        }));
    }
    state.engine.wait(&caller, &target.id, timeout).await?;
    Ok(Json(WatchAnswer::Watching {
        watching: target.id,
        timeout_secs: body.timeout_secs,
    }))
}

#[utoipa::path(post, path = "/sessions/{id}/clear", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), security(("token" = [])), responses((status = 200, body = Cleared), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "Busy: not idle, or someone's text in the input box"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 504, body = ErrorBody, description = "The agent did not confirm the clear")))]
async fn clear(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Cleared> {
    let target = state.engine.resolve(&id).await?;
    state.engine.clear(&caller, &target.id).await?;
    Ok(Json(Cleared { cleared: target.id }))
}

#[utoipa::path(post, path = "/sessions/{id}/answer", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), request_body = AnswerBody, security(("token" = [])), responses((status = 200, body = Answered, description = "The question left the screen; the chosen option"), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody, description = "No such option"), (status = 409, body = ErrorBody, description = "Nothing is being asked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn answer(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<Answered> {
    let body: AnswerBody = parse(&body)?;
    if body.option == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "options are numbered from 1",
        ));
    }
    let target = state.engine.resolve(&id).await?;
    let label = state
        .engine
        .answer(&caller, &target.id, body.option - 1)
        .await?;
    Ok(Json(Answered {
        session: target.id,
        answered: label,
    }))
}

#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), security(("token" = [])), responses((status = 200, body = SessionView), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn kill(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let target = state.engine.resolve(&id).await?;
    state.engine.kill(&caller, &target.id).await?;
    let s = state.engine.resolve(target.id.as_str()).await?;
    Ok(Json(view(&state, s)))
}

#[utoipa::path(post, path = "/sessions/{id}/name", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), request_body = NameBody, security(("token" = [])), responses((status = 200, body = SessionView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rename(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<SessionView> {
    let body: NameBody = parse(&body)?;
    let name = body.name.map(|n| n.parse::<SessionName>()).transpose()?;
    let target = state.engine.resolve(&id).await?;
    let s = state.engine.rename(&caller, &target.id, name).await?;
    Ok(Json(view(&state, s)))
}

#[utoipa::path(post, path = "/sessions/{id}/task", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), request_body = TaskBody, security(("token" = [])), responses((status = 200, body = SessionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_task(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult<SessionView> {
    let body: TaskBody = parse(&body)?;
    let target = state.engine.resolve(&id).await?;
    let s = state
        .engine
        .set_task(&caller, &target.id, body.task.as_deref())
        .await?;
    Ok(Json(view(&state, s)))
}

#[utoipa::path(get, path = "/sessions/{id}/subagents", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name")), security(("token" = [])), responses((status = 200, body = Vec<sm_lib::engine::Subagent>), (status = 404, body = ErrorBody)))]
async fn subagents(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Vec<sm_lib::engine::Subagent>> {
    let target = state.engine.resolve(&id).await?;
    Ok(Json(state.engine.subagents(&target.id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct WhatQuery {
    /// Give the summariser more context.
    #[serde(default)]
    deep: bool,
}

#[utoipa::path(get, path = "/sessions/{id}/what", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name"), WhatQuery), security(("token" = [])), responses((status = 200, body = sm_lib::engine::what::Summary), (status = 404, body = ErrorBody)))]
async fn what(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<WhatQuery>,
) -> ApiResult<sm_lib::engine::what::Summary> {
    let target = state.engine.resolve(&id).await?;
    Ok(Json(state.engine.what(&target.id, q.deep).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ChildrenQuery {
    #[serde(default)]
    recursive: bool,
}

#[utoipa::path(get, path = "/sessions/{id}/children", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name"), ChildrenQuery), security(("token" = [])), responses((status = 200, body = Vec<SessionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn children(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<ChildrenQuery>,
) -> ApiResult<Vec<SessionView>> {
    let parent = state.engine.resolve(&id).await?;
    let kids = state.engine.children(&parent.id, q.recursive).await?;
    Ok(Json(kids.into_iter().map(|s| view(&state, s)).collect()))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct OutputQuery {
    /// How many lines of scrollback and screen (default 50).
    lines: Option<usize>,
    /// The visible screen with its colours instead: each row's text with its SGR escape
    /// sequences (`ESC [ … m`) and nothing else; `lines` is ignored.
    styled: Option<bool>,
}

#[utoipa::path(get, path = "/sessions/{id}/output", tag = "sessions", params(("id" = String, Path, description = "Session id, unique id prefix or name"), OutputQuery), security(("token" = [])), responses((status = 200, body = Output), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn output(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> ApiResult<Output> {
    let target = state.engine.resolve(&id).await?;
    let output = if q.styled.unwrap_or(false) {
        state.engine.styled_screen(&target.id).await?
    } else {
        let lines = q.lines.unwrap_or(50).clamp(1, 10_000);
        state.engine.output(&target.id, lines).await?
    };
    let tools = state.engine.recent_tools(&target.id, 10).await?;
    Ok(Json(Output {
        session: target.id,
        lines: output,
        recent_tools: tools,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct MessagesQuery {
    /// The newest this many (default 100, at most 10,000), oldest first.
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/sessions/{id}/messages", tag = "messages", params(("id" = String, Path, description = "Session id, unique id prefix or name"), MessagesQuery), security(("token" = [])), responses((status = 200, body = Vec<sm_lib::Message>, description = "The session's newest messages in every state (queued, delivering, delivered, failed), oldest first"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn messages(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Vec<sm_lib::Message>> {
    let target = state.engine.resolve(&id).await?;
    // What others sent an agent is its own business and the operator's.
    if let Caller::Session(me) = &caller {
        if me != &target.id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "an agent may read only its own messages",
            ));
        }
    }
    let messages = state
        .engine
        .store()
        .list_messages(&sm_lib::store::MessageFilter {
            target: Some(target.id),
            limit: q.limit.unwrap_or(100).clamp(1, 10_000),
            newest: true,
            ..Default::default()
        })
        .await?;
    Ok(Json(messages))
}

#[utoipa::path(post, path = "/hooks/{event}", tag = "hooks", params(("event" = String, Path, description = "Hook event name, e.g. Stop")), request_body = serde_json::Value, security(("token" = [])), responses((status = 200, body = serde_json::Value), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn hook(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(event): Path<String>,
    Body(body): Body,
) -> ApiResult<serde_json::Value> {
    let id = require_session(&caller)?;
    let payload: serde_json::Value = parse(&body)?;
    if !payload.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "a hook payload is a JSON object",
        ));
    }
    if event.is_empty() || event.len() > 64 || !event.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "a hook event name is letters and digits",
        ));
    }
    state.engine.hook(id, HookEvent { event, payload }).await?;
    Ok(Json(json!({ "ok": true })))
}

#[utoipa::path(get, path = "/locks", tag = "locks", security(("token" = [])), responses((status = 200, body = Vec<sm_lib::Lock>), (status = 401, body = ErrorBody)))]
async fn list_locks(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> ApiResult<Vec<sm_lib::Lock>> {
    Ok(Json(state.engine.store().list_locks().await?))
}

#[utoipa::path(post, path = "/locks", tag = "locks", request_body = LockBody, security(("token" = [])), responses((status = 200, body = sm_lib::Lock), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn lock(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Body(body): Body,
) -> ApiResult<sm_lib::Lock> {
    let id = require_session(&caller)?;
    let body: LockBody = parse(&body)?;
    let reason = sm_lib::engine::sanitize_message(&body.reason, 500)?;
    Ok(Json(state.engine.lock(id, &reason).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct UnlockQuery {
    /// Admin only: release every lock of this session (id, id prefix or name).
    holder: Option<String>,
    /// Admin only: release the lock on the workspace of this directory.
    #[param(value_type = Option<String>)]
    workspace: Option<PathBuf>,
}

#[utoipa::path(delete, path = "/locks", tag = "locks", params(UnlockQuery), security(("token" = [])), responses((status = 200, body = Vec<sm_lib::Lock>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlock(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(q): Query<UnlockQuery>,
) -> ApiResult<Vec<sm_lib::Lock>> {
    let target = match (q.holder, q.workspace) {
        (None, None) => {
            let id = require_session(&caller)?;
            return Ok(Json(state.engine.unlock(id).await?));
        }
        (Some(holder), None) => ForceUnlock::Holder(state.engine.resolve(&holder).await?.id),
        (None, Some(dir)) => ForceUnlock::Workspace(dir),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "give holder or workspace, not both",
            ));
        }
    };
    Ok(Json(state.engine.force_unlock(&caller, target).await?))
}

#[utoipa::path(post, path = "/locks/auto", tag = "locks", request_body = AutoLockBody, security(("token" = [])), responses((status = 200, body = sm_lib::Lock), (status = 409, body = ErrorBody, description = "Held by another live session"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn auto_lock(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Body(body): Body,
) -> ApiResult<sm_lib::Lock> {
    let id = require_session(&caller)?;
    let body: AutoLockBody = parse(&body)?;
    Ok(Json(state.engine.auto_lock(id, &body.file_path).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct EventsQuery {
    /// Events after this id, oldest first.
    after: Option<i64>,
    /// Events before this id, **newest first** (a log read backwards a page at a time);
    /// `before=0` or any id past the last: the newest. Not with `after`.
    before: Option<i64>,
    /// Only events about this session (id, unique id prefix or name).
    session: Option<String>,
    /// At most this many (default 200, at most 10,000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery), security(("token" = [])), responses((status = 200, body = Vec<sm_lib::Event>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<sm_lib::Event>> {
    let session = match q.session {
        Some(s) => Some(state.engine.resolve(&s).await?.id),
        None => None,
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    let events = match (q.after, q.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "give after or before, not both",
            ));
        }
        (_, Some(before)) => {
            let before = (before > 0).then_some(EventId(before));
            state
                .engine
                .store()
                .events_before(before, session.as_ref(), limit)
                .await?
        }
        (after, None) => {
            state
                .engine
                .store()
                .events(after.map(EventId), session.as_ref(), limit)
                .await?
        }
    };
    Ok(Json(events))
}

#[utoipa::path(get, path = "/events/stream", tag = "events", security(("token" = [])), responses((status = 200, description = "Server-sent events, one per engine event")))]
async fn event_stream(
    State(state): State<AppState>,
    Authed(_caller): Authed,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    use futures::StreamExt;
    let events: futures::stream::BoxStream<'static, sm_lib::Event> =
        if state.engine.cluster().is_some() {
            cluster_events(state.engine.clone()).await.boxed()
        } else {
            tokio_stream::wrappers::BroadcastStream::new(state.engine.subscribe())
                .filter_map(|e| async move { e.ok() })
                .boxed()
        };
    let stream = events.map(|event| {
        let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
        Ok(SseEvent::default().event(event.kind.tag()).data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// How often a cluster's event stream looks for events other nodes appended.
const CLUSTER_EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// In a cluster, events come from every node: the stream follows the shared log (whose ids
/// increase in commit order, so reading after the last one sent skips none), read again
/// at once when this node records one and every [`CLUSTER_EVENT_POLL`] for the others'.
/// It costs nothing while nobody watches.
async fn cluster_events(engine: sm_lib::Engine) -> impl futures::Stream<Item = sm_lib::Event> {
    let local = engine.subscribe();
    let start = match engine.store().events_before(None, None, 1).await {
        Ok(newest) => newest.first().map_or(0, |e| e.id.0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the event log; the stream starts from its beginning");
            0
        }
    };
    let pending = std::collections::VecDeque::new();
    futures::stream::unfold(
        (engine, local, start, pending),
        |(engine, mut local, mut last, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((event, (engine, local, last, pending)));
                }
                tokio::select! {
                    r = local.recv() => {
                        if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            // The engine is shutting down: the stream ends with it.
                            return None;
                        }
                    }
                    () = tokio::time::sleep(CLUSTER_EVENT_POLL) => {}
                }
                match engine
                    .store()
                    .events(Some(sm_lib::EventId(last)), None, 1000)
                    .await
                {
                    Ok(events) => {
                        if let Some(newest) = events.last() {
                            last = newest.id.0;
                        }
                        pending.extend(events);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the event log; trying again")
                    }
                }
            }
        },
    )
}
