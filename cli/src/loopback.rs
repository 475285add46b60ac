//! The one-shot loopback listener of `tms login --sso` (RFC 8252 §7.3): waits for the browser's
//! redirect to `http://127.0.0.1:<port>/callback`, answers anything else with 404, and answers
//! the callback with a small page saying the window can be closed.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The path the api is asked to redirect to.
pub const CALLBACK_PATH: &str = "/callback";
/// A browser sends its request at once; a connection that does not is dropped after this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request heads larger than this are not a browser's redirect.
const MAX_HEAD: usize = 16 * 1024;

/// The callback's query parameters and the connection to answer on.
pub struct Callback {
    pub params: HashMap<String, String>,
    stream: TcpStream,
}

/// Waits until `deadline` for a `GET /callback…`; `None` when the deadline passed first.
pub async fn wait(listener: &TcpListener, deadline: Instant) -> std::io::Result<Option<Callback>> {
    loop {
        let (mut stream, _) = match tokio::time::timeout_at(deadline, listener.accept()).await {
            Ok(accepted) => accepted?,
            Err(_) => return Ok(None),
        };
        let Ok(Ok(Some(target))) =
            tokio::time::timeout(READ_TIMEOUT, request_target(&mut stream)).await
        else {
            continue;
        };
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != CALLBACK_PATH {
            // E.g. a browser's /favicon.ico: not the redirect, keep waiting.
            let _ = respond(&mut stream, "404 Not Found", "Not found", "Nothing here.").await;
            continue;
        }
        let params = url.query_pairs().into_owned().collect();
        return Ok(Some(Callback { params, stream }));
    }
}

/// The target of a `GET` request line, once the whole head arrived; `None` for anything else.
async fn request_target(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Ok(Some(target.to_string())),
        _ => Ok(None),
    }
}

impl Callback {
    /// Answers the browser: a page with `title` and `message` (never a token), then closes.
    pub async fn answer(mut self, ok: bool, title: &str, message: &str) {
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        let _ = respond(&mut self.stream, status, title, message).await;
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    title: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} – TMS</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em}}</style>\
         </head><body><h1>{t}</h1><p>{m}</p></body></html>\n",
        t = escape(title),
        m = escape(message),
    );
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(escape("<b>&\"</b>"), "&lt;b&gt;&amp;&quot;&lt;/b&gt;");
    }
}
