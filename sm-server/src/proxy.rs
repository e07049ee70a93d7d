//! Requests that need another node's terminal, sent to that node.
//!
//! In a cluster any node takes any request. What works through the shared store (send,
//! wait, children, locks, listings) is answered where it arrives; what needs the session's
//! own terminal — kill, clear, answer, output, `what`, a blocking watch — and a spawn that
//! names another node is authenticated here, then forwarded to the owner's registered URL
//! with the caller's own credentials, which the owner checks again: no node acts on
//! another's word. A forwarded request carries [`FORWARDED_FROM`] and is never forwarded
//! again, so a disagreement about ownership ends in a clear error, not a loop.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::api::{ApiError, AppState, Authed, MAX_BODY_BYTES};

/// Set on a request one node forwards to another: the forwarding node's name.
pub const FORWARDED_FROM: &str = "x-sm-forwarded-from";

/// How long a node waits to connect to another before calling it unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The HTTP client nodes use to reach each other.
#[derive(Clone)]
pub struct NodeClient(Client<HttpConnector, Body>);

impl Default for NodeClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        NodeClient(Client::builder(TokioExecutor::new()).build(connector))
    }
}

/// Which requests only a session's owner can answer.
enum OwnerOnly {
    /// About this session (id, prefix or name as given).
    Session(String),
    /// A spawn, which may name the node to run on.
    Spawn,
}

fn owner_only(method: &Method, path: &str) -> Option<OwnerOnly> {
    let rest = path.strip_prefix("/sessions")?;
    if rest.is_empty() || rest == "/" {
        return (method == Method::POST).then_some(OwnerOnly::Spawn);
    }
    let rest = rest.strip_prefix('/')?;
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action)),
        None => (rest, None),
    };
    let needs_owner = matches!(
        (method, action),
        (&Method::DELETE, None)
            | (&Method::POST, Some("clear" | "answer" | "watch"))
            | (&Method::GET, Some("output" | "what"))
    );
    needs_owner.then(|| OwnerOnly::Session(percent_decode(id)))
}

/// `%xx` escapes in a path segment (names are plain, but clients may escape anyway).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: forwards what only another node can answer, passes the rest on.
pub async fn to_owner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.engine.cluster().is_none() || request.headers().contains_key(FORWARDED_FROM) {
        return next.run(request).await;
    }
    let Some(route) = owner_only(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let (node, request) = match route {
        OwnerOnly::Session(id) => match state.engine.resolve(&id).await {
            Ok(s) if !state.engine.owns(&s) && s.node.is_some() => {
                (s.node.unwrap_or_default(), request)
            }
            // Ours, unknown or ambiguous: the handler answers (and says what is wrong).
            _ => return next.run(request).await,
        },
        OwnerOnly::Spawn => {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_input",
                        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                    .into_response();
                }
            };
            let named = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("node").and_then(|n| n.as_str()).map(str::to_string));
            let request = Request::from_parts(parts, Body::from(bytes));
            match named {
                Some(node) if Some(node.as_str()) != state.engine.node() => (node, request),
                _ => return next.run(request).await,
            }
        }
    };
    match forward(&state, &node, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Why a request cannot be sent to another node.
enum NoOwner {
    /// The cluster has no node of that name.
    Unknown { known: Vec<String> },
    /// It is known but cannot be called now (why).
    Unreachable(String),
    /// The node list could not be read.
    Store(sm_lib::Error),
}

/// Where `path` is on `node`, as the cluster's node list says now.
async fn owner_uri(engine: &sm_lib::Engine, node: &str, path: &str) -> Result<Uri, NoOwner> {
    let nodes = engine.refresh_nodes().await.map_err(NoOwner::Store)?;
    let Some(owner) = nodes.iter().find(|n| n.name == node) else {
        return Err(NoOwner::Unknown {
            known: nodes.into_iter().map(|n| n.name).collect(),
        });
    };
    if !owner.reachable {
        return Err(NoOwner::Unreachable(format!(
            "its lease ran out; last heard from {} s ago",
            (sm_lib::Timestamp::now().0 - owner.heartbeat_at.0).max(0) / 1000
        )));
    }
    format!("{}{path}", owner.url.trim_end_matches('/'))
        .parse()
        .map_err(|_| {
            NoOwner::Unreachable(format!("its registered URL {:?} is not valid", owner.url))
        })
}

/// This node's name, for [`FORWARDED_FROM`].
fn forwarded_from(engine: &sm_lib::Engine) -> Option<HeaderValue> {
    engine.node().and_then(|n| HeaderValue::from_str(n).ok())
}

async fn forward(state: &AppState, node: &str, request: Request) -> Result<Response, ApiError> {
    // The caller proves who it is here first: nothing unauthenticated leaves this node.
    let (mut parts, body) = request.into_parts();
    Authed::from_request_parts(&mut parts, state).await?;
    let unreachable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unreachable",
            format!(
                "node {node} cannot be reached ({why}); what needs its terminals waits until it is back, and messages queued for its sessions are kept"
            ),
        )
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    parts.uri = match owner_uri(&state.engine, node, path).await {
        Ok(uri) => uri,
        Err(NoOwner::Unknown { known }) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!(
                    "no node named {node} in this cluster (nodes: {})",
                    known.join(", ")
                ),
            ));
        }
        Err(NoOwner::Unreachable(why)) => return Err(unreachable(why)),
        Err(NoOwner::Store(e)) => return Err(e.into()),
    };
    parts.headers.remove(axum::http::header::HOST);
    parts.headers.remove(axum::http::header::CONNECTION);
    // The pid hint names a process on the caller's machine; this node already checked it.
    parts.headers.remove("x-sm-pid");
    // Compression is negotiated again by the owner with this node.
    parts.headers.remove(axum::http::header::ACCEPT_ENCODING);
    if let Some(me) = forwarded_from(&state.engine) {
        parts.headers.insert(FORWARDED_FROM, me);
    }
    parts.extensions = Default::default();
    tracing::debug!(%node, uri = %parts.uri, "forwarding to the owning node");
    let response = state
        .nodes
        .0
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(response.map(Body::new))
}

