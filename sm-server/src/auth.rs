//! API tokens.
//!
//! - The **admin token** is 32 random bytes (hex) created at first start in the state dir
//!   (`token`, mode 0600). Humans' `sm` reads it from there. It may act on every session.
//! - Each **agent token** is `<session id>.<HMAC-SHA256(admin token, session id)>`, handed
//!   to the agent in `SM_TOKEN`. It names its session, cannot be forged without the admin
//!   token, and needs no storage. It acts only as that session.
//! - A **dashboard cookie** is what the web dashboard's login hands a browser in exchange
//!   for the admin token: `d1.<expiry>.<nonce>.<HMAC(admin token, expiry, nonce)>`, so the
//!   token itself never sits in the browser. It acts as the admin until it expires or its
//!   holder logs out (revoked in memory; a restart forgets revocations, not validity).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sm_lib::{Caller, SessionId};

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Auth {
    admin: String,
    revoked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str("Auth(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Auth {
    /// Auth with a known admin token (tests, embedding).
    pub fn with_admin_token(admin: impl Into<String>) -> Self {
        Auth {
            admin: admin.into(),
            revoked: Default::default(),
        }
    }

    /// Reads the admin token from `state_dir/token`, creating it (0600) if missing. A token
    /// file readable by others is tightened to 0600.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<(Auth, PathBuf)> {
        crate::create_private_dir(state_dir)?;
        let path = state_dir.join(sm_lib::wire::files::ADMIN_TOKEN);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok((Auth::with_admin_token(text.trim()), path))
            }
            _ => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
                let token = hex(&bytes);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(token.as_bytes())?;
                Ok((Auth::with_admin_token(token), path))
            }
        }
    }

    /// The admin token itself (to share it with the other nodes of a cluster).
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin
    }

    fn mac(&self, id: &SessionId) -> String {
        self.mac_of(id.as_str().as_bytes())
    }

    fn mac_of(&self, data: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.admin.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(data);
        hex(&mac.finalize().into_bytes())
    }

    /// A new dashboard cookie value, valid for `ttl`.
    pub fn dashboard_cookie(&self, ttl: std::time::Duration) -> std::io::Result<String> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let expiry = unix_now().saturating_add(ttl.as_secs());
        let nonce = hex(&nonce);
        let mac = self.mac_of(format!("dashboard\n{expiry}\n{nonce}").as_bytes());
        Ok(format!("d1.{expiry}.{nonce}.{mac}"))
    }

    /// Whether `value` is a dashboard cookie this server issued, not expired nor revoked.
    pub fn dashboard_cookie_valid(&self, value: &str) -> bool {
        let mut parts = value.split('.');
        let (Some("d1"), Some(expiry), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        let Ok(expires) = expiry.parse::<u64>() else {
            return false;
        };
        let expected = self.mac_of(format!("dashboard\n{expiry}\n{nonce}").as_bytes());
        constant_time_eq(mac.as_bytes(), expected.as_bytes())
            && expires > unix_now()
            && !self
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(nonce)
    }

    /// Ends a dashboard cookie before its expiry (logout).
    pub fn revoke_dashboard_cookie(&self, value: &str) {
        if self.dashboard_cookie_valid(value) {
            if let Some(nonce) = value.split('.').nth(2) {
                self.revoked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(nonce.to_string());
            }
        }
    }

    /// The token for the agent in session `id`.
    pub fn agent_token(&self, id: &SessionId) -> String {
        format!("{id}.{}", self.mac(id))
    }

    /// Who presents `token`, if anyone.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        if constant_time_eq(token.as_bytes(), self.admin.as_bytes()) {
            return Some(Caller::Admin);
        }
        let (id, mac) = token.split_once('.')?;
        let id: SessionId = id.parse().ok()?;
        constant_time_eq(mac.as_bytes(), self.mac(&id).as_bytes()).then_some(Caller::Session(id))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tokens_name_their_session_and_cannot_be_forged() {
        let auth = Auth::with_admin_token("secret");
        let id = SessionId::new_random();
        let token = auth.agent_token(&id);
        assert_eq!(auth.caller(&token), Some(Caller::Session(id.clone())));
        assert_eq!(auth.caller("secret"), Some(Caller::Admin));
        let other = SessionId::new_random();
        let forged = format!("{other}.{}", token.split_once('.').unwrap().1);
        assert_eq!(auth.caller(&forged), None);
        assert_eq!(auth.caller(""), None);
        assert_eq!(Auth::with_admin_token("other").caller(&token), None);
    }

    #[test]
    fn dashboard_cookies_are_signed_expire_and_can_be_revoked() {
        let auth = Auth::with_admin_token("secret");
        let cookie = auth
            .dashboard_cookie(std::time::Duration::from_secs(60))
            .unwrap();
        assert!(auth.dashboard_cookie_valid(&cookie));
        assert!(!cookie.contains("secret"));
        // Another server's, a tampered expiry, an expired one, garbage.
        assert!(!Auth::with_admin_token("other").dashboard_cookie_valid(&cookie));
        let mut parts: Vec<&str> = cookie.split('.').collect();
        let later = (unix_now() + 999_999).to_string();
        parts[1] = &later;
        assert!(!auth.dashboard_cookie_valid(&parts.join(".")));
        let expired = auth.dashboard_cookie(std::time::Duration::ZERO).unwrap();
        assert!(!auth.dashboard_cookie_valid(&expired));
        for bad in ["", "d1", "d1...", "secret", &format!("{cookie}.x")] {
            assert!(!auth.dashboard_cookie_valid(bad), "{bad:?}");
        }
        // A cookie is not a token, and a token is not a cookie.
        assert_eq!(auth.caller(&cookie), None);
        assert!(!auth.dashboard_cookie_valid("secret"));
        let second = auth
            .dashboard_cookie(std::time::Duration::from_secs(60))
            .unwrap();
        auth.revoke_dashboard_cookie(&cookie);
        assert!(!auth.dashboard_cookie_valid(&cookie));
        assert!(
            auth.dashboard_cookie_valid(&second),
            "only that login ended"
        );
    }

    #[test]
    fn the_admin_token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = Auth::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, _) = Auth::load_or_create(dir.path()).unwrap();
        assert_eq!(a.admin, b.admin);
        assert!(!format!("{a:?}").contains(&a.admin));
    }
}
