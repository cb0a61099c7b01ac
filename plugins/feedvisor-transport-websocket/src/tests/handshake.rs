//! Connect and upgrade: what is sent, what is checked, how failures are classified.

use std::time::{Duration, Instant};

use feedvisor_transport_api::{Transport, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::WebSocketTransport;

/// Connects and returns the error, failing the test on success.
async fn connect_error(request: ConnectRequest) -> TransportError {
    match WebSocketTransport::new().connect(request).await {
        Ok(_) => panic!("expected the connect to fail"),
        Err(error) => error,
    }
}

/// Accepts one connection, reads the upgrade request and answers `answer`.
async fn answer_with(listener: &TcpListener, answer: &str) {
    let (mut stream, _) = listener.accept().await.expect("accept");
    read_request_head(&mut stream).await.expect("read the request");
    stream.write_all(answer.as_bytes()).await.expect("write answer");
}

#[actix_rt::test]
async fn upgrade_sends_headers_and_subprotocols_and_returns_the_picked_one() {
    let (listener, url) = listen().await;
    let mut request = request(&url);
    request.headers = vec![("X-Api-Key".to_owned(), "hunter2".to_owned())];
    request.subprotocols = vec!["v1.feed".to_owned(), "v2.feed".to_owned()];
    let server = accept_upgrade(&listener, "Sec-WebSocket-Protocol: v2.feed\r\n", b"");
    let client = WebSocketTransport::new().connect(request);
    let ((_stream, head), connection) = within(async { tokio::join!(server, client) }).await;
    let connection = connection.expect("connected");
    assert_eq!(connection.protocol.as_deref(), Some("v2.feed"));
    assert!(head.starts_with("GET /feed HTTP/1.1\r\n"), "{head}");
    assert_eq!(header_value(&head, "x-api-key"), Some("hunter2"));
    assert_eq!(header_value(&head, "sec-websocket-protocol"), Some("v1.feed,v2.feed"));
    assert!(header_value(&head, "user-agent").is_some_and(|agent| agent.starts_with("feedvisor/")));
}

#[actix_rt::test]
async fn a_subprotocol_that_was_not_offered_fails_the_connect() {
    for offered in [vec!["v1".to_owned()], Vec::new()] {
        let (listener, url) = listen().await;
        let mut request = request(&url);
        request.subprotocols = offered.clone();
        let server = accept_upgrade(&listener, "Sec-WebSocket-Protocol: evil\r\n", b"");
        let client = connect_error(request);
        let (_, error) = within(async { tokio::join!(server, client) }).await;
        assert_eq!(
            error,
            TransportError::Handshake(
                "server picked subprotocol \"evil\" which was not offered".to_owned()
            ),
            "offered {offered:?}"
        );
    }
}

#[actix_rt::test]
async fn an_extension_that_was_not_offered_fails_the_connect() {
    let (listener, url) = listen().await;
    let server =
        accept_upgrade(&listener, "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", b"");
    let (_, error) = within(async { tokio::join!(server, connect_error(request(&url))) }).await;
    assert_eq!(
        error,
        TransportError::Handshake(
            "server answered extension \"x-webkit-deflate-frame\" which was not offered".to_owned()
        )
    );
}

#[actix_rt::test]
async fn a_rejected_upgrade_gives_the_status_and_retry_after() {
    let cases = [
        ("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", 401, None),
        (
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
            503,
            Some(Duration::from_secs(7)),
        ),
    ];
    for (answer, status, retry_after) in cases {
        let (listener, url) = listen().await;
        let server = answer_with(&listener, answer);
        let client = connect_error(request(&url));
        let (_, error) = within(async { tokio::join!(server, client) }).await;
        assert_eq!(error, TransportError::HandshakeStatus { status, retry_after });
    }
}

#[actix_rt::test]
async fn a_closed_port_is_refused() {
    let (listener, url) = listen().await;
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = within(connect_error(request(&url))).await;
    assert_eq!(error, TransportError::Refused { addr: addr.to_string() });
}

#[actix_rt::test]
async fn a_server_that_never_answers_times_out_within_the_handshake_timeout() {
    let (listener, url) = listen().await;
    let mut request = request(&url);
    request.handshake_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let server = async {
        let (mut stream, _) = listener.accept().await.expect("accept");
        read_request_head(&mut stream).await.expect("read the request");
        stream // held open, never answered, until the client gave up
    };
    let (_stream, error) = within(async { tokio::join!(server, connect_error(request)) }).await;
    let elapsed = started.elapsed();
    assert_eq!(
        error,
        TransportError::Timeout {
            what: format!("connect to {url}"),
            after: Duration::from_millis(300)
        }
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[actix_rt::test]
async fn wss_to_a_server_that_does_not_speak_tls_is_a_tls_error() {
    let (listener, url) = listen().await;
    let url = url.replacen("ws://", "wss://", 1);
    let server = async {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).await.expect("client hello");
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    };
    let (_, error) = within(async { tokio::join!(server, connect_error(request(&url))) }).await;
    assert!(matches!(error, TransportError::Tls(_)), "{error:?}");
}

#[actix_rt::test]
async fn an_unknown_host_is_a_dns_error() {
    let error = within(connect_error(request("ws://feedvisor-test.invalid/feed"))).await;
    assert!(
        matches!(&error, TransportError::Dns { host, .. } if host == "feedvisor-test.invalid"),
        "{error:?}"
    );
}

#[actix_rt::test]
async fn an_unreadable_ca_file_is_a_tls_error_naming_it() {
    let mut request = request("wss://127.0.0.1:9/feed");
    request.tls.ca_file = Some("/nonexistent/feedvisor-ca.pem".into());
    let error = within(connect_error(request)).await;
    assert!(
        matches!(&error, TransportError::Tls(message) if message.contains("/nonexistent/feedvisor-ca.pem")),
        "{error:?}"
    );
}

#[actix_rt::test]
async fn bad_requests_are_refused_before_connecting_and_never_show_secrets() {
    let mut bad_value = request("ws://127.0.0.1:9/feed?token=sekrit");
    bad_value.headers = vec![("Authorization".to_owned(), "Bearer hunter2\n".to_owned())];
    let error = within(connect_error(bad_value)).await;
    let shown = format!("{error} {error:?}");
    assert!(matches!(error, TransportError::InvalidUrl { .. }), "{shown}");
    assert!(shown.contains("authorization"), "names the header: {shown}");
    assert!(!shown.contains("hunter2") && !shown.contains("sekrit"), "{shown}");

    let mut bad_subprotocol = request("ws://127.0.0.1:9/feed");
    bad_subprotocol.subprotocols = vec!["two words".to_owned()];
    assert!(matches!(
        within(connect_error(bad_subprotocol)).await,
        TransportError::InvalidUrl { .. }
    ));

    for url in ["http://127.0.0.1:9/feed", "ws://user:hunter2@127.0.0.1:9/feed"] {
        let error = within(connect_error(request(url))).await;
        assert!(matches!(error, TransportError::InvalidUrl { .. }), "{url}: {error:?}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}

#[actix_rt::test]
async fn more_than_100_connections_from_one_thread_do_not_wait_for_a_free_slot() {
    // awc's connector allows 100 connections per client by default: the 101st
    // waited for a slot until its handshake timed out.
    let (listener, url) = listen().await;
    let transport = WebSocketTransport::new();
    let mut open = Vec::new();
    within(async {
        for i in 0..105 {
            let server = accept_upgrade(&listener, "", b"");
            let client = transport.connect(request(&url));
            let ((stream, _), connection) = tokio::join!(server, client);
            let connection = connection.unwrap_or_else(|error| panic!("connection {i}: {error}"));
            open.push((stream, connection));
        }
    })
    .await;
    assert_eq!(open.len(), 105);
}
