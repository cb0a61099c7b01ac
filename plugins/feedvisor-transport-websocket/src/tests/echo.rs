//! Interoperability with a real server: an actix-web-actors echo server on loopback.

use actix::{Actor, StreamHandler};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use bytes::Bytes;
use feedvisor_transport_api::{CloseFrame, DataFrame, Event, Outbound, Transport};
use futures_util::StreamExt;

use super::*;
use crate::WebSocketTransport;

/// Frames up to this size pass both ways in this test.
const FRAME_SIZE: usize = 1 << 20;

/// Echoes text and binary messages and answers close frames.
struct Echo;

impl Actor for Echo {
    type Context = ws::WebsocketContext<Self>;
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Echo {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Text(text)) => ctx.text(text),
            Ok(ws::Message::Binary(bytes)) => ctx.binary(bytes),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Close(reason)) => ctx.close(reason),
            _ => {}
        }
    }
}

async fn echo(
    request: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    ws::WsResponseBuilder::new(Echo, &request, stream)
        .protocols(&["echo.v1"])
        .frame_size(FRAME_SIZE)
        .start()
}

#[actix_rt::test]
async fn messages_round_trip_through_an_actix_web_echo_server() {
    let server = HttpServer::new(|| App::new().route("/echo", web::get().to(echo)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind loopback");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let mut request = request(&format!("ws://{addr}/echo"));
    request.subprotocols = vec!["echo.v0".to_owned(), "echo.v1".to_owned()];
    request.max_frame_size = FRAME_SIZE;
    let large: Bytes = (0..200_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>().into();

    within(async {
        let mut connection = WebSocketTransport::new().connect(request).await.expect("connected");
        assert_eq!(connection.protocol.as_deref(), Some("echo.v1"));
        let sent = [
            Outbound::text("hello, feedvisor"),
            Outbound::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            Outbound::Ping(Bytes::from_static(b"ping")),
            Outbound::Binary(large.clone()),
            Outbound::Close(Some(CloseFrame::new(1000, "bye"))),
        ];
        for message in sent {
            connection.outbound.send(message).expect("queued");
        }
        let mut events = Vec::new();
        while let Some(batch) = connection.inbound.next().await {
            events.extend(batch.expect("no error"));
        }
        assert_eq!(
            events,
            vec![
                Event::Data(DataFrame::text("hello, feedvisor")),
                Event::Data(DataFrame::binary(Bytes::from_static(&[0, 1, 2, 255]))),
                Event::Pong(Bytes::from_static(b"ping")),
                Event::Data(DataFrame::binary(large)),
                Event::Close(Some(CloseFrame::new(1000, "bye"))),
            ]
        );
    })
    .await;
    handle.stop(true).await;
}
