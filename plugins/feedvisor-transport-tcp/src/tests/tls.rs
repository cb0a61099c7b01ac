//! `tls://` against a rustls server whose certificate a CA made for the test signed.

use std::path::PathBuf;

use bytes::Bytes;
use feedvisor_test_support::TestCertificates;
use feedvisor_transport_api::{DataFrame, Outbound};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

use super::*;

/// A listener on `ip` port 0 and its `tls://` URL for `host`.
async fn listen_tls(ip: &str, host: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    (listener, format!("tls://{host}:{port}"))
}

/// Connects with `request` to a TLS server on `listener` presenting the
/// server certificate of `certificates`; returns the server's end (if its
/// handshake succeeded) and the client's result.
async fn connect_tls(
    listener: &TcpListener,
    certificates: &TestCertificates,
    request: ConnectRequest,
) -> (Option<TlsStream<TcpStream>>, Result<Connection, TransportError>) {
    let server = async {
        let (stream, _) = listener.accept().await.expect("accept");
        certificates.acceptor(&[]).accept(stream).await.ok()
    };
    within(async { tokio::join!(server, TcpTransport::new().connect(request)) }).await
}

fn tls_message(result: Result<Connection, TransportError>) -> String {
    match result {
        Err(TransportError::Tls(message)) => message,
        Err(other) => panic!("expected a tls error, got {other:?}"),
        Ok(_) => panic!("expected a tls error, got a connection"),
    }
}

#[actix_rt::test]
async fn tls_with_the_ca_file_carries_lines_both_ways() {
    let certificates = TestCertificates::generate();
    for host in ["127.0.0.1", "localhost"] {
        let (listener, url) = listen_tls("127.0.0.1", host).await;
        let mut request = request(&url);
        request.tls.ca_file = Some(certificates.ca_file());
        let (stream, connection) = connect_tls(&listener, &certificates, request).await;
        let mut stream = stream.expect("server handshake");
        let mut connection = connection.expect("connected");
        assert_eq!(connection.protocol, None);
        within(async {
            stream.write_all(b"over tls\r\n").await.expect("write");
            let (events, _) = read_events(&mut connection, 1).await;
            assert_eq!(events, vec![Event::Data(DataFrame::text("over tls"))], "{host}");
            connection.outbound.send(Outbound::text("back")).expect("queued");
            connection.outbound.send(Outbound::Close(None)).expect("queued");
            let peer = async {
                let mut received = Vec::new();
                stream.read_to_end(&mut received).await.expect("read to close_notify");
                stream.shutdown().await.expect("close_notify back");
                received
            };
            let (received, (_, error)) = tokio::join!(peer, read_to_end(&mut connection));
            assert_eq!(received, b"back\n", "{host}");
            assert_eq!(error, None, "{host}");
        })
        .await;
    }
}

#[actix_rt::test]
async fn tls_without_the_ca_file_fails_with_a_tls_error() {
    let certificates = TestCertificates::generate();
    let (listener, url) = listen_tls("127.0.0.1", "127.0.0.1").await;
    let (_, result) = connect_tls(&listener, &certificates, request(&url)).await;
    let message = tls_message(result);
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

#[actix_rt::test]
async fn tls_to_a_name_the_certificate_does_not_carry_fails_with_a_tls_error() {
    let certificates = TestCertificates::generate();
    // The certificate is for localhost and 127.0.0.1; 127.0.0.2 is loopback too (Linux).
    let (listener, url) = listen_tls("127.0.0.2", "127.0.0.2").await;
    let mut request = request(&url);
    request.tls.ca_file = Some(certificates.ca_file());
    let (_, result) = connect_tls(&listener, &certificates, request).await;
    let message = tls_message(result);
    assert!(message.contains("not valid for name"), "{message}");
}

#[actix_rt::test]
async fn a_missing_ca_file_fails_before_connecting() {
    let (_listener, url) = listen_tls("127.0.0.1", "127.0.0.1").await;
    let mut request = request(&url);
    request.tls.ca_file = Some(PathBuf::from("/nonexistent/feedvisor/ca.pem"));
    let message = tls_message(within(TcpTransport::new().connect(request)).await);
    assert!(message.contains("/nonexistent/feedvisor/ca.pem"), "{message}");
}

#[actix_rt::test]
async fn in_stream_mode_only_a_close_notify_is_a_clean_end() {
    let certificates = TestCertificates::generate();
    for clean in [true, false] {
        let (listener, url) = listen_tls("127.0.0.1", "localhost").await;
        let mut request = request(&url);
        request.tls.ca_file = Some(certificates.ca_file());
        request.mode = DeliveryMode::Stream { chunk_size: 1024 };
        let (stream, connection) = connect_tls(&listener, &certificates, request).await;
        let mut stream = stream.expect("server handshake");
        let mut connection = connection.expect("connected");
        within(async {
            stream.write_all(b"raw bytes").await.expect("write");
            if clean {
                stream.shutdown().await.expect("close_notify");
            } else {
                stream.flush().await.expect("flush");
                // Hang up the TCP connection under the TLS session.
                let (tcp, _) = stream.into_inner();
                drop(tcp);
            }
            let (events, error) = read_to_end(&mut connection).await;
            let data: Vec<u8> = events
                .iter()
                .filter_map(|event| match event {
                    Event::Data(frame) => Some(frame.payload.to_vec()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(
                Bytes::from(data),
                Bytes::from_static(b"raw bytes"),
                "clean: {clean}, {events:?} {error:?}"
            );
            if clean {
                assert_eq!(error, None);
                assert_eq!(events.last(), Some(&Event::Close(None)));
            } else {
                assert_eq!(
                    error,
                    Some(TransportError::Io(
                        "connection closed by peer without a TLS close_notify".to_owned()
                    ))
                );
            }
        })
        .await;
    }
}
