//! JSON bodies for the requests the HTTP parser refuses before any route sees them.
//!
//! hyper answers a request it cannot parse (invalid bytes in the request line, a NUL in a
//! header, a bad `Content-Length`, headers over its limit, a URI too long) on its own, with
//! a bare `400`, `431` or `414` and no body, and closes the connection; there is no hook
//! for its wording. sm promises a JSON `{error: {code, message}}` for every refusal, so the
//! connection is wrapped: a response head that hyper generated this way (one of those
//! statuses with `content-length: 0` — sm's own error responses always carry a body) is
//! rewritten, on its way out, into the same status with a JSON body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection that rewrites hyper's bodiless parse-error responses (see the module docs).
pub struct JsonRefusalIo<S> {
    inner: S,
    /// Bytes of a rewritten response still to be written, and how far we got.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonRefusalIo<S> {
    pub(crate) fn new(inner: S) -> Self {
        JsonRefusalIo {
            inner,
            pending: None,
        }
    }
}

/// The JSON response that replaces `head`, when `head` is one of hyper's automatic
/// refusals.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let end = text.find("\r\n\r\n")?;
    // Exactly a head with an empty body, nothing after it.
    if end + 4 != text.len() {
        return None;
    }
    let (status_line, headers) = text[..end].split_once("\r\n").unwrap_or((&text[..end], ""));
    let (code, message) = match status_line {
        "HTTP/1.1 400 Bad Request" | "HTTP/1.0 400 Bad Request" => (
            "bad_request",
            "the request could not be parsed (malformed request line, header or Content-Length)",
        ),
        "HTTP/1.1 431 Request Header Fields Too Large"
        | "HTTP/1.0 431 Request Header Fields Too Large" => {
            ("headers_too_large", "the request's headers are too large")
        }
        "HTTP/1.1 414 URI Too Long" | "HTTP/1.0 414 URI Too Long" => {
            ("uri_too_long", "the request's URI is too long")
        }
        _ => return None,
    };
    let bodiless = headers
        .split("\r\n")
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    if !bodiless {
        return None;
    }
    let body = serde_json::to_string(&sm_lib::wire::ErrorBody::new(code, message)).ok()?;
    let mut out = format!("{status_line}\r\n");
    for h in headers.split("\r\n").filter(|h| !h.is_empty()) {
        if !h.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<S: AsyncWrite + Unpin> JsonRefusalIo<S> {
    /// Writes what is pending; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done >= bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRefusalIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRefusalIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(replacement) = rewrite(buf) {
            self.pending = Some((replacement, 0));
            // The caller's bytes are taken (replaced); flushing writes the replacement.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored, so hyper hands over a response head in one buffer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn hypers_bodiless_refusals_get_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).expect("rewritten")).expect("utf-8");
        let (head, body) = out.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("date: Tue"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "headers_too_large");
    }

    #[test]
    fn sms_own_responses_pass_unchanged() {
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n";
        assert!(rewrite(own).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite(ok).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}";
        assert!(rewrite(with_body).is_none());
    }
}
