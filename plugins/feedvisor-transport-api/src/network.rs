//! How a network transport reaches its host, as plain data: the trusted
//! roots of its TLS settings, and the HTTP CONNECT proxy it may go through.
//! `feedvisor-transport-kit` turns these into sockets and rustls configs.

use std::fmt;

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
