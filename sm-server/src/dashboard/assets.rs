//! The dashboard's files, embedded in the binary so it works offline and from any machine
//! the server serves, with no build step.

use std::sync::OnceLock;

/// One embedded file.
pub(super) struct File {
    pub content_type: &'static str,
    pub body: &'static str,
    /// The hash of `body`, computed once.
    version: OnceLock<String>,
}

impl File {
    const fn new(content_type: &'static str, body: &'static str) -> Self {
        File {
            content_type,
            body,
            version: OnceLock::new(),
        }
    }

    /// A hash of the content: what names this version of the file.
    pub fn version(&self) -> &str {
        self.version
            .get_or_init(|| format!("{:016x}", fnv1a(self.body.as_bytes())))
    }

    /// A strong validator of the file's content, so a browser re-checks cheaply.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version())
    }
}

static APP_JS: File = File::new(
    "text/javascript; charset=utf-8",
    include_str!("assets/app.js"),
);
static APP_CSS: File = File::new("text/css; charset=utf-8", include_str!("assets/app.css"));
static ICON: File = File::new("image/svg+xml", include_str!("assets/icon.svg"));

/// The file served at `/ui/<name>`.
pub(super) fn file(name: &str) -> Option<&'static File> {
    match name {
        "app.js" => Some(&APP_JS),
        "app.css" => Some(&APP_CSS),
        "icon.svg" => Some(&ICON),
        _ => None,
    }
}

const APP_HTML: &str = include_str!("assets/app.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");

/// The dashboard page (its script and style sheet named with their content's hash, so a
/// new server version is never mixed with an old cached file).
pub(super) fn app_page() -> String {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        APP_HTML
            .replace("{js}", APP_JS.version())
            .replace("{css}", APP_CSS.version())
            .replace("{version}", env!("CARGO_PKG_VERSION"))
    })
    .clone()
}

/// The login form, with `error` (escaped) above it.
pub(super) fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    LOGIN_HTML
        .replace("{css}", APP_CSS.version())
        .replace("{error}", &error)
}

/// Text made safe to put between HTML tags or in a quoted attribute.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_no_inline_script_or_style() {
        for page in [app_page(), login_page(Some("x"))] {
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style="), "inline style");
            assert!(!page.contains(" on"), "inline handler");
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "no outside address"
            );
        }
        assert!(
            !APP_JS.body.contains("innerHTML"),
            "the script builds the page from text nodes"
        );
        assert!(!APP_JS.body.contains("eval("));
    }

    #[test]
    fn login_errors_are_escaped() {
        let page = login_page(Some("<img src=x onerror=alert(1)>"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<img"));
    }
}
