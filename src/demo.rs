//! The offline demo: a built-in upstream that emits stock ticks and weather
//! readings over WebSocket, and the config that points the sidecar at it.
//!
//! Each upstream WebSocket session is a `TickSession` actor: with the
//! `/subscribe` sink (`sink/subscribe.rs`), the only users of actix-web-actors.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws::{self, WebsocketContext};
use rand::Rng;
use serde_json::json;

use feedvisor::config::{Config, ConfigError};

/// Which ticks a session emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickKind {
    /// `{"symbol","price","ts"}` on `/stocks`.
    Stocks,
    /// `{"city","temp_c","ts","observed_at"}` on `/weather` (`observed_at`: RFC 3339).
    Weather,
}

const SYMBOLS: [&str; 5] = ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA"];
const CITIES: [&str; 4] = ["Oslo", "Lisbon", "Nairobi", "Osaka"];

/// The ticks of one upstream session.
struct Ticker {
    kind: TickKind,
    /// The last price per symbol (a random walk).
    prices: [f64; SYMBOLS.len()],
}

impl Ticker {
    fn new(kind: TickKind) -> Self {
        Ticker { kind, prices: [189.5, 411.2, 171.8, 186.4, 121.3] }
    }

    fn next_tick(&mut self) -> serde_json::Value {
        let mut rng = rand::rng();
        let now = SystemTime::now();
        let ts = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        match self.kind {
            TickKind::Stocks => {
                let index = rng.random_range(0..SYMBOLS.len());
                let price = &mut self.prices[index];
                *price = (*price * (1.0 + rng.random_range(-0.002..0.002))).max(0.01);
                json!({ "symbol": SYMBOLS[index], "price": (*price * 100.0).round() / 100.0, "ts": ts })
            }
            TickKind::Weather => {
                let index = rng.random_range(0..CITIES.len());
                let temp = 12.0 + 10.0 * rng.random_range(-1.0..1.0f64);
                let observed_at = humantime::format_rfc3339_millis(now).to_string();
                json!({ "city": CITIES[index], "temp_c": (temp * 10.0).round() / 10.0, "ts": ts, "observed_at": observed_at })
            }
        }
    }
}

/// The demo upstream, running.
pub(crate) struct DemoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl DemoUpstream {
    /// Stops the upstream (its sessions end).
    pub(crate) async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn upgrade(
    request: HttpRequest,
    stream: web::Payload,
    settings: web::Data<(TickKind, Duration)>,
) -> Result<HttpResponse, actix_web::Error> {
    let (kind, interval) = **settings;
    let mut ticker = Ticker::new(kind);
    let next_tick = Box::new(move || ticker.next_tick().to_string());
    ws::start(TickSession { interval, next_tick }, &request, stream)
}

/// A demo upstream session: sends the text `next_tick` makes every `interval`.
struct TickSession {
    /// Time between ticks.
    interval: Duration,
    /// Makes the next tick (the demo's random walk).
    next_tick: Box<dyn FnMut() -> String>,
}

impl Actor for TickSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |session, ctx| ctx.text((session.next_tick)()));
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for TickSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}

/// Starts the upstream on `listen` (port 0 picks a free port): `/stocks` and
/// `/weather`, one tick per `interval` on each session.
pub(crate) fn start_upstream(
    listen: SocketAddr,
    interval: Duration,
) -> std::io::Result<DemoUpstream> {
    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::resource("/stocks")
                    .app_data(web::Data::new((TickKind::Stocks, interval)))
                    .route(web::get().to(upgrade)),
            )
            .service(
                web::resource("/weather")
                    .app_data(web::Data::new((TickKind::Weather, interval * 4)))
                    .route(web::get().to(upgrade)),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(DemoUpstream { addr, handle })
}

/// The demo's sidecar config: two feeds on the upstream and a stdout
/// subscriber. Both feeds read their ticks' event time (milliseconds on
/// `stocks`, RFC 3339 on `weather`), so freshness shows from the first run,
/// and turn `stale` after 5 s without a tick.
pub(crate) fn demo_config(upstream: SocketAddr, listen: SocketAddr) -> Result<Config, ConfigError> {
    let text = format!(
        r#"
[http]
listen = "{listen}"

[[feeds]]
name = "stocks"
url = "ws://{upstream}/stocks"
topic = "/symbol"
timestamp = {{ pointer = "/ts", unit = "ms" }}
stale_after = "5s"
heartbeat = {{ interval = "5s", timeout = "2s" }}

[[feeds]]
name = "weather"
url = "ws://{upstream}/weather"
topic = "/city"
timestamp = {{ pointer = "/observed_at", unit = "rfc3339" }}
stale_after = "5s"
heartbeat = {{ interval = "5s", timeout = "2s" }}

[[subscribers]]
name = "print"
feeds = ["*"]
sink = "stdout"
"#
    );
    Config::from_toml_str(
        &text,
        Path::new("<demo>"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
}
