//! A notifier that POSTs each notification as JSON to configured URLs, with retries and a
//! timeout per attempt. Runs its blocking HTTP calls off the async runtime.

use std::time::Duration;

use async_trait::async_trait;
use sm_lib::{Error, Notification, Notifier, Result};

/// POSTs notifications to URLs.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    urls: Vec<String>,
    timeout: Duration,
    attempts: u32,
}

impl WebhookNotifier {
    /// A notifier for `urls`, each attempt limited to `timeout`, `attempts` tries per URL
    /// (with a short back-off between them).
    pub fn new(urls: Vec<String>, timeout: Duration, attempts: u32) -> Self {
        WebhookNotifier {
            urls,
            timeout,
            attempts: attempts.max(1),
        }
    }

    fn post(&self, url: &str, body: &serde_json::Value) -> std::result::Result<(), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1)));
            }
            match agent.post(url).send_json(body) {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn notify(&self, notification: &Notification) -> Result<()> {
        let body = serde_json::to_value(notification)
            .map_err(|e| Error::InvalidInput(format!("cannot encode a notification: {e}")))?;
        let me = self.clone();
        let failures = tokio::task::spawn_blocking(move || {
            me.urls
                .iter()
                .filter_map(|url| me.post(url, &body).err().map(|e| format!("{url}: {e}")))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::NotSupported(format!("webhook task failed: {e}")))?;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::NotSupported(format!(
                "webhook delivery failed: {}",
                failures.join("; ")
            )))
        }
    }
}
