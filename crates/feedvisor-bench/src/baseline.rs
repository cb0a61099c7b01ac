//! The baselines the sidecar is measured against: clients that someone
//! could write by hand instead of running feedvisor.
//!
//! - B1, the yardstick: a bare awc client, one `Framed` read loop per
//!   connection on the bench's arbiter; no actors, no metrics. It has the
//!   sidecar's connection settings: the same awc connector (no connection
//!   limit), plain `ws://`, the same frame size limit (1 MiB).
//! - B0, for context: tokio-tungstenite with an 8 KiB read buffer (its
//!   default of 128 KiB costs memory per connection that a sidecar with
//!   thousands of feeds cannot pay), one read loop per connection.
//!
//! Both count every text or binary message and read the stamp of those
//! that carry one, exactly as the sidecar's bench subscriber does.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::scenario::{BenchError, SystemKind};
use crate::tally::Tally;

/// The sidecar's default largest message, used by B1 as its frame limit.
const MAX_FRAME_SIZE: usize = 1024 * 1024;

/// B0's read buffer.
pub const B0_READ_BUFFER: usize = 8 * 1024;

/// The read loops of one baseline run.
pub struct BaselineClient {
    loops: Vec<actix_rt::task::JoinHandle<Result<(), BenchError>>>,
}

impl BaselineClient {
    /// Opens `conns` connections to `addr` with B1 or B0 and starts reading.
    /// Returns once every connection is open.
    pub async fn connect(
        system: SystemKind,
        addr: SocketAddr,
        conns: usize,
        tally: &Rc<RefCell<Tally>>,
    ) -> Result<BaselineClient, BenchError> {
        let url = format!("ws://{addr}/");
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(0))
            .disable_timeout()
            .finish();
        let mut connects = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (url, client, tally) = (url.clone(), client.clone(), tally.clone());
            let (opened, open) = tokio::sync::oneshot::channel();
            let read_loop = actix_rt::spawn(async move {
                match system {
                    SystemKind::B0 => read_tungstenite(&url, tally, opened).await,
                    _ => read_awc(&client, &url, tally, opened).await,
                }
            });
            connects.push((open, read_loop));
        }
        let mut loops = Vec::with_capacity(conns);
        let mut failure = None;
        for (open, read_loop) in connects {
            let opened = open
                .await
                .unwrap_or_else(|_| Err("the read loop ended before it connected".to_owned()));
            if let Err(reason) = opened {
                failure.get_or_insert(reason);
            }
            loops.push(read_loop);
        }
        if let Some(reason) = failure {
            for read_loop in &loops {
                read_loop.abort();
            }
            return Err(BenchError::Connect { system, addr, reason });
        }
        Ok(BaselineClient { loops })
    }

    /// Stops the read loops where they are.
    pub fn abort(self) {
        for read_loop in self.loops {
            read_loop.abort();
        }
    }

    /// Waits for the read loops to end (each ends at the blaster's close frame).
    pub async fn finish(self) -> Result<(), BenchError> {
        for read_loop in self.loops {
            match read_loop.await {
                Ok(result) => result?,
                Err(error) => {
                    return Err(BenchError::Blaster(format!("a read loop died: {error}")))
                }
            }
        }
        Ok(())
    }
}

type Opened = tokio::sync::oneshot::Sender<Result<(), String>>;

/// B1: awc's `Framed` stream of frames, read until the close frame.
async fn read_awc(
    client: &awc::Client,
    url: &str,
    tally: Rc<RefCell<Tally>>,
    opened: Opened,
) -> Result<(), BenchError> {
    let connected = client.ws(url).max_frame_size(MAX_FRAME_SIZE).connect().await;
    let mut framed = match connected {
        Ok((_, framed)) => {
            let _ = opened.send(Ok(()));
            framed
        }
        Err(error) => {
            let _ = opened.send(Err(error.to_string()));
            return Ok(());
        }
    };
    while let Some(frame) = framed.next().await {
        let frame = frame.map_err(|error| read_failed(SystemKind::B1, error))?;
        match frame {
            awc::ws::Frame::Text(payload) | awc::ws::Frame::Binary(payload) => {
                let mut tally = tally.borrow_mut();
                tally.observe(&payload);
                tally.handled(1);
            }
            awc::ws::Frame::Ping(payload) => {
                framed
                    .send(awc::ws::Message::Pong(payload))
                    .await
                    .map_err(|error| read_failed(SystemKind::B1, error))?;
            }
            awc::ws::Frame::Close(_) => break,
            awc::ws::Frame::Continuation(_) | awc::ws::Frame::Pong(_) => {}
        }
    }
    Ok(())
}

/// B0: tokio-tungstenite's stream of messages, read until the close frame.
async fn read_tungstenite(
    url: &str,
    tally: Rc<RefCell<Tally>>,
    opened: Opened,
) -> Result<(), BenchError> {
    let config = WebSocketConfig::default()
        .read_buffer_size(B0_READ_BUFFER)
        .max_frame_size(Some(MAX_FRAME_SIZE));
    let connected = async {
        let addr = url.trim_start_matches("ws://").trim_end_matches('/');
        let stream =
            tokio::net::TcpStream::connect(addr).await.map_err(|error| error.to_string())?;
        stream.set_nodelay(true).map_err(|error| error.to_string())?;
        tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(|error| error.to_string())
    };
    let mut socket = match connected.await {
        Ok((socket, _)) => {
            let _ = opened.send(Ok(()));
            socket
        }
        Err(error) => {
            let _ = opened.send(Err(error));
            return Ok(());
        }
    };
    while let Some(message) = socket.next().await {
        match message.map_err(|error| read_failed(SystemKind::B0, error))? {
            Message::Text(text) => {
                let mut tally = tally.borrow_mut();
                tally.observe(text.as_bytes());
                tally.handled(1);
            }
            Message::Binary(payload) => {
                let mut tally = tally.borrow_mut();
                tally.observe(&payload);
                tally.handled(1);
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    Ok(())
}

fn read_failed(system: SystemKind, error: impl std::fmt::Display) -> BenchError {
    BenchError::Read { system, reason: error.to_string() }
}
