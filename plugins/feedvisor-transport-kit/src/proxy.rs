//! HTTP CONNECT tunnels: which proxy a feed goes through ([`choose`], with
//! the usual `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment), and the
//! tunnel itself ([`tunnel`]), after which TLS and the feed's own handshake
//! run unchanged.
//!
//! The proxy's answer is read up to [`MAX_ANSWER`] bytes and
//! [`MAX_ANSWER_HEADERS`] headers: a broken or hostile proxy cannot make us
//! buffer more. Errors quote the proxy's status line, never its credentials.

use base64::Engine as _;
use feedvisor_transport_api::{HttpProxy, ProxyOptions, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest proxy answer (status line and headers) read.
pub const MAX_ANSWER: usize = 16 * 1024;

/// The most header lines a proxy answer may have.
pub const MAX_ANSWER_HEADERS: usize = 64;

/// The proxy a connect to `host` goes through, if any: the feed's own, or
/// with [`ProxyOptions::Environment`], `HTTPS_PROXY` (`secure`) or
/// `HTTP_PROXY` (lower-case names first), unless `NO_PROXY` matches `host`.
pub fn choose(
    options: &ProxyOptions,
    host: &str,
    secure: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HttpProxy>, TransportError> {
    match options {
        ProxyOptions::Direct => Ok(None),
        ProxyOptions::Http(proxy) => Ok(Some(proxy.clone())),
        ProxyOptions::Environment => {
            let names: [&str; 2] =
                if secure { ["https_proxy", "HTTPS_PROXY"] } else { ["http_proxy", "HTTP_PROXY"] };
            let Some((name, value)) = first_set(&names, env) else { return Ok(None) };
            if let Some((_, no_proxy)) = first_set(&["no_proxy", "NO_PROXY"], env) {
                if bypasses(&no_proxy, host) {
                    return Ok(None);
                }
            }
            HttpProxy::parse(&value)
                .map(Some)
                .map_err(|reason| TransportError::InvalidUrl { url: format!("${name}"), reason })
        }
    }
}

/// The process environment, for [`choose`]: unset and empty are the same.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn first_set(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        env(name).filter(|value| !value.trim().is_empty()).map(|value| ((*name).to_owned(), value))
    })
}

/// Whether `NO_PROXY` (comma-separated: `*`, host names matching themselves
/// and their subdomains, with or without a leading dot, IP addresses, each
/// optionally with `:port`, which is ignored) names `host`.
fn bypasses(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).filter(|entry| !entry.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.to_ascii_lowercase();
        let entry = match entry.rsplit_once(':') {
            Some((name, port))
                if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') =>
            {
                name.to_owned()
            }
            _ => entry,
        };
        let entry = entry.trim_start_matches('.').trim_start_matches('[').trim_end_matches(']');
        host == entry || host.ends_with(&format!(".{entry}"))
    })
}

/// Opens a TCP connection to `proxy` and asks it, with `CONNECT`, for a
/// tunnel to `host:port`. The caller bounds the whole by its handshake timeout.
pub async fn tunnel(proxy: &HttpProxy, host: &str, port: u16) -> Result<TcpStream, TransportError> {
    let fail = |reason: String| TransportError::Proxy { proxy: proxy.addr(), reason };
    let mut stream =
        TcpStream::connect((proxy.host.as_str(), proxy.port)).await.map_err(|error| match error
            .kind()
        {
            std::io::ErrorKind::ConnectionRefused => fail("refused the connection".to_owned()),
            _ => fail(format!("cannot connect: {error}")),
        })?;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let target =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(username) = &proxy.username {
        let pair = format!("{username}:{}", proxy.password.as_deref().unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| fail(format!("sending CONNECT failed: {error}")))?;
    let answer = read_answer(&mut stream).await.map_err(fail)?;
    match answer.status {
        200..=299 => Ok(stream),
        // 407 is the standard answer; tinyproxy 1.11 answers a CONNECT with 401.
        401 | 407 => Err(fail(format!(
            "answered \"{}\": check the user name and password in the proxy URL",
            answer.status_line
        ))),
        _ => Err(fail(format!("answered \"{}\" to CONNECT {target}", answer.status_line))),
    }
}

/// The parts of a proxy's answer we use.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    /// The status code.
    status: u16,
    /// The status line, printable characters only, at most 200 of them.
    status_line: String,
}

/// Reads the answer head, bounded; refuses data after a 2xx head (the
/// tunnel's first bytes are ours to send, so a proxy that sends more is
/// broken); a refusal's body is left unread.
async fn read_answer(stream: &mut TcpStream) -> Result<Answer, String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| format!("reading its answer failed: {error}"))?;
        if read == 0 {
            return Err("closed the connection without answering CONNECT".to_owned());
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(end) = find_end(&head) {
            let answer = parse_answer(&head[..end])?;
            // A refusal may carry a body (tinyproxy's 407 has an HTML page);
            // after a 2xx the bytes are the tunnel's, and the server speaks second.
            if end != head.len() && (200..300).contains(&answer.status) {
                return Err("sent data after its answer to CONNECT".to_owned());
            }
            return Ok(answer);
        }
        if head.len() > MAX_ANSWER {
            return Err(format!("its answer to CONNECT is longer than {MAX_ANSWER} bytes"));
        }
    }
}

/// The index just past the blank line that ends a head.
fn find_end(head: &[u8]) -> Option<usize> {
    head.windows(4).position(|window| window == b"\r\n\r\n").map(|at| at + 4)
}

fn parse_answer(head: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let shown: String = status_line.chars().filter(|c| !c.is_control()).take(200).collect();
    let headers = lines.filter(|line| !line.is_empty()).count();
    if headers > MAX_ANSWER_HEADERS {
        return Err(format!("its answer to CONNECT has more than {MAX_ANSWER_HEADERS} headers"));
    }
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(status) if version.starts_with("HTTP/1.") && (100..600).contains(&status) => {
            Ok(Answer { status, status_line: shown })
        }
        _ => Err(format!("answered CONNECT with something that is not HTTP: {shown:?}")),
    }
}

#[cfg(test)]
mod tests;
