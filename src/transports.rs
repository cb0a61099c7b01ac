//! The transport registry: the URL scheme of a feed picks its transport plugin,
//! and that transport judges the feed's settings ([`TransportRegistry::check`]).
//!
//! Plugins are registered here explicitly, in one place ([`TransportRegistry::with_defaults`]).
//! The in-memory transport is not among them: a production config cannot
//! name `memory://`; tests register it themselves.

use std::sync::Arc;

use feedvisor_transport_api::{FeedOptions, OptionProblem, Transport};
use feedvisor_transport_tcp::TcpTransport;
use feedvisor_transport_websocket::WebSocketTransport;

/// No transport serves a URL's scheme.
///
/// Displays as `unsupported scheme "htp": use ws://, wss://, tcp:// or tls://`,
/// listing the schemes the registry serves, in the order they were registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported scheme {scheme:?}: {}", what_to_use(.served))]
pub struct UnknownScheme {
    /// The scheme asked for.
    pub scheme: String,
    /// The schemes that are served, in registration order.
    pub served: Vec<&'static str>,
}

/// `use ws://, wss:// or tcp://`, or what to do when nothing is registered.
fn what_to_use(served: &[&str]) -> String {
    let schemes: Vec<String> = served.iter().map(|scheme| format!("{scheme}://")).collect();
    match schemes.as_slice() {
        [] => "no transport is registered: register one with SidecarBuilder::transport".to_owned(),
        [only] => format!("use {only}"),
        [first @ .., last] => format!("use {} or {last}", first.join(", ")),
    }
}

/// Transports by URL scheme, in registration order.
#[derive(Clone, Default)]
pub struct TransportRegistry {
    /// Few entries: a list keeps the order that error messages list them in.
    by_scheme: Vec<(&'static str, Arc<dyn Transport>)>,
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
        for &scheme in transport.schemes() {
            match self.by_scheme.iter_mut().find(|(served, _)| *served == scheme) {
                Some((_, slot)) => *slot = transport.clone(),
                None => self.by_scheme.push((scheme, transport.clone())),
            }
        }
        self
    }

    /// The schemes served, in registration order.
    pub fn schemes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_scheme.iter().map(|(scheme, _)| *scheme)
    }

    /// The transport for `scheme`.
    pub fn get(&self, scheme: &str) -> Result<Arc<dyn Transport>, UnknownScheme> {
        self.by_scheme
            .iter()
            .find(|(served, _)| *served == scheme)
            .map(|(_, transport)| transport.clone())
            .ok_or_else(|| UnknownScheme {
                scheme: scheme.to_owned(),
                served: self.schemes().collect(),
            })
    }

    /// What the transport serving the feed's scheme finds wrong with its settings.
    pub fn check(&self, feed: &FeedOptions<'_>) -> Result<Vec<OptionProblem>, UnknownScheme> {
        Ok(self.get(feed.url.scheme())?.check(feed))
    }

    /// The built-in transports and the in-memory one (on a hub of its own),
    /// for tests whose configs name `memory://` feeds.
    #[cfg(test)]
    pub(crate) fn with_memory() -> Self {
        use feedvisor_transport_memory::{MemoryHub, MemoryTransport};
        let mut registry = Self::with_defaults();
        registry.register(Arc::new(MemoryTransport::new(MemoryHub::new())));
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_transport() {
        let registry = TransportRegistry::with_memory();
        assert_eq!(registry.get("ws").map(|t| t.name()), Ok("websocket"));
        assert_eq!(registry.get("wss").map(|t| t.name()), Ok("websocket"));
        assert_eq!(registry.get("tcp").map(|t| t.name()), Ok("tcp"));
        assert_eq!(registry.get("tls").map(|t| t.name()), Ok("tcp"));
        assert_eq!(registry.get("memory").map(|t| t.name()), Ok("memory"));
        let error = registry.get("gopher").err().expect("unknown");
        assert_eq!(
            error.to_string(),
            "unsupported scheme \"gopher\": use ws://, wss://, tcp://, tls:// or memory://"
        );
    }

    #[test]
    fn memory_is_not_a_default_and_the_unknown_scheme_lists_what_is_served() {
        let error = TransportRegistry::with_defaults().get("memory").err().expect("not served");
        assert_eq!(
            error.to_string(),
            "unsupported scheme \"memory\": use ws://, wss://, tcp:// or tls://"
        );
        let error = TransportRegistry::empty().get("ws").err().expect("nothing served");
        assert!(error.to_string().contains("no transport is registered"), "{error}");
    }

    #[test]
    fn a_later_registration_takes_over_its_schemes_in_place() {
        let mut registry = TransportRegistry::with_defaults();
        registry.register(Arc::new(TcpTransport::new()));
        assert_eq!(registry.schemes().collect::<Vec<_>>(), ["ws", "wss", "tcp", "tls"]);
    }
}
