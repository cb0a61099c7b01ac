//! The WebSocket conformance table: every case of `conformance/cases.rs`
//! played by a hostile upstream (raw handshakes and frames, no library in
//! the way) against a sidecar with one real `ws://` feed per case. Each
//! case's row says how the connection ended, the close code the feed sent,
//! what reached the feed's subscriber and what the feed answered on the
//! way. The table is written to `target/conformance.json` and compared with
//! `tests/conformance/expected.json`; any difference fails, so a change of
//! behaviour shows up in review. `FEEDVISOR_CONFORMANCE_BLESS=1` writes the
//! expectation from the run instead (review it against RFC 6455 before
//! committing it).

mod cases;
mod limits;
mod script;

use std::path::{Path, PathBuf};
use std::time::Instant;

use actix::prelude::*;
use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::{DataKind, FeedMessage, Sidecar, SubscriptionSpec};
use feedvisor_test_support::websocket::{opcode, RawWs};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::support::{Collector, RawServer, DEADLINE};
use script::{Case, Transcript};

/// The text the upstream's second connection sends first: once it arrives,
/// everything the first connection delivered has arrived before it.
const MARKER: &str = "conformance: reconnected";

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Row {
    /// `family/what`.
    case: String,
    /// How the first connection ended: `answered the upstream's close` (the
    /// upstream sent the first close frame), `failed the connection` (the
    /// feed sent the first close), `dropped` (the socket closed without a close frame),
    /// or `refused: <kind>` (the upgrade failed, with its error kind).
    outcome: String,
    /// The code of the feed's close frame; `null` when it sent none or an empty one.
    close_code: Option<u16>,
    /// What the subscriber received from the first connection:
    /// `text N B` / `binary N B`, marked `(altered)` unless byte-exact.
    delivered: Vec<String>,
    /// What the feed sent before its close frame (`pong N B`, marked
    /// `(other payload)` unless it echoes the ping it answers; `ping`,
    /// `text`, `binary`), and `no reply` for each frame the upstream waited for in vain.
    replies: Vec<String>,
    /// Whether the feed connected again afterwards.
    reconnected: bool,
}

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the table of this run goes.
fn table_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let target = if target.is_absolute() { target } else { repo().join(target) };
    target.join("conformance.json")
}

fn expected_path() -> PathBuf {
    repo().join("tests/conformance/expected.json")
}

/// A feed name for case number `index`.
fn feed_name(index: usize) -> String {
    format!("conformance-{index:03}")
}

/// Starts one upstream for `case`: its first connection plays the case and
/// hands over the transcript; every later one sends [`MARKER`] and serves.
async fn upstream(case: &Case) -> (RawServer, oneshot::Receiver<Transcript>) {
    let (sender, receiver) = oneshot::channel();
    let sender = std::cell::RefCell::new(Some(sender));
    let case = case.clone();
    let server = RawServer::start(move |index, socket| {
        let first = if index == 0 { sender.borrow_mut().take() } else { None };
        let case = case.clone();
        async move {
            match first {
                Some(sender) => {
                    let _ = sender.send(script::play(&case, socket).await);
                }
                None => {
                    let Ok(mut peer) = RawWs::accept(socket).await else { return };
                    if peer.send_text(MARKER).await.is_ok() {
                        peer.serve(None).await;
                    }
                }
            }
        }
    })
    .await;
    (server, receiver)
}

/// The row for a case, from what the upstream saw and what was delivered.
fn row(
    case: &Case,
    transcript: &Transcript,
    delivered: &[FeedMessage],
    refused: Option<String>,
) -> Row {
    let close = transcript.frames.iter().find(|(code, _)| *code == opcode::CLOSE);
    let close_code = close
        .and_then(|(_, payload)| payload.get(..2))
        .map(|code| u16::from_be_bytes([code[0], code[1]]));
    let outcome = match (refused, close) {
        (Some(kind), _) => format!("refused: {kind}"),
        (None, Some(_)) if transcript.upstream_closed_first => {
            "answered the upstream's close".to_owned()
        }
        (None, Some(_)) => "failed the connection".to_owned(),
        (None, None) if !transcript.upgraded => "refused: unknown".to_owned(),
        (None, None) => "dropped".to_owned(),
    };
    let delivered = delivered
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let text = message.kind == DataKind::Text;
            let exact = case.messages.get(index).is_some_and(|(is_text, payload)| {
                *is_text == text && payload.as_slice() == message.payload.as_ref()
            });
            let kind = if text { "text" } else { "binary" };
            let mark = if exact { "" } else { " (altered)" };
            format!("{kind} {} B{mark}", message.payload.len())
        })
        .collect();
    let mut pings = case.pings.iter();
    let mut replies: Vec<String> = transcript
        .frames
        .iter()
        .take_while(|(code, _)| *code != opcode::CLOSE)
        .map(|(code, payload)| match *code {
            opcode::PONG => {
                let echoes = pings.next().is_some_and(|ping| ping == payload);
                let mark = if echoes { "" } else { " (other payload)" };
                format!("pong {} B{mark}", payload.len())
            }
            opcode::PING => "ping".to_owned(),
            opcode::TEXT => "text".to_owned(),
            opcode::BINARY => "binary".to_owned(),
            other => format!("opcode {other}"),
        })
        .collect();
    replies.extend(std::iter::repeat_n("no reply".to_owned(), transcript.missing_replies));
    Row { case: case.name.clone(), outcome, close_code, delivered, replies, reconnected: false }
}

