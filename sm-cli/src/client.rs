//! Who is calling and how to reach the server: identity from the environment sm gives every
//! agent, the admin token for humans, and a small blocking HTTP client.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sm_lib::Config;
use sm_lib::wire::{ErrorBody, env, files};

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server could not be reached (exit 3); the request was not sent.
    ServerDown(String),
    /// The connection broke after the request was sent and before the answer came (exit 3):
    /// the request may have taken effect.
    Interrupted(String),
    /// The server refused the request (exit 1).
    Api {
        /// Stable error code.
        code: String,
        /// Human message.
        message: String,
    },
    /// Bad usage or a local problem (exit 2).
    Usage(String),
    /// A question answered "no" (`sm alone` with others present; exit 1, no message).
    No,
    /// `sm wait` outside a session ran out of time (exit 4, no message).
    TimedOut,
}

impl CliError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::No => 1,
            CliError::TimedOut => 4,
            CliError::Usage(_) => 2,
            CliError::ServerDown(_) | CliError::Interrupted(_) => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::ServerDown(url) => write!(
                f,
                "the sm server is not running at {url}. Start it with `sm server` \
                 (or `cargo run --release -p sm-server`)"
            ),
            CliError::Interrupted(url) => write!(
                f,
                "the connection to the sm server at {url} broke before it answered; the \
                 request may or may not have taken effect (check before repeating it)"
            ),
            CliError::Api { code, message, .. } => write!(f, "{message} [{code}]"),
            CliError::Usage(m) => f.write_str(m),
            CliError::No => f.write_str("no"),
            CliError::TimedOut => f.write_str("timed out"),
        }
    }
}

/// The session this process runs in, from `SM_SESSION_ID` (or the Python manager's
/// `CLAUDE_SESSION_MANAGER_ID`).
pub fn my_session() -> Option<String> {
    [env::SESSION_ID, env::LEGACY_SESSION_ID]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// A connection to the server.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
}

fn agent_with(timeout: Duration) -> ureq::Agent {
    agent_limited(Some(timeout))
}

/// An agent whose requests take at most `timeout` overall (`None`: no limit, for streams).
fn agent_limited(timeout: Option<Duration>) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(timeout)
        .timeout_connect(Some(Duration::from_millis(500)))
        .http_status_as_error(false)
        // ureq's 128 KiB buffers are zeroed at every connection, a visible share of a
        // command that runs for a few milliseconds; sm's headers are small and bodies
        // stream through.
        .input_buffer_size(32 * 1024)
        .output_buffer_size(32 * 1024)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        LiteralsFirst,
    )
}

/// Resolves an IP literal (`127.0.0.1`, `[::1]`) by parsing it, and only a host name
/// through the system resolver: with a timeout set, ureq's resolver starts a thread for
/// every lookup, which is most of the cost of a short `sm` command against a loopback
/// server.
#[derive(Debug)]
struct LiteralsFirst;

impl ureq::unversioned::resolver::Resolver for LiteralsFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        use ureq::unversioned::resolver::DefaultResolver;
        let literal = uri.host().and_then(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip: std::net::IpAddr = host.parse().ok()?;
            let port = uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })?;
            Some(std::net::SocketAddr::new(ip, port))
        });
        match literal {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => DefaultResolver::default().resolve(uri, config, timeout),
        }
    }
}

