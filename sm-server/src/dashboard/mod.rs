//! The web dashboard: the swarm in a browser, served at `/` by the same server as the API.
//!
//! Everything it needs is embedded here (`assets/`): one HTML page, one script, one style
//! sheet, no build step and nothing fetched from elsewhere. The page is a client of the
//! public API (`/status`, `/sessions/…`, `/events`, `/events/stream`); this module adds only
//! the login that turns the admin token into an HttpOnly, SameSite=Strict cookie, and the
//! rules under which that cookie counts as the admin:
//!
//! - only from loopback unless `server.dashboard_remote` says otherwise;
//! - a request that changes something must carry `X-Sm-Dashboard: 1` (a header no other
//!   site can make a browser send here without a CORS preflight, which this server never
//!   grants) and must not come from another origin (`Origin`, `Sec-Fetch-Site`);
//! - every page is sent with a Content-Security-Policy that allows only this server's own
//!   script and style: agent-controlled text (names, tasks, screens, messages) is only ever
//!   put into the page as text, and even a slip could not run an inline script.

mod assets;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sm_lib::Caller;

use crate::api::{ApiError, AppState};

/// The cookie that carries a dashboard login.
pub const COOKIE: &str = "sm_dashboard";

/// The header every state-changing dashboard request carries.
pub const CSRF_HEADER: &str = "x-sm-dashboard";

/// How long a login lasts.
const LOGIN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether and to whom the dashboard is served (`server.dashboard`, `server.dashboard_remote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Serve it at all.
    pub enabled: bool,
    /// Serve it to other machines too.
    pub remote: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            remote: false,
        }
    }
}

impl Settings {
    /// The settings a configuration asks for.
    pub fn from_config(config: &sm_lib::Config) -> Self {
        Settings {
            enabled: config.server.dashboard,
            remote: config.server.dashboard_remote,
        }
    }
}

/// Allows nothing but this server's own files; no inline script or style, no frames, no
/// form posts elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The dashboard's routes (the page, its assets, login and logout).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/{asset}", get(asset))
}

/// The admin, when the request carries a valid dashboard cookie and may use it; `None`
/// without one (or with one that expired: the caller answers 401 and the page asks for a
/// login again); an error when the cookie is valid but the request breaks a rule above.
pub(crate) fn cookie_caller(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    let Some(value) = cookie(&parts.headers, COOKIE) else {
        return Ok(None);
    };
    if !state.dashboard.enabled || !state.auth.dashboard_cookie_valid(value) {
        return Ok(None);
    }
    if !peer_allowed(parts, state) {
        return Err(forbidden_remote());
    }
    if !is_safe(&parts.method) {
        if !carries_csrf_header(&parts.headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a dashboard request that changes something must carry X-Sm-Dashboard: 1",
            ));
        }
        if !same_origin(&parts.headers) {
            return Err(cross_origin());
        }
    }
    Ok(Some(Caller::Admin))
}

/// Whether a request carries the header only the dashboard's own script sends.
fn carries_csrf_header(headers: &HeaderMap) -> bool {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) == Some("1")
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a browser on another machine is refused.
const ONLY_THIS_MACHINE: &str = "the dashboard is served only to this machine (set server.dashboard_remote: true to serve it to others)";

fn forbidden_remote() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", ONLY_THIS_MACHINE)
}

fn cross_origin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a dashboard request from another origin is refused",
    )
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Loopback peers always; others only with `dashboard_remote`. A request that did not come
/// through [`crate::serve_with`] (the router nested in another program) has no known peer
/// and counts as remote.
fn peer_allowed(parts: &Parts, state: &AppState) -> bool {
    state.dashboard.remote
        || parts
            .extensions
            .get::<crate::peer::Connection>()
            .is_some_and(|c| c.peer.ip().is_loopback())
}

/// False when the browser says the request comes from another site. `Sec-Fetch-Site`
/// (sent by every current browser) decides when present: same-origin, or none (typed by
/// the user). Else an `Origin` must be this `Host`; no `Origin` at all is a client that is
/// not a browser, which a cookie-stealing page cannot be.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    }
}

/// Adds the headers every dashboard response carries.
fn secured(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "cache-control", cache);
    response
}

fn html(status: StatusCode, body: String) -> Response {
    let response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secured(response, "no-store")
}

fn refused_page(message: &str) -> Response {
    html(StatusCode::FORBIDDEN, assets::login_page(Some(message)))
}

/// `GET /`: the dashboard for a logged-in browser, else the login form.
async fn page(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    if !peer_allowed(&parts, &state) {
        return refused_page(ONLY_THIS_MACHINE);
    }
    if let Ok(Some(_)) = cookie_caller(&parts, &state) {
        html(StatusCode::OK, assets::app_page())
    } else {
        html(StatusCode::OK, assets::login_page(None))
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login` (a plain form post): the admin token in, a cookie out.
async fn login(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    if !peer_allowed(&parts, &state) {
        return refused_page(ONLY_THIS_MACHINE);
    }
    if !same_origin(&parts.headers) {
        return refused_page("A login from another site is refused.");
    }
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024).await else {
        return html(
            StatusCode::BAD_REQUEST,
            assets::login_page(Some("The login form was too large.")),
        );
    };
    let token = serde_urlencoded::from_bytes::<LoginForm>(&body)
        .map(|f| f.token)
        .unwrap_or_default();
    match state.auth.caller(token.trim()) {
        Some(Caller::Admin) => {}
        Some(Caller::Session(_)) => {
            return html(
                StatusCode::UNAUTHORIZED,
                assets::login_page(Some(
                    "That is an agent's token; the dashboard needs the admin token.",
                )),
            );
        }
        None => {
            return html(
                StatusCode::UNAUTHORIZED,
                assets::login_page(Some("That token is not this server's admin token.")),
            );
        }
    }
    if let Err(e) = crate::api::refuse_admin_inside_an_agent(&parts, &state).await {
        return refused_page(&e.message());
    }
    let cookie = match state.auth.dashboard_cookie(LOGIN_TTL) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot make a dashboard login");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                assets::login_page(Some("The server could not make a login; see its log.")),
            );
        }
    };
    tracing::info!("dashboard login");
    let response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    secured(with_cookie(response, &cookie, LOGIN_TTL), "no-store")
}

