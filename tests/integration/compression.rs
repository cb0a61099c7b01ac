//! Compressed feeds run as a user runs them: the `feedvisor` binary from a
//! config file, against third-party peers (Python `websockets` and Node `ws`
//! with permessage-deflate, every parameter both ways) and against a raw TCP
//! upstream whose payloads are gzip, zlib or raw deflate (`decode`).
//!
//! The peers' messages check themselves (each carries the SHA-256 of its
//! body), so every delivered message is verified byte for byte; what we
//! send (`on_open`) comes back in an echo that says whether its frame was
//! compressed.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use base64::Engine;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use sha2::{Digest, Sha256};

use crate::binary::{feedvisor, temp_config};
use crate::support::{http_get, sample, wait_for_line, ChildGuard, DEADLINE};
use crate::tls::admin_addr;

/// Messages each peer sends after its hello (see `tests/peers/ws_deflate_server.py`).
const PEER_MESSAGES: u64 = 40;

/// One peer configuration and the feed pointed at it.
struct Case {
    /// The feed's name, and the peer's name for its server.
    name: String,
    /// The peer's options for this server (`key=value,...`).
    server: String,
    /// Extra TOML lines of the feed.
    feed: String,
    /// What the peer's answer must contain.
    negotiated: Vec<String>,
}

impl Case {
    fn new(name: impl Into<String>, server: impl Into<String>, feed: impl Into<String>) -> Self {
        Case { name: name.into(), server: server.into(), feed: feed.into(), negotiated: Vec::new() }
    }

    fn expecting(mut self, parts: &[&str]) -> Self {
        self.negotiated.extend(parts.iter().map(|part| (*part).to_owned()));
        self.negotiated.push("permessage-deflate".to_owned());
        self
    }
}

/// Tells a peer to start sending, once the sidecar is ready: every feed that
/// must be is open (`/readyz`), so its subscribers were subscribed long before.
async fn go(peer: &mut ChildGuard, addr: SocketAddr) {
    feedvisor_test_support::eventually(DEADLINE, "every required feed open", || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let stdin = peer.child.stdin.as_mut().expect("stdin piped");
    stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("the peer reads its stdin");
}

/// Starts a peer program with one server per case; returns it and each case's port.
fn start_peer(program: &str, script: &str, cases: &[Case]) -> (ChildGuard, HashMap<String, u16>) {
    let mut command = Command::new(program);
    command.arg(script);
    for case in cases {
        command.arg(format!("{}:{}", case.name, case.server));
    }
    let mut peer = ChildGuard::spawn(&mut command);
    let stderr = peer.stderr_lines();
    let stdout = peer.stdout_lines();
    let mut ports = HashMap::new();
    while ports.len() < cases.len() {
        let line = stdout.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            let errors: Vec<String> = stderr.try_iter().collect();
            panic!(
                "the {program} peer did not start (.ci/run installs Python websockets and \
                 `npm ci --prefix tests/peers`): {}",
                errors.join("\n")
            )
        });
        let (name, port) = line.split_once(' ').expect("NAME PORT");
        ports.insert(name.to_owned(), port.trim().parse().expect("a port"));
    }
    (peer, ports)
}