impl Client {
    /// The server from `SM_SERVER_URL` / `SM_API_URL`, else the configuration; the token
    /// from `SM_TOKEN`, else (outside a managed agent only) the admin token file in the
    /// state dir.
    pub fn from_env(config_path: Option<&Path>, timeout: Duration) -> Result<Client, CliError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let url_from_env = var(env::SERVER_URL).or_else(|| var(env::LEGACY_SERVER_URL));
        let token_from_env = var(env::TOKEN);
        let (url, token) = match (url_from_env, token_from_env) {
            (Some(url), Some(token)) => (url, Some(token)),
            (url, token) => {
                let config = Config::load(config_path)
                    .map_err(|e| CliError::Usage(e.to_string()))?
                    .config;
                // Inside a managed agent, sm acts as that agent or not at all: a missing
                // SM_TOKEN never falls back to the admin token.
                let token = token.or_else(|| {
                    if my_session().is_some() {
                        return None;
                    }
                    std::fs::read_to_string(config.state_dir().join(files::ADMIN_TOKEN))
                        .ok()
                        .map(|t| t.trim().to_string())
                });
                // A running server records its URL in the state dir (it may listen on a
                // port chosen at start).
                let recorded = std::fs::read_to_string(config.state_dir().join(files::SERVER_URL))
                    .ok()
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty());
                (
                    url.or(recorded).unwrap_or_else(|| config.server_url()),
                    token,
                )
            }
        };
        Ok(Client {
            agent: agent_with(timeout),
            url: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The same server and identity with another overall request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            agent: agent_with(timeout),
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, CliError> {
        let mut response = result.map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                CliError::ServerDown(self.url.clone())
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                CliError::ServerDown(self.url.clone())
            }
            ureq::Error::Io(_) => CliError::Interrupted(self.url.clone()),
            ureq::Error::Timeout(_) => {
                CliError::Usage(format!("the server at {} did not answer in time", self.url))
            }
            other => CliError::Usage(format!("request to {} failed: {other}", self.url)),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|_| CliError::Interrupted(self.url.clone()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        match serde_json::from_value::<ErrorBody>(value.clone()) {
            Ok(ErrorBody { error }) => Err(CliError::Api {
                code: error.code,
                message: error.message,
            }),
            // Not sm's error body (a proxy's page, say): say what came back.
            Err(_) => Err(CliError::Api {
                code: "http_error".into(),
                message: format!("HTTP {status}: {value}"),
            }),
        }
    }

    /// `request` with who is asking: the token, and this process's pid, which the server
    /// uses to tell cheaply whether a request made with the admin token comes from inside
    /// an agent.
    fn identified<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        request
            .header(
                "Authorization",
                format!("Bearer {}", self.token.as_deref().unwrap_or("")),
            )
            .header("X-Sm-Pid", std::process::id().to_string())
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let req = self.identified(self.agent.get(format!("{}{path}", self.url)));
        self.finish(req.call())
    }

    /// GET `path` as a typed answer.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        typed(self.get(path)?)
    }

    /// POST `body` as JSON to `path`.
    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let req = self.identified(self.agent.post(format!("{}{path}", self.url)));
        self.finish(req.send_json(body))
    }

    /// POSTs `body`, which carries an idempotency key; when the connection breaks after the
    /// request went out (the server may have acted on it), repeats the same request for up
    /// to 30 s — through a server restart — so the caller learns what happened. Safe only
    /// for requests carrying an idempotency key.
    pub fn post_idempotent(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(50);
        let mut maybe_done = false;
        loop {
            match self.post(path, body) {
                // Not sent at all, and nothing sent before: say so at once.
                Err(CliError::ServerDown(url)) if !maybe_done => {
                    return Err(CliError::ServerDown(url));
                }
                Err(CliError::Interrupted(url) | CliError::ServerDown(url)) => {
                    maybe_done = true;
                    if std::time::Instant::now() >= deadline {
                        return Err(CliError::Interrupted(url));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// GET `path` as a stream without an overall timeout (server-sent events): the body,
    /// once the server answered 2xx.
    pub fn stream(&self, path: &str) -> Result<ureq::Body, CliError> {
        let agent = agent_limited(None);
        let req = self.identified(agent.get(format!("{}{path}", self.url)));
        let response = req.call().map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                CliError::ServerDown(self.url.clone())
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                CliError::ServerDown(self.url.clone())
            }
            other => CliError::Usage(format!("request to {} failed: {other}", self.url)),
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(CliError::Api {
                code: "http_error".into(),
                message: format!("HTTP {status} from {path}"),
            });
        }
        Ok(response.into_body())
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        let req = self.identified(self.agent.delete(format!("{}{path}", self.url)));
        self.finish(req.call())
    }
}

/// An answer of the server as the type the protocol says it is.
pub fn typed<T: DeserializeOwned>(answer: Value) -> Result<T, CliError> {
    serde_json::from_value(answer).map_err(|e| {
        CliError::Usage(format!(
            "the server's answer is not what this sm expects ({e}); are the server and the \
             CLI from very different versions?"
        ))
    })
}

/// Percent-encodes a session reference for a URL path.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
