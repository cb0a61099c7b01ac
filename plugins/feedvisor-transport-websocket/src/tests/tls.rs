//! `wss` against a rustls server whose certificate a CA made for the test signed.

use bytes::Bytes;
use feedvisor_test_support::TestCertificates;
use feedvisor_transport_api::{DataFrame, Event, Outbound, Transport, TransportError};
use futures_util::StreamExt;

use super::*;
use crate::WebSocketTransport;

/// What the test server offers over ALPN: h2 before http/1.1, so that an h2
/// offer from the client would be picked.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A loopback listener and its `wss://` URL for `host`.
async fn listen_tls(host: &str) -> (TcpListener, String) {
    let (listener, _) = listen().await;
    let port = listener.local_addr().expect("addr").port();
    (listener, format!("wss://{host}:{port}/feed"))
}

#[actix_rt::test]
async fn wss_with_the_ca_file_connects_over_http_1_1_and_carries_frames() {
    let certificates = TestCertificates::generate();
    for host in ["127.0.0.1", "localhost"] {
        let (listener, url) = listen_tls(host).await;
        let mut request = request(&url);
        request.tls.ca_file = Some(certificates.ca_file());
        let server = async {
            let (stream, _) = listener.accept().await.expect("accept");
            let stream = certificates.acceptor(&ALPN).accept(stream).await.expect("tls handshake");
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let then = encode_frame(0x81, b"over tls");
            let (ws, _) = RawWs::accept_with(stream, "", &then).await.expect("upgrade");
            (ws, alpn)
        };
        let client = WebSocketTransport::new().connect(request);
        within(async {
            let ((mut stream, alpn), connection) = tokio::join!(server, client);
            assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "{host}: only http/1.1 offered");
            let mut connection = connection.expect("connected");
            let batch = connection.inbound.next().await.expect("open").expect("no error");
            assert_eq!(batch, vec![Event::Data(DataFrame::text("over tls"))]);
            connection
                .outbound
                .send(Outbound::Binary(Bytes::from_static(b"back")))
                .expect("queued");
            // The inbound stream must be polled for outbound messages to be written.
            let frame = tokio::select! {
                frame = read_client_frame(&mut stream) => frame,
                end = connection.inbound.next() => panic!("inbound ended early: {end:?}"),
            };
            assert_eq!(frame, (0x82, b"back".to_vec()));
        })
        .await;
    }
}

#[actix_rt::test]
async fn wss_without_the_ca_file_fails_with_a_tls_error() {
    let certificates = TestCertificates::generate();
    let (listener, url) = listen_tls("127.0.0.1").await;
    let server = async {
        let (stream, _) = listener.accept().await.expect("accept");
        // The client refuses the certificate; the server's side of it is not checked.
        let _ = certificates.acceptor(&ALPN).accept(stream).await;
    };
    let client = WebSocketTransport::new().connect(request(&url));
    let (_, result) = within(async { tokio::join!(server, client) }).await;
    match result {
        Err(TransportError::Tls(message)) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}")
        }
        Err(other) => panic!("expected a tls error, got {other:?}"),
        Ok(_) => panic!("expected a tls error, got a connection"),
    }
}