/// The two messages each feed sends on open: one compressible and large, one small.
fn on_open(name: &str) -> [String; 2] {
    let pad = format!("{name} wants ticks ").repeat(300);
    [format!(r#"{{"op":"subscribe","feed":"{name}","pad":"{pad}"}}"#), format!("hi {name}")]
}

/// A config with one feed per case, all printed by the stdout sink.
fn config(cases: &[Case], ports: &HashMap<String, u16>) -> String {
    let mut text = String::from("[http]\nlisten = \"127.0.0.1:0\"\n\n");
    for case in cases {
        let [large, small] = on_open(&case.name);
        text.push_str(&format!(
            "[[feeds]]\nname = \"{name}\"\nurl = \"ws://127.0.0.1:{port}/\"\n\
             on_open = ['{large}', '{small}']\n{extra}\n\n",
            name = case.name,
            port = ports[&case.name],
            extra = case.feed,
        ));
    }
    text.push_str("[[subscribers]]\nname = \"print\"\nfeeds = [\"*\"]\nsink = \"stdout\"\n");
    text
}

/// What one feed delivered so far.
#[derive(Default)]
struct Seen {
    negotiated: Option<String>,
    messages: u64,
    echoes: Vec<(String, bool)>,
}

/// Reads the sidecar's stdout until every case's feed delivered its hello,
/// every message (each checked against its SHA-256) and both echoes.
fn check_deliveries(lines: &std::sync::mpsc::Receiver<String>, cases: &[Case]) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let done = |seen: &HashMap<String, Seen>| {
        cases.iter().all(|case| {
            seen.get(&case.name).is_some_and(|s| s.messages == PEER_MESSAGES && s.echoes.len() == 2)
        })
    };
    while !done(&seen) {
        let line = lines.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            let counts: Vec<String> = cases
                .iter()
                .map(|case| {
                    let s = seen.get(&case.name);
                    let (messages, echoes) = s.map_or((0, 0), |s| (s.messages, s.echoes.len()));
                    format!("{}: {messages} messages, {echoes} echoes", case.name)
                })
                .collect();
            panic!("deliveries stopped: {counts:#?}")
        });
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let feed = value["feed"].as_str().expect("a feed").to_owned();
        let payload = value["payload"].as_str().expect("a payload");
        let entry = seen.entry(feed.clone()).or_default();
        if value["kind"] == "binary" {
            let bytes = base64::engine::general_purpose::STANDARD.decode(payload).expect("base64");
            let (sha, body) = bytes.split_at(32);
            assert_eq!(Sha256::digest(body).as_slice(), sha, "{feed}: a binary message changed");
            entry.messages += 1;
            continue;
        }
        let message: serde_json::Value = serde_json::from_str(payload).expect("JSON text");
        if let Some(negotiated) = message["negotiated"].as_str() {
            entry.negotiated = Some(negotiated.to_owned());
        } else if let Some(echo) = message["echo"].as_str() {
            entry.echoes.push((echo.to_owned(), message["compressed"] == true));
        } else {
            let body = message["body"].as_str().expect("a body");
            let sha = format!("{:x}", Sha256::digest(body.as_bytes()));
            assert_eq!(message["sha"], sha.as_str(), "{feed}: message {} changed", message["seq"]);
            entry.messages += 1;
        }
    }
    for case in cases {
        let seen = &seen[&case.name];
        let negotiated = seen.negotiated.as_deref().unwrap_or("");
        for part in &case.negotiated {
            assert!(negotiated.contains(part.as_str()), "{}: answered {negotiated:?}", case.name);
        }
        let mut echoes = seen.echoes.clone();
        echoes.sort();
        let mut sent: Vec<(String, bool)> =
            on_open(&case.name).into_iter().map(|text| (text, true)).collect();
        sent.sort();
        assert_eq!(echoes, sent, "{}: what we sent came back changed or uncompressed", case.name);
    }
}

async fn metrics(addr: SocketAddr) -> String {
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    text
}

fn python_cases() -> Vec<Case> {
    let mut cases = vec![
        Case::new("defaults", "", "").expecting(&[]),
        Case::new("required", "require=1", "").expecting(&[]),
        Case::new("server_resets", "server_no_context_takeover=1,client_no_context_takeover=1", "")
            .expecting(&["server_no_context_takeover", "client_no_context_takeover"]),
        Case::new(
            "we_reset",
            "",
            "client_no_context_takeover = true\nserver_no_context_takeover = true",
        )
        .expecting(&["server_no_context_takeover", "client_no_context_takeover"]),
    ];
    for bits in 9..=15 {
        let both =
            [format!("server_max_window_bits={bits}"), format!("client_max_window_bits={bits}")];
        let both: Vec<&str> = both.iter().map(String::as_str).collect();
        cases.push(
            Case::new(
                format!("server_asks_{bits}"),
                format!("server_max_window_bits={bits},client_max_window_bits={bits}"),
                "",
            )
            .expecting(&both),
        );
        cases.push(
            Case::new(
                format!("we_ask_{bits}"),
                "",
                format!("server_max_window_bits = {bits}\nclient_max_window_bits = {bits}"),
            )
            .expecting(&both),
        );
    }
    cases
}