/// `POST /ui/logout`: ends this browser's login.
async fn logout(State(state): State<AppState>, headers: HeaderMap, _body: Bytes) -> Response {
    if !carries_csrf_header(&headers) || !same_origin(&headers) {
        return cross_origin().into_response();
    }
    if let Some(value) = cookie(&headers, COOKIE) {
        state.auth.revoke_dashboard_cookie(value);
    }
    let response = StatusCode::NO_CONTENT.into_response();
    secured(with_cookie(response, "", Duration::ZERO), "no-store")
}

/// Sets (or, with an empty value and no lifetime, clears) the login cookie.
fn with_cookie(mut response: Response, value: &str, lifetime: Duration) -> Response {
    let text = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        lifetime.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET /ui/<file>`: the embedded script, style sheet and icon (public: they hold nothing
/// but the dashboard's own code).
async fn asset(
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = assets::file(&name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such dashboard file: {name}"),
        )
        .into_response();
    };
    let etag = file.etag();
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str());
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, file.content_type)], file.body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    secured(response, "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; sm_dashboard=xyz ; b=2")]);
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(
            cookie(&headers(&[("cookie", "sm_dashboardx=1")]), COOKIE),
            None
        );
    }

    #[test]
    fn requests_from_another_site_are_told_apart() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8420"),
            ("host", "127.0.0.1:8420")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8420")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "x")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        // A form posted from a page with a strict referrer policy says Origin: null.
        assert!(same_origin(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ])));
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    }
}
