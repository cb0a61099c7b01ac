//! What the harnesses of network transports share: a loopback listener,
//! plain or TLS, and the writes of many sizes a stream-mode peer makes.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Setup;
use crate::certificates::TestCertificates;
use crate::net::{accept_stream, listen_loopback, ByteStream};

/// A listener on a free loopback port that completes a TLS handshake on
/// what it accepts when made with certificates, and remembers the
/// [`Setup`] its connection was requested with.
pub struct LoopbackListener {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    setup: Setup,
}

impl LoopbackListener {
    /// Listens; TLS (no ALPN) with `tls`'s server certificate when given.
    pub async fn bind(
        tls: Option<&TestCertificates>,
        setup: Setup,
    ) -> (LoopbackListener, SocketAddr) {
        let (listener, addr) = listen_loopback().await;
        let acceptor = tls.map(|certificates| certificates.acceptor(&[]));
        (LoopbackListener { listener, acceptor, setup }, addr)
    }

    /// Accepts the connection: the stream (TLS done) and the setup it was requested with.
    pub async fn accept(self) -> (Box<dyn ByteStream>, Setup) {
        (accept_stream(&self.listener, self.acceptor.as_ref()).await, self.setup)
    }
}

/// `data` cut into slices of many sizes (1 byte up to about 4 KiB), so
/// that a peer's writes and a transport's pieces do not line up.
pub fn varied_slices(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut size = 1;
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (now, later) = rest.split_at(size.min(rest.len()));
        rest = later;
        size = size * 7 % 4099 + 1;
        Some(now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varied_slices_cover_the_data_in_order_in_slices_of_several_sizes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let slices: Vec<&[u8]> = varied_slices(&data).collect();
        assert_eq!(slices.concat(), data);
        let sizes: std::collections::BTreeSet<usize> =
            slices.iter().map(|slice| slice.len()).collect();
        assert!(sizes.len() > 10, "{sizes:?}");
    }
}