#[test]
fn python_websockets_with_every_deflate_parameter_both_ways_delivers_byte_exact() {
    let cases = python_cases();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_deflate_server.py");
    let (mut peer, ports) = start_peer("python3", script, &cases);
    // A feed that offers nothing to the server that requires deflate is refused.
    let refused = format!(
        "[[feeds]]\nname = \"refused\"\nurl = \"ws://127.0.0.1:{}/\"\ncompression = \"off\"\nrequired = false\n\n",
        ports["required"]
    );
    let path = temp_config("python-deflate.toml", &(refused + &config(&cases, &ports)));
    let mut sidecar = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&path));
    let (stdout, stderr) = (sidecar.stdout_lines(), sidecar.stderr_lines());
    let addr = admin_addr(&stderr);
    actix_rt::System::new().block_on(go(&mut peer, addr));
    check_deliveries(&stdout, &cases);
    actix_rt::System::new().block_on(async move {
        let text = metrics(addr).await;
        for case in &cases {
            let feed = format!(r#"feed="{}""#, case.name);
            let wire = sample(&text, "feedvisor_wire_bytes_received_total", &feed).expect("wire");
            let payload = sample(&text, "feedvisor_bytes_received_total", &feed).expect("bytes");
            assert!(wire < payload / 2.0, "{}: {wire} wire bytes for {payload}", case.name);
            let corrupt = format!(r#"feed="{}",reason="corrupt""#, case.name);
            assert_eq!(sample(&text, "feedvisor_inflate_errors_total", &corrupt), Some(0.0));
        }
        let (status, refused) = http_get(addr, "/feeds/refused").await;
        assert_eq!(status, 200);
        assert!(refused.contains("403"), "{refused}");
    });
    drop(peer);
}

#[test]
fn node_ws_with_per_message_deflate_delivers_byte_exact() {
    let cases = vec![
        Case::new("node_defaults", "", "").expecting(&[]),
        Case::new(
            "node_limited",
            "serverMaxWindowBits=10,clientMaxWindowBits=11,serverNoContextTakeover=1,clientNoContextTakeover=1",
            "",
        )
        .expecting(&[
            "server_max_window_bits=10",
            "client_max_window_bits=11",
            "server_no_context_takeover",
            "client_no_context_takeover",
        ]),
        Case::new("node_we_ask", "", "server_max_window_bits = 9\nclient_max_window_bits = 9")
            .expecting(&["server_max_window_bits=9", "client_max_window_bits=9"]),
    ];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_deflate_server.js");
    let (mut peer, ports) = start_peer("node", script, &cases);
    let path = temp_config("node-deflate.toml", &config(&cases, &ports));
    let mut sidecar = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&path));
    let (stdout, stderr) = (sidecar.stdout_lines(), sidecar.stderr_lines());
    actix_rt::System::new().block_on(go(&mut peer, admin_addr(&stderr)));
    check_deliveries(&stdout, &cases);
    drop(peer);
}

/// Compresses a payload one way.
type Encode = fn(&[u8]) -> Vec<u8>;