/// Calls made on a person's behalf by this server itself (the Telegram bot), for sessions
/// another node owns: sent to the owner with the cluster's admin token, as its API would be
/// called by that person.
#[derive(Clone)]
pub struct OwnerCalls {
    client: NodeClient,
    admin_token: String,
    engine: sm_lib::Engine,
}

impl OwnerCalls {
    /// Calls through `client` as the admin, on the nodes `engine` knows.
    pub fn new(client: NodeClient, admin_token: String, engine: sm_lib::Engine) -> Self {
        OwnerCalls {
            client,
            admin_token,
            engine,
        }
    }

    /// `method path` with `body` (JSON) on `node`, its JSON answer read as `T`; the owner's
    /// refusal comes back as an error with its message.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        node: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> sm_lib::Result<T> {
        // Like the API's `node_unreachable`: nothing happened, and trying later may work.
        let unreachable =
            |why: String| sm_lib::Error::Busy(format!("node {node} cannot be reached ({why})"));
        let uri = match owner_uri(&self.engine, node, path).await {
            Ok(uri) => uri,
            Err(NoOwner::Unknown { .. }) => {
                return Err(unreachable("this cluster has no node of that name".into()));
            }
            Err(NoOwner::Unreachable(why)) => return Err(unreachable(why)),
            Err(NoOwner::Store(e)) => return Err(e),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {}", self.admin_token),
            )
            .header(axum::http::header::CONTENT_TYPE, "application/json");
        if let Some(me) = forwarded_from(&self.engine) {
            request = request.header(FORWARDED_FROM, me);
        }
        let body = match body {
            Some(json) => Body::from(json.to_string()),
            None => Body::empty(),
        };
        let request = request.body(body).map_err(|e| unreachable(e.to_string()))?;
        let response = self
            .client
            .0
            .request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_BODY_BYTES)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<sm_lib::wire::ErrorBody>(&bytes)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(sm_lib::Error::InvalidInput(format!(
                "node {node}: {message}"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| unreachable(format!("its answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_needs_a_terminal_goes_to_the_owner() {
        let owner = |m: Method, p: &str| match owner_only(&m, p) {
            Some(OwnerOnly::Session(id)) => Some(id),
            Some(OwnerOnly::Spawn) => Some("<spawn>".into()),
            None => None,
        };
        assert_eq!(owner(Method::DELETE, "/sessions/w1").as_deref(), Some("w1"));
        assert_eq!(
            owner(Method::POST, "/sessions/w1/clear").as_deref(),
            Some("w1")
        );
        assert_eq!(
            owner(Method::POST, "/sessions/w1/answer").as_deref(),
            Some("w1")
        );
        assert_eq!(
            owner(Method::POST, "/sessions/w1/watch").as_deref(),
            Some("w1")
        );
        assert_eq!(
            owner(Method::GET, "/sessions/w%31/output").as_deref(),
            Some("w1")
        );
        assert_eq!(
            owner(Method::GET, "/sessions/w1/what").as_deref(),
            Some("w1")
        );
        assert_eq!(owner(Method::POST, "/sessions").as_deref(), Some("<spawn>"));
        for (m, p) in [
            (Method::GET, "/sessions"),
            (Method::GET, "/sessions/w1"),
            (Method::POST, "/sessions/w1/input"),
            (Method::GET, "/sessions/w1/children"),
            (Method::GET, "/sessions/w1/messages"),
            (Method::POST, "/sessions/w1/name"),
            (Method::GET, "/locks"),
            (Method::POST, "/hooks/stop"),
        ] {
            assert_eq!(owner(m.clone(), p), None, "{m} {p}");
        }
    }
}
