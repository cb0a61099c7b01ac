//! How a network transport reaches its host, as plain data: the trusted
//! roots of its TLS settings, and the HTTP CONNECT proxy it may go through.
//! `feedvisor-transport-kit` turns these into sockets and rustls configs.

use std::fmt;

use url::Url;

/// Which certificate authorities a TLS feed trusts besides its `ca_file`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrustRoots {
    /// The Mozilla roots compiled in (`webpki-roots`): the same everywhere.
    #[default]
    Webpki,
    /// The operating system's store, read at each connect.
    System,
    /// None: only `ca_file` (or, without one, only `pin_sha256`).
    None,
}

impl TrustRoots {
    /// The name the config uses: `webpki`, `system` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustRoots::Webpki => "webpki",
            TrustRoots::System => "system",
            TrustRoots::None => "none",
        }
    }
}

/// Whether and how a feed goes through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ProxyOptions {
    /// As the environment says at connect time: `HTTPS_PROXY` for secure
    /// schemes, `HTTP_PROXY` for the others, skipped for hosts in `NO_PROXY`.
    #[default]
    Environment,
    /// Straight to the host, whatever the environment says (`proxy = "none"`).
    Direct,
    /// Through this proxy.
    Http(HttpProxy),
}

/// An HTTP proxy that tunnels with `CONNECT`, optionally with basic credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HttpProxy {
    /// The proxy's host name or IP address (no IPv6 brackets).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// The user name for `Proxy-Authorization: Basic`, when it wants one.
    pub username: Option<String>,
    /// The password (a secret: never shown).
    pub password: Option<String>,
}

impl HttpProxy {
    /// Parses `http://[user[:password]@]host[:port]` (port 80 by default).
    /// Messages never quote the URL: it may hold a password.
    pub fn parse(text: &str) -> Result<HttpProxy, String> {
        let url = Url::parse(text.trim()).map_err(|error| format!("invalid proxy URL: {error}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "proxy scheme {:?} is not supported: use http://host:port (the tunnel carries TLS itself)",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("the proxy URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy URL is only http://[user:password@]host:port".to_owned());
        }
        let decode = |part: &str| {
            percent_decode(part).ok_or("the proxy credentials are not valid percent-encoded UTF-8")
        };
        let username = match url.username() {
            "" => None,
            name => Some(decode(name)?),
        };
        let password = url.password().map(decode).transpose()?;
        Ok(HttpProxy { host, port: url.port().unwrap_or(80), username, password })
    }

    /// `host:port`, with brackets around an IPv6 address: what messages name.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for HttpProxy {
    /// The credentials are secrets: only whether there are any is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProxy")
            .field("addr", &self.addr())
            .field("credentials", &self.username.is_some())
            .finish()
    }
}

/// Decodes `%XX` escapes; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credentials() {
        let proxy = HttpProxy {
            host: "::1".to_owned(),
            port: 3128,
            username: Some("alice".to_owned()),
            password: Some("hunter2".to_owned()),
        };
        let shown = format!("{:?}", ProxyOptions::Http(proxy));
        assert!(shown.contains("[::1]:3128"), "{shown}");
        assert!(!shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
    }
}