/// Payloads for a `decode` feed: a message, a bomb, a corrupt one, a message.
fn encoded_payloads(encode: Encode) -> Vec<Vec<u8>> {
    vec![
        encode(br#"{"topic":"first","n":1}"#),
        encode(&vec![0u8; 16 << 20]),
        b"\x1f\x8b\x08\x00 this is not what it claims".to_vec(),
        encode(br#"{"topic":"last","n":2}"#),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn deflate_raw(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

/// A TCP upstream that sends `payloads`, length-prefixed, to its first client,
/// then holds the connection until the client goes.
fn tcp_upstream(payloads: Vec<Vec<u8>>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    let thread = std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else { return };
        for payload in payloads {
            let length = u32::try_from(payload.len()).expect("small").to_be_bytes();
            if socket.write_all(&length).and_then(|()| socket.write_all(&payload)).is_err() {
                return;
            }
        }
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut socket, &mut rest);
    });
    (addr, thread)
}

#[test]
fn tcp_feeds_decode_gzip_zlib_and_raw_deflate_and_drop_bombs_and_garbage() {
    let formats: [(&str, Encode); 3] =
        [("gzip", gzip), ("zlib", zlib), ("deflate-raw", deflate_raw)];
    let mut config = String::from("[http]\nlisten = \"127.0.0.1:0\"\n\n");
    let mut upstreams = Vec::new();
    for (decode, encode) in formats {
        let (addr, thread) = tcp_upstream(encoded_payloads(encode));
        upstreams.push(thread);
        config.push_str(&format!(
            "[[feeds]]\nname = \"{decode}\"\nurl = \"tcp://{addr}\"\nframing = \"length_prefixed\"\n\
             decode = \"{decode}\"\ntopic = \"/topic\"\nmax_message_size = \"1MiB\"\n\
             heartbeat = {{ interval = \"0s\" }}\n\n"
        ));
    }
    config.push_str("[[subscribers]]\nname = \"print\"\nfeeds = [\"*\"]\nsink = \"stdout\"\n");
    let path = temp_config("decode.toml", &config);
    let mut sidecar = ChildGuard::spawn(feedvisor().arg("run").arg("--config").arg(&path));
    let (stdout, stderr) = (sidecar.stdout_lines(), sidecar.stderr_lines());
    let addr = admin_addr(&stderr);
    let mut delivered: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    while delivered.values().map(Vec::len).sum::<usize>() < 6 {
        let line = wait_for_line(&stdout, |_| true);
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        delivered.entry(value["feed"].as_str().expect("feed").to_owned()).or_default().push(value);
    }
    for (decode, _) in formats {
        let messages = &delivered[decode];
        let topics: Vec<&str> = messages.iter().filter_map(|m| m["topic"].as_str()).collect();
        assert_eq!(topics, ["first", "last"], "{decode}: the bomb and the garbage are dropped");
        assert_eq!(messages[0]["kind"], "text", "{decode}: inflated UTF-8 is text");
        assert_eq!(messages[0]["payload"], r#"{"topic":"first","n":1}"#);
    }
    actix_rt::System::new().block_on(async move {
        let text = metrics(addr).await;
        for (decode, _) in formats {
            let too_large = format!(r#"feed="{decode}",reason="too_large""#);
            assert_eq!(sample(&text, "feedvisor_inflate_errors_total", &too_large), Some(1.0));
            let corrupt = format!(r#"feed="{decode}",reason="corrupt""#);
            let truncated = format!(r#"feed="{decode}",reason="truncated""#);
            let garbage = sample(&text, "feedvisor_inflate_errors_total", &corrupt).unwrap_or(0.0)
                + sample(&text, "feedvisor_inflate_errors_total", &truncated).unwrap_or(0.0);
            assert_eq!(garbage, 1.0, "{decode}: the garbage payload counted once");
            let feed = format!(r#"feed="{decode}""#);
            let wire = sample(&text, "feedvisor_wire_bytes_received_total", &feed).expect("wire");
            assert!(wire > 16_000.0, "{decode}: the bomb's compressed bytes count on the wire");
        }
        let (status, feeds) = http_get(addr, "/feeds").await;
        assert_eq!(status, 200);
        assert_eq!(feeds.matches(r#""state":"open""#).count(), 3, "{feeds}");
    });
    drop(sidecar);
    for upstream in upstreams {
        upstream.join().expect("upstream thread");
    }
}
