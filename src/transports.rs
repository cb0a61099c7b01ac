//! The transport registry: the URL scheme of a feed picks its transport plugin.
//!
//! Plugins are registered here explicitly, in one place ([`TransportRegistry::with_defaults`]).

use std::collections::HashMap;
use std::sync::Arc;

use feedvisor_transport_api::Transport;
use feedvisor_transport_tcp::TcpTransport;
use feedvisor_transport_websocket::WebSocketTransport;

/// No transport serves a URL's scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transport serves the scheme {scheme:?} (known: {known})")]
pub struct UnknownScheme {
    /// The scheme asked for.
    pub scheme: String,
    /// The schemes that are served, comma-separated.
    pub known: String,
}

/// Transports by URL scheme.
#[derive(Clone, Default)]
pub struct TransportRegistry {
    by_scheme: HashMap<&'static str, Arc<dyn Transport>>,
}

impl TransportRegistry {
    /// A registry with no transports.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in transports: WebSocket (`ws`, `wss`) and TCP (`tcp`, `tls`).
    pub fn with_defaults() -> Self {
        let mut registry = Self::empty();
        registry.register(Arc::new(WebSocketTransport::new()));
        registry.register(Arc::new(TcpTransport::new()));
        registry
    }

    /// Serves the transport's schemes with it (replacing any earlier one for them).
    pub fn register(&mut self, transport: Arc<dyn Transport>) -> &mut Self {
        for scheme in transport.schemes() {
            self.by_scheme.insert(scheme, transport.clone());
        }
        self
    }

    /// The transport for `scheme`.
    pub fn get(&self, scheme: &str) -> Result<Arc<dyn Transport>, UnknownScheme> {
        self.by_scheme.get(scheme).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.by_scheme.keys().copied().collect();
            known.sort_unstable();
            UnknownScheme { scheme: scheme.to_owned(), known: known.join(", ") }
        })
    }
}

#[cfg(test)]
mod tests {
    use feedvisor_transport_memory::{MemoryHub, MemoryTransport};

    use super::*;

    #[test]
    fn scheme_picks_the_transport() {
        let mut registry = TransportRegistry::with_defaults();
        registry.register(Arc::new(MemoryTransport::new(MemoryHub::new())));
        assert_eq!(registry.get("ws").map(|t| t.name()), Ok("websocket"));
        assert_eq!(registry.get("wss").map(|t| t.name()), Ok("websocket"));
        assert_eq!(registry.get("tcp").map(|t| t.name()), Ok("tcp"));
        assert_eq!(registry.get("tls").map(|t| t.name()), Ok("tcp"));
        assert_eq!(registry.get("memory").map(|t| t.name()), Ok("memory"));
        let error = registry.get("gopher").err().expect("unknown");
        assert_eq!(
            error.to_string(),
            "no transport serves the scheme \"gopher\" (known: memory, tcp, tls, ws, wss)"
        );
    }
}
