//! Connect attempts that fail, and connections that end at once.

use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::*;

#[actix_rt::test]
async fn a_closed_port_is_refused() {
    let (listener, url) = listen().await;
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let result = within(TcpTransport::new().connect(request(&url))).await;
    match result {
        Err(error) => assert_eq!(error, TransportError::Refused { addr: addr.to_string() }),
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[actix_rt::test]
async fn localhost_is_resolved_and_every_address_tried() {
    // localhost may resolve to ::1 first, where nothing listens.
    let (listener, url) = listen().await;
    let url = url.replace("127.0.0.1", "localhost");
    let server = async { listener.accept().await.expect("accept").0 };
    let (_stream, connection) =
        within(async { tokio::join!(server, TcpTransport::new().connect(request(&url))) }).await;
    let connection = connection.expect("connected");
    assert_eq!(connection.protocol, None);
}

#[actix_rt::test]
async fn a_server_that_accepts_and_closes_ends_the_connection_with_an_io_error() {
    within(async {
        let (stream, mut connection) = open(|_| {}).await;
        drop(stream);
        let (events, error) = read_to_end(&mut connection).await;
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(error, Some(TransportError::Io("connection closed by peer".to_owned())));
        assert!(connection.outbound.is_closed(), "nothing can be sent any more");
    })
    .await;
}

#[actix_rt::test]
async fn a_tls_server_that_accepts_and_closes_fails_the_connect_with_a_tls_error() {
    let (listener, url) = listen().await;
    let url = url.replace("tcp://", "tls://");
    let server = async {
        let (mut stream, _) = listener.accept().await.expect("accept");
        // Read the whole ClientHello record, so that the close is not a reset; then hang up.
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).await.expect("record header");
        let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        stream.read_exact(&mut hello).await.expect("client hello");
    };
    let (_, result) =
        within(async { tokio::join!(server, TcpTransport::new().connect(request(&url))) }).await;
    match result {
        Err(TransportError::Tls(message)) => assert!(message.contains("127.0.0.1"), "{message}"),
        Err(other) => panic!("expected a tls error, got {other:?}"),
        Ok(_) => panic!("expected a tls error, got a connection"),
    }
}

#[actix_rt::test]
async fn a_tls_handshake_that_gets_no_answer_times_out_after_the_handshake_timeout() {
    let (listener, url) = listen().await;
    let mut request = request(&url.replace("tcp://", "tls://"));
    request.handshake_timeout = Duration::from_millis(200);
    let server = async {
        let (stream, _) = listener.accept().await.expect("accept");
        stream
    };
    let started = Instant::now();
    let (_stream, result) =
        within(async { tokio::join!(server, TcpTransport::new().connect(request)) }).await;
    let shown = url.replace("tcp://", "tls://");
    match result {
        Err(error) => assert_eq!(
            error,
            TransportError::Timeout {
                what: format!("connect to {shown}"),
                after: Duration::from_millis(200)
            }
        ),
        Ok(_) => panic!("a silent server completed the handshake"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[actix_rt::test]
async fn headers_and_subprotocols_are_ignored() {
    within(async {
        let (_stream, connection) = open(|request| {
            request.headers = vec![("Authorization".to_owned(), "Bearer secret".to_owned())];
            request.subprotocols = vec!["v1".to_owned()];
        })
        .await;
        assert_eq!(connection.protocol, None);
    })
    .await;
}