/// The error kind of the feed's failed connect attempts, if any.
fn refused_kind(sidecar: &Sidecar, feed: &str) -> Option<String> {
    let prefix = format!(r#"feedvisor_connect_attempts_total{{feed="{feed}",result=""#);
    sidecar.render_metrics().lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (result, value) = rest.split_once("\"} ")?;
        (result != "ok" && value.trim().parse::<f64>().ok()? > 0.0).then(|| result.to_owned())
    })
}

/// Plays one case against feed `feed` and returns its row.
async fn run_case(
    sidecar: &Sidecar,
    case: &Case,
    feed: &str,
    transcript: oneshot::Receiver<Transcript>,
    mut messages: mpsc::UnboundedReceiver<FeedMessage>,
) -> Row {
    let transcript = tokio::time::timeout(DEADLINE, transcript)
        .await
        .unwrap_or_else(|_| panic!("{}: the first connection did not end in time", case.name))
        .unwrap_or_else(|_| panic!("{}: the upstream stopped", case.name));
    let mut delivered = Vec::new();
    let reconnected = loop {
        match tokio::time::timeout(DEADLINE, messages.recv()).await {
            Ok(Some(message)) if message.payload.as_ref() == MARKER.as_bytes() => break true,
            // The second connection's `reconnect` event: not the case's.
            Ok(Some(message)) if message.discontinuity.is_some() => {}
            Ok(Some(message)) => delivered.push(message),
            Ok(None) | Err(_) => break false,
        }
    };
    let refused = if transcript.upgraded { None } else { refused_kind(sidecar, feed) };
    Row { reconnected, ..row(case, &transcript, &delivered, refused) }
}

#[actix::test]
async fn the_websocket_conformance_table_matches_the_pinned_expectation() {
    let cases = cases::all();
    let mut servers = Vec::new();
    let mut feeds = String::from("[http]\nlisten = \"127.0.0.1:0\"\n");
    let mut plays = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let (server, transcript) = upstream(case).await;
        feeds.push_str(&format!(
            "[[feeds]]\nname = \"{}\"\nurl = \"ws://{}/\"\nmax_message_size = \"1MiB\"\n\
             heartbeat = {{ interval = \"0s\" }}\n\
             reconnect = {{ policy = \"fixed\", initial = \"50ms\", jitter = \"none\" }}\n{}\n",
            feed_name(index),
            server.addr,
            case.feed_options
        ));
        servers.push(server);
        plays.push(transcript);
    }
    let config = Config::from_toml_str(
        &feeds,
        Path::new("conformance.toml"),
        &TransportRegistry::with_defaults(),
    )
    .unwrap_or_else(|error| panic!("invalid conformance config: {error}"));
    let mut builder = Sidecar::builder(config).without_http();
    let mut inboxes = Vec::new();
    for index in 0..cases.len() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let feed = feed_name(index);
        let spec = SubscriptionSpec::new(format!("{feed}-subscriber"), [feed.as_str()]);
        builder = builder.subscriber(spec, Collector(sender).start().recipient());
        inboxes.push(receiver);
    }
    let started = Instant::now();
    let sidecar = builder.start().await.expect("sidecar started");

    let rows = futures_util::future::join_all(
        cases.iter().zip(plays).zip(inboxes).enumerate().map(|(index, ((case, play), inbox))| {
            let sidecar = &sidecar;
            async move { run_case(sidecar, case, &feed_name(index), play, inbox).await }
        }),
    )
    .await;
    let elapsed = started.elapsed();
    sidecar.stop().await;
    for server in servers {
        server.stop().await;
    }

    let table = serde_json::to_string_pretty(&rows).expect("rows serialise") + "\n";
    let path = table_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
    }
    std::fs::write(&path, &table)
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    eprintln!("{} conformance cases in {elapsed:?}; table in {}", rows.len(), path.display());
    if std::env::var_os("FEEDVISOR_CONFORMANCE_BLESS").is_some() {
        std::fs::write(expected_path(), &table).expect("write the expectation");
        return;
    }
    let expected_text = std::fs::read_to_string(expected_path())
        .unwrap_or_else(|error| panic!("read {}: {error}", expected_path().display()));
    let expected: Vec<Row> =
        serde_json::from_str(&expected_text).expect("expected.json is a table");
    let mut differences = Vec::new();
    for row in &rows {
        match expected.iter().find(|pinned| pinned.case == row.case) {
            None => differences.push(format!("{}: not in expected.json; got {row:?}", row.case)),
            Some(pinned) if pinned != row => differences
                .push(format!("{}:\n  expected {pinned:?}\n  got      {row:?}", row.case)),
            Some(_) => {}
        }
    }
    for pinned in &expected {
        if !rows.iter().any(|row| row.case == pinned.case) {
            differences.push(format!("{}: pinned but no longer played", pinned.case));
        }
    }
    assert!(
        differences.is_empty(),
        "the conformance table differs from tests/conformance/expected.json (this run's is {}):\n{}",
        path.display(),
        differences.join("\n")
    );
}
