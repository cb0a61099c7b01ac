//! Property test: any TOML that `feedvisor check` accepts loads, and the
//! loaded config serialised back to TOML (as `check` and the status API show
//! it) loads again to an equivalent config.
//!
//! The documents are generated within the config schema: `[http]` with
//! `[http.subscribe]`, `[defaults]`, feeds of every built-in scheme with
//! every field (WebSocket feeds also with credential providers, pacing,
//! generated subscriptions and shards, legs and rotation), `[[hosts]]`,
//! subscribers of every sink and overflow (conflation included), and the
//! process settings, each field present or left out, values in the forms
//! people write (sizes as numbers or `KiB`/`MiB`, durations in `ms`, `s`
//! or `1m 30s`, `${VAR}` in URLs, header values and messages).
//! "Equivalent" is equality, except that secrets (header values, a
//! provider's headers and body, the admin token) read back as the `***`
//! they are shown as; a URL written literally carries no password or query
//! here, since those are shown masked as well.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use toml::{Table, Value};

use super::show::format_duration;
use super::*;
use crate::transports::TransportRegistry;

/// `${VAR}` values the generated documents may use; two hold secrets.
fn env(name: &str) -> Option<String> {
    match name {
        "FEED_URL" => Some("wss://feeds.example.com:8443/ticks?key=k3y".to_owned()),
        "API_KEY" => Some("k3y-value".to_owned()),
        "ADMIN_TOKEN" => Some("t0ken-value".to_owned()),
        "SUBSCRIPTION" => Some(r#"{"op":"subscribe","channel":"trades"}"#.to_owned()),
        _ => None,
    }
}

/// A real CA certificate in PEM (the check parses `tls.ca_file`), made once.
fn ca_pem() -> &'static [u8] {
    static PEM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let certificates = feedvisor_test_support::TestCertificates::generate();
        std::fs::read(certificates.ca_file()).expect("read the test CA")
    })
}

/// A directory holding the CA file that `tls.ca_file` names, removed when
/// the test ends.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("feedvisor-roundtrip-{unique}"));
        std::fs::create_dir_all(&dir).expect("create the config directory");
        std::fs::write(dir.join("ca.pem"), ca_pem()).expect("write the CA file");
        // `credentials.exec` names a program that must exist; it is never run here.
        std::fs::write(dir.join("get-token.sh"), "#!/bin/sh\necho '{}'\n")
            .expect("write the provider");
        ConfigDir(dir)
    }

    fn load(&self, text: &str) -> Result<Config, ConfigError> {
        let origin = self.0.join("feedvisor.toml");
        Config::from_toml_str_with_env(text, &origin, &env, &TransportRegistry::with_defaults())
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config with every secret as it is shown (`***`), for comparing a
/// config with one read back from its serialisation.
fn secrets_as_shown(mut config: Config) -> Config {
    let shown = show::REDACTED;
    if config.http.token.is_some() {
        config.http.token = Some(Secret::new(shown));
    }
    for feed in &mut config.feeds {
        for (_, value) in &mut feed.headers {
            *value = shown.to_owned();
        }
        if let Some(CredentialsConfig { source: CredentialSource::Http(http), .. }) =
            &mut feed.credentials
        {
            for (_, value) in &mut http.headers {
                *value = shown.to_owned();
            }
            if let Some(body) = &mut http.body {
                *body = Secret::new(shown);
            }
        }
    }
    for subscriber in &mut config.subscribers {
        if let SinkConfig::Webhook(webhook) = &mut subscriber.sink {
            for (_, value) in &mut webhook.headers {
                *value = Secret::new(shown);
            }
        }
    }
    config
}

fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn strings(texts: Vec<String>) -> Value {
    Value::Array(texts.into_iter().map(Value::String).collect())
}

/// Sets `key` when the generated value is present.
fn set(table: &mut Table, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        table.insert(key.to_owned(), value);
    }
}

/// A duration of `millis` as people write it: `1500ms`, or humantime's
/// form (`1s 500ms`, `1m 30s`).
fn written_duration(millis: u64) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(string(format!("{millis}ms"))),
        Just(string(format_duration(Duration::from_millis(millis)))),
    ]
}

fn duration(range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Value> {
    range.prop_flat_map(written_duration)
}

/// A size: a plain number of bytes, or a count of KiB or MiB.
fn size(max_mib: u64) -> impl Strategy<Value = Value> {
    prop_oneof![
        (1..=max_mib << 20).prop_map(|bytes| Value::Integer(bytes as i64)),
        (1..=max_mib << 10).prop_map(|kib| string(format!("{kib}KiB"))),
        (1..=max_mib).prop_map(|mib| string(format!("{mib}MiB"))),
    ]
}

/// A JSON pointer such as `/data/0/symbol`.
fn pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9_~]{1,6}", 1..4).prop_map(|parts| {
        parts.iter().map(|part| format!("/{}", part.replace('~', "~0"))).collect()
    })
}

/// `reconnect = { ... }`, any subset of its fields, `initial` at most `max`.
fn reconnect() -> BoxedStrategy<Value> {
    (
        proptest::option::of(prop_oneof![Just("exponential"), Just("fixed"), Just("none")]),
        proptest::option::of((1u64..=60_000, 0u64..=600_000).prop_flat_map(|(initial, extra)| {
            (written_duration(initial), written_duration(initial + extra))
        })),
        proptest::option::of(1.0f64..=10.0),
        proptest::option::of(prop_oneof![
            Just("none"),
            Just("full"),
            Just("equal"),
            Just("decorrelated")
        ]),
        proptest::option::of(0u32..=1000),
        proptest::option::of(duration(0..=3_600_000)),
    )
        .prop_map(|(policy, bounds, multiplier, jitter, attempts, reset_after)| {
            let mut table = Table::new();
            set(&mut table, "policy", policy.map(string));
            if let Some((initial, max)) = bounds {
                table.insert("initial".to_owned(), initial);
                table.insert("max".to_owned(), max);
            }
            set(&mut table, "multiplier", multiplier.map(Value::Float));
            set(&mut table, "jitter", jitter.map(string));
            set(&mut table, "max_attempts", attempts.map(|n| Value::Integer(n.into())));
            set(&mut table, "reset_after", reset_after);
            Value::Table(table)
        })
        .boxed()
}

/// `heartbeat = { ... }`: off, protocol pings (when `pings` allows them),
/// or an application message with its reply, matched anywhere or at a pointer.
fn heartbeat(pings: bool) -> BoxedStrategy<Value> {
    let timing = (1u64..=30_000, 1u64..=60_000).prop_flat_map(|(timeout, extra)| {
        (written_duration(timeout + extra), written_duration(timeout))
    });
    let message = prop_oneof![
        Just(r#"{"op":"ping"}"#.to_owned()),
        Just("PING".to_owned()),
        Just("${API_KEY}".to_owned()),
        Just("$${not a reference}".to_owned()),
    ];
    let reply = (
        prop_oneof![Just("pong".to_owned()), Just("PONG".to_owned())],
        proptest::option::of(pointer()),
    );
    let application =
        (timing.clone(), message, reply).prop_map(|((interval, timeout), message, (reply, at))| {
            let mut table = Table::new();
            table.insert("interval".to_owned(), interval);
            table.insert("timeout".to_owned(), timeout);
            table.insert("message".to_owned(), string(message));
            table.insert("reply".to_owned(), string(reply));
            set(&mut table, "reply_pointer", at.map(string));
            Value::Table(table)
        });
    let protocol = timing.prop_map(|(interval, timeout)| {
        let mut table = Table::new();
        table.insert("interval".to_owned(), interval);
        table.insert("timeout".to_owned(), timeout);
        Value::Table(table)
    });
    let off = Just(Value::Table(Table::from_iter([("interval".to_owned(), string("0s"))])));
    if pings {
        prop_oneof![off, protocol, application].boxed()
    } else {
        prop_oneof![off, application].boxed()
    }
}

/// `outbound_queue = { ... }`, any subset of its fields.
fn outbound_queue() -> BoxedStrategy<Value> {
    (
        proptest::option::of(1u32..=100_000),
        proptest::option::of(size(64)),
        proptest::option::of(prop_oneof![Just("drop_oldest"), Just("drop_newest"), Just("reject")]),
    )
        .prop_map(|(messages, bytes, overflow)| {
            let mut table = Table::new();
            set(&mut table, "max_messages", messages.map(|n| Value::Integer(n.into())));
            set(&mut table, "max_bytes", bytes);
            set(&mut table, "overflow", overflow.map(string));
            Value::Table(table)
        })
        .boxed()
}

/// `outbound_rate = { messages, per, count_pings }`.
fn outbound_rate() -> BoxedStrategy<Value> {
    (1u32..=100_000, duration(1..=86_400_000), proptest::option::of(any::<bool>()))
        .prop_map(|(messages, per, count_pings)| {
            let mut table = Table::new();
            table.insert("messages".to_owned(), Value::Integer(messages.into()));
            table.insert("per".to_owned(), per);
            set(&mut table, "count_pings", count_pings.map(Value::Boolean));
            Value::Table(table)
        })
        .boxed()
}

/// `credentials = { ... }`: a program in the config's directory or an HTTP
/// endpoint, with a period or a share of the remaining life, and the rest.
fn credentials() -> BoxedStrategy<Value> {
    let exec = proptest::collection::vec("[a-z0-9-]{1,8}", 0..3).prop_map(|args| {
        let command = std::iter::once("./get-token.sh".to_owned()).chain(args).collect();
        ("exec", strings(command))
    });
    let http = (
        proptest::option::of(prop_oneof![Just("GET"), Just("POST"), Just("PUT")]),
        proptest::collection::btree_map(
            "X-[A-Za-z]{1,8}",
            prop_oneof!["[ -~]{0,16}", Just("${API_KEY}".to_owned())],
            0..3,
        ),
        proptest::option::of(prop_oneof!["[ -~]{0,16}", Just("key=${API_KEY}".to_owned())]),
    )
        .prop_map(|(method, headers, body)| {
            let mut http = Table::new();
            http.insert("url".to_owned(), string("https://auth.example.com/token"));
            set(&mut http, "method", method.map(string));
            let headers = headers.into_iter().map(|(name, value)| (name, string(value)));
            http.insert("headers".to_owned(), Value::Table(headers.collect()));
            set(&mut http, "body", body.map(string));
            ("http", Value::Table(http))
        });
    let refresh = prop_oneof![
        duration(1_000..=86_400_000),
        (1u32..=99).prop_map(|share| string(format!("{share}%"))),
    ];
    let rejected = (
        proptest::option::of(proptest::collection::vec(400u16..=599, 0..3)),
        proptest::option::of(proptest::collection::vec(1000u16..=4999, 0..3)),
        proptest::option::of((proptest::option::of(pointer()), "[a-z ]{1,12}")),
    )
        .prop_map(|(statuses, close_codes, reply)| {
            let codes = |codes: Vec<u16>| {
                Value::Array(codes.into_iter().map(|code| Value::Integer(code.into())).collect())
            };
            let mut table = Table::new();
            set(&mut table, "statuses", statuses.map(codes));
            set(&mut table, "close_codes", close_codes.map(codes));
            set(
                &mut table,
                "reply",
                reply.map(|(pointer, contains)| {
                    let mut reply = Table::new();
                    set(&mut reply, "pointer", pointer.map(string));
                    reply.insert("contains".to_owned(), string(contains));
                    Value::Table(reply)
                }),
            );
            Value::Table(table)
        });
    (
        prop_oneof![exec, http],
        proptest::option::of(refresh),
        proptest::option::of(duration(1..=600_000)),
        proptest::option::of(size(1)),
        proptest::option::of(rejected),
    )
        .prop_map(|((kind, source), refresh, timeout, max_output, rejected)| {
            let mut table = Table::new();
            table.insert(kind.to_owned(), source);
            set(&mut table, "refresh", refresh);
            set(&mut table, "timeout", timeout);
            set(&mut table, "max_output", max_output);
            set(&mut table, "rejected", rejected);
            Value::Table(table)
        })
        .boxed()
}

/// `subscribe = { ... }` and perhaps `max_topics_per_connection`, for a
/// feed in message mode.
fn subscribe() -> BoxedStrategy<Vec<(&'static str, Value)>> {
    let topics = proptest::collection::btree_set("[A-Z]{1,4}-[A-Z]{3,4}", 1..20);
    let ack =
        (pointer(), proptest::option::of(pointer()), proptest::option::of(duration(1..=600_000)))
            .prop_map(|(id, error, timeout)| {
                let mut table = Table::new();
                table.insert("id".to_owned(), string(id));
                set(&mut table, "error", error.map(string));
                set(&mut table, "timeout", timeout);
                Value::Table(table)
            });
    (
        topics,
        proptest::option::of(1u32..=50),
        proptest::option::of(ack),
        proptest::option::of(duration(1..=3_600_000)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(1u32..=20),
    )
        .prop_map(|(topics, per_message, ack, stale_after, replay, max_topics)| {
            let mut table = Table::new();
            let template = match ack {
                Some(_) => r#"{"op":"subscribe","id":{{id}},"args":{{topics}}}"#,
                None => r#"{"op":"subscribe","args":{{topics}}}"#,
            };
            table.insert("template".to_owned(), string(template));
            table.insert("topics".to_owned(), strings(topics.into_iter().collect()));
            set(&mut table, "per_message", per_message.map(|n| Value::Integer(n.into())));
            set(&mut table, "ack", ack);
            set(&mut table, "stale_after", stale_after);
            set(&mut table, "replay_rejected", replay.map(Value::Boolean));
            let mut fields = vec![("subscribe", Value::Table(table))];
            if let Some(max) = max_topics {
                fields.push(("max_topics_per_connection", Value::Integer(max.into())));
            }
            fields
        })
        .boxed()
}

/// Redundant legs: how many (the feed's URL repeated, `urls` in place of
/// `url`), and how copies are told apart and gaps waited for.
fn legs() -> BoxedStrategy<(usize, Vec<(&'static str, Value)>)> {
    let window = prop_oneof![
        duration(1..=600_000),
        (1u32..=1_048_576).prop_map(|count| Value::Integer(count.into())),
    ];
    (
        1usize..=4,
        any::<bool>(),
        proptest::option::of(window),
        proptest::option::of(duration(1..=60_000)),
        proptest::option::of(1u32..=1_000_000),
    )
        .prop_map(|(count, redundancy, window, gap_fill_wait, gap_fill_max)| {
            let mut fields = Vec::new();
            if redundancy {
                fields.push(("redundancy", string("all")));
            }
            fields.extend(window.map(|window| ("dedup_window", window)));
            fields.extend(gap_fill_wait.map(|wait| ("gap_fill_wait", wait)));
            fields.extend(gap_fill_max.map(|max| ("gap_fill_max", Value::Integer(max.into()))));
            (count, fields)
        })
        .boxed()
}

/// What a WebSocket feed may add against venue limits and gaps: a
/// credential provider, pacing, generated subscriptions, legs, rotation.
#[derive(Debug, Clone)]
struct VenueFields {
    credentials: Option<Value>,
    outbound_rate: Option<Value>,
    subscribe: Option<Vec<(&'static str, Value)>>,
    legs: Option<(usize, Vec<(&'static str, Value)>)>,
    rotate_every: Option<Value>,
}

fn venue_fields() -> BoxedStrategy<VenueFields> {
    (
        proptest::option::of(credentials()),
        proptest::option::of(outbound_rate()),
        proptest::option::of(subscribe()),
        proptest::option::of(legs()),
        proptest::option::of(prop_oneof![Just(string("0s")), duration(1_000..=86_400_000)]),
    )
        .prop_map(|(credentials, outbound_rate, subscribe, legs, rotate_every)| VenueFields {
            credentials,
            outbound_rate,
            subscribe,
            legs,
            rotate_every,
        })
        .boxed()
}

impl VenueFields {
    /// Adds the fields to `table`, a feed whose URL is `url`: in message
    /// mode (the fields need it), without what its `sequence` rules out.
    fn add_to(self, table: &mut Table, url: &str) {
        let sequenced = table.contains_key("sequence");
        set(table, "credentials", self.credentials);
        set(table, "outbound_rate", self.outbound_rate);
        let message_mode =
            self.subscribe.is_some() || self.legs.is_some() || self.rotate_every.is_some();
        if message_mode {
            table.insert("mode".to_owned(), string("message"));
            table.remove("chunk_size");
        }
        let legs = self.legs.is_some();
        for (key, value) in self.subscribe.into_iter().flatten() {
            if key != "max_topics_per_connection" || !(sequenced || legs) {
                table.insert(key.to_owned(), value);
            }
        }
        if let Some((count, fields)) = self.legs {
            table.remove("url");
            table.insert("urls".to_owned(), strings(vec![url.to_owned(); count]));
            for (key, value) in fields {
                if key != "dedup_window" || !sequenced {
                    table.insert(key.to_owned(), value);
                }
            }
        }
        set(table, "rotate_every", self.rotate_every);
    }
}

/// `[[hosts]]` entries, each matching a host of its own.
fn hosts() -> BoxedStrategy<Vec<Table>> {
    let entry = (
        proptest::option::of(1u16..=65535),
        proptest::option::of((1u32..=10_000, duration(1..=86_400_000))),
        proptest::option::of(duration(1..=86_400_000)),
        proptest::option::of(duration(1..=86_400_000)),
        proptest::option::of(proptest::collection::vec(400u16..=599, 0..3)),
        proptest::option::of(proptest::collection::vec(1000u16..=4999, 0..3)),
        proptest::option::of(outbound_rate()),
    );
    proptest::collection::vec(entry, 0..3)
        .prop_map(|entries| {
            let codes = |codes: Vec<u16>| {
                Value::Array(codes.into_iter().map(|code| Value::Integer(code.into())).collect())
            };
            entries
                .into_iter()
                .enumerate()
                .map(|(index, (port, budget, cooldown, max_cooldown, statuses, close, rate))| {
                    let mut table = Table::new();
                    let host = format!("Venue-{index}.example.com");
                    let matches = port.map_or(host.clone(), |port| format!("{host}:{port}"));
                    table.insert("match".to_owned(), string(matches));
                    if let Some((connects, per)) = budget {
                        table.insert("connects".to_owned(), Value::Integer(connects.into()));
                        table.insert("per".to_owned(), per);
                    }
                    set(&mut table, "cooldown", cooldown);
                    set(&mut table, "max_cooldown", max_cooldown);
                    set(&mut table, "cooldown_statuses", statuses.map(codes));
                    set(&mut table, "cooldown_close_codes", close.map(codes));
                    set(&mut table, "outbound_rate", rate);
                    table
                })
                .collect()
        })
        .boxed()
}

/// The fields `[defaults]` and a feed share, each present or not.
fn session_fields(pings: bool) -> BoxedStrategy<Table> {
    (
        proptest::option::of(size(256)),
        proptest::option::of(duration(1..=120_000)),
        proptest::option::of(reconnect()),
        proptest::option::of(heartbeat(pings)),
        proptest::option::of(prop_oneof![Just(string("0s")), duration(1..=600_000)]),
        proptest::option::of(outbound_queue()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(max_message_size, handshake, reconnect, heartbeat, idle, queue, required)| {
            let mut table = Table::new();
            set(&mut table, "max_message_size", max_message_size);
            set(&mut table, "handshake_timeout", handshake);
            set(&mut table, "reconnect", reconnect);
            set(&mut table, "heartbeat", heartbeat);
            set(&mut table, "idle_timeout", idle);
            set(&mut table, "outbound_queue", queue);
            set(&mut table, "required", required.map(Value::Boolean));
            table
        })
        .boxed()
}

/// `[defaults]`: the shared fields, a mode and a chunk size. Protocol pings
/// only when no byte-stream feed inherits them (`pings`).
fn defaults(pings: bool) -> BoxedStrategy<Table> {
    (
        session_fields(pings),
        proptest::option::of(prop_oneof![Just("message"), Just("stream")]),
        proptest::option::of(size(16)),
        proptest::option::of(outbound_rate()),
    )
        .prop_map(|(mut table, mode, chunk_size, outbound_rate)| {
            set(&mut table, "mode", mode.map(string));
            set(&mut table, "chunk_size", chunk_size);
            set(&mut table, "outbound_rate", outbound_rate);
            table
        })
        .boxed()
}

/// The transport a generated feed uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    Ws,
    Wss,
    Tcp,
    Tls,
}

impl Scheme {
    fn websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn secure(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Tls)
    }
}

/// A literal URL of `scheme` (no password or query: those are shown
/// masked; its path may write a literal `${` as `$${`), or `${FEED_URL}`
/// for a `wss` feed.
fn feed_url(scheme: Scheme) -> BoxedStrategy<String> {
    let host = prop_oneof![
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        "[a-z]{1,8}\\.example\\.com",
    ];
    let segment = prop_oneof!["[a-zA-Z0-9_.-]{1,8}", Just("$${x}".to_owned())];
    let path = proptest::collection::vec(segment, 0..3).prop_map(|parts| parts.join("/"));
    (host, 1u16..=65535, path, any::<bool>())
        .prop_map(move |(host, port, path, from_env)| match scheme {
            Scheme::Wss if from_env => "${FEED_URL}".to_owned(),
            Scheme::Ws => format!("ws://{host}:{port}/{path}"),
            Scheme::Wss => format!("wss://{host}:{port}/{path}"),
            Scheme::Tcp => format!("tcp://{host}:{port}"),
            Scheme::Tls => format!("tls://{host}:{port}"),
        })
        .boxed()
}

/// One `[[feeds]]` entry named `name`, with the fields its scheme takes.
fn feed(name: String, scheme: Scheme) -> BoxedStrategy<Table> {
    let websocket = scheme.websocket();
    let headers = proptest::collection::btree_map(
        "X-[A-Za-z]{1,8}",
        prop_oneof!["[ -~]{0,16}", Just("Bearer ${API_KEY}".to_owned())],
        0..3,
    );
    let subprotocols = proptest::collection::btree_set("[a-z][a-z0-9.]{0,8}", 0..3);
    let on_open = proptest::collection::vec(
        prop_oneof![
            "[ -~]{1,20}",
            Just("${SUBSCRIPTION}".to_owned()),
            Just("literal $${USD} and $5".to_owned()),
            Just(r#"{"resume_from":{{last_seq}}}"#.to_owned())
        ],
        0..3,
    );
    (
        feed_url(scheme),
        session_fields(websocket),
        proptest::option::of(prop_oneof![Just("message"), Just("stream")]),
        proptest::option::of(size(16)),
        proptest::option::of(pointer()),
        proptest::option::of(pointer()),
        (headers, subprotocols, on_open),
        proptest::option::of(prop_oneof![Just("lines"), Just("length_prefixed")]),
        any::<bool>(),
        proptest::option::of(venue_fields()),
    )
        .prop_map(
            move |(
                url,
                mut table,
                mode,
                chunk_size,
                topic,
                sequence,
                extras,
                framing,
                ca_file,
                venue,
            )| {
                let (headers, subprotocols, on_open) = extras;
                table.insert("name".to_owned(), string(name.clone()));
                table.insert("url".to_owned(), string(url.clone()));
                set(&mut table, "mode", mode.map(string));
                if mode == Some("stream") {
                    set(&mut table, "chunk_size", chunk_size);
                } else if !websocket && mode == Some("message") {
                    set(&mut table, "framing", framing.map(string));
                }
                set(&mut table, "topic", topic.map(string));
                let resumes = sequence.is_some();
                set(&mut table, "sequence", sequence.map(string));
                if websocket {
                    let headers = headers.into_iter().map(|(name, value)| (name, string(value)));
                    table.insert("headers".to_owned(), Value::Table(headers.collect()));
                    table.insert(
                        "subprotocols".to_owned(),
                        strings(subprotocols.into_iter().collect()),
                    );
                }
                let on_open: Vec<String> = on_open
                    .into_iter()
                    .filter(|text| resumes || !text.contains("{{last_seq}}"))
                    .collect();
                if !on_open.is_empty() {
                    table.insert("on_open".to_owned(), strings(on_open));
                }
                if scheme.secure() && ca_file {
                    let tls = Table::from_iter([("ca_file".to_owned(), string("ca.pem"))]);
                    table.insert("tls".to_owned(), Value::Table(tls));
                }
                if let Some(venue) = venue.filter(|_| websocket) {
                    venue.add_to(&mut table, &url);
                }
                table
            },
        )
        .boxed()
}

/// One `[[subscribers]]` entry named `name` of one of the sinks, receiving
/// some of `feeds` by name or by pattern.
fn subscriber(name: String, feeds: Vec<String>) -> BoxedStrategy<Table> {
    let patterns = proptest::sample::subsequence(feeds.clone(), 0..=feeds.len())
        .prop_flat_map(|names| {
            let glob = prop_oneof![
                Just("*".to_owned()),
                Just("feed-*".to_owned()),
                Just("feed-?".to_owned())
            ];
            (Just(names), proptest::option::of(glob))
        })
        .prop_map(|(mut names, glob)| {
            names.extend(glob);
            if names.is_empty() {
                names.push("*".to_owned());
            }
            names
        });
    // An empty list is refused (it would match nothing).
    let topics = proptest::collection::vec("[a-z*?.]{1,8}", 1..3);
    let webhook_headers = proptest::collection::btree_map(
        "X-[A-Za-z]{1,8}",
        prop_oneof!["[ -~]{0,16}", Just("${API_KEY}".to_owned())],
        0..3,
    );
    let sink = prop_oneof![
        Just(None),
        Just(Some(Table::from_iter([("sink".to_owned(), string("stdout"))]))),
        prop_oneof![Just("lines"), Just("per_message")].prop_map(|layout| {
            Some(Table::from_iter([
                ("sink".to_owned(), string("file")),
                ("path".to_owned(), string("out/messages")),
                ("layout".to_owned(), string(layout)),
            ]))
        }),
        proptest::collection::vec("[a-z./-]{1,12}", 1..4).prop_map(|command| {
            Some(Table::from_iter([
                ("sink".to_owned(), string("exec")),
                ("command".to_owned(), strings(command)),
            ]))
        }),
        (
            prop_oneof![Just("http"), Just("https")],
            1u32..=1000,
            1u32..=64,
            duration(1..=120_000),
            webhook_headers,
        )
            .prop_map(|(scheme, batch, in_flight, timeout, headers)| {
                let headers = headers.into_iter().map(|(name, value)| (name, string(value)));
                Some(Table::from_iter([
                    ("sink".to_owned(), string("webhook")),
                    ("url".to_owned(), string(format!("{scheme}://hooks.example.com/in"))),
                    ("batch".to_owned(), Value::Integer(batch.into())),
                    ("max_in_flight".to_owned(), Value::Integer(in_flight.into())),
                    ("timeout".to_owned(), timeout),
                    ("headers".to_owned(), Value::Table(headers.collect())),
                ]))
            }),
    ];
    let overflow = prop_oneof![
        3 => prop_oneof![Just("drop_oldest"), Just("drop_newest"), Just("backpressure")]
            .prop_map(string),
        1 => pointer().prop_map(|pointer| {
            Value::Table(Table::from_iter([("conflate".to_owned(), string(pointer))]))
        }),
    ];
    (
        patterns,
        proptest::option::of(topics),
        sink,
        proptest::option::of(1u32..=1 << 24),
        proptest::option::of(overflow),
    )
        .prop_map(move |(feeds, topics, sink, queue, overflow)| {
            let mut table = sink.unwrap_or_default();
            table.insert("name".to_owned(), string(name.clone()));
            table.insert("feeds".to_owned(), strings(feeds));
            set(&mut table, "topics", topics.map(strings));
            set(&mut table, "queue", queue.map(|n| Value::Integer(n.into())));
            set(&mut table, "overflow", overflow);
            table
        })
        .boxed()
}

/// `[http]` with `[http.subscribe]`, each field present or not.
fn http() -> BoxedStrategy<Table> {
    let subscribe = (
        proptest::option::of(1u32..=10_000),
        proptest::option::of(duration(1..=600_000)),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("*".to_owned()), "https://[a-z]{1,8}\\.example\\.com"],
            0..3,
        )),
        proptest::option::of(1u32..=1 << 16),
        proptest::option::of(prop_oneof![
            Just("drop_oldest").prop_map(string),
            Just("drop_newest").prop_map(string),
            pointer().prop_map(|pointer| {
                Value::Table(Table::from_iter([("conflate".to_owned(), string(pointer))]))
            }),
        ]),
    )
        .prop_map(|(clients, slow, origins, queue, overflow)| {
            let mut table = Table::new();
            set(&mut table, "max_clients", clients.map(|n| Value::Integer(n.into())));
            set(&mut table, "slow_client_timeout", slow);
            set(&mut table, "allowed_origins", origins.map(strings));
            set(&mut table, "queue", queue.map(|n| Value::Integer(n.into())));
            set(&mut table, "overflow", overflow);
            Value::Table(table)
        });
    let listen = prop_oneof![
        (1u16..=65535).prop_map(|port| format!("127.0.0.1:{port}")),
        (1u16..=65535).prop_map(|port| format!("[::1]:{port}")),
        (1u16..=65535).prop_map(|port| format!("0.0.0.0:{port}")),
    ];
    let token = prop_oneof!["[A-Za-z0-9]{1,24}", Just("${ADMIN_TOKEN}".to_owned())];
    (proptest::option::of(listen), proptest::option::of(token), proptest::option::of(subscribe))
        .prop_map(|(listen, token, subscribe)| {
            let mut table = Table::new();
            // A public listen needs a token, or saying so.
            let public = listen.as_deref().is_some_and(|listen| listen.starts_with("0.0.0.0"));
            if public && token.is_none() {
                set(&mut table, "allow_public", Some(Value::Boolean(true)));
            }
            set(&mut table, "listen", listen.map(string));
            set(&mut table, "token", token.map(string));
            set(&mut table, "subscribe", subscribe);
            table
        })
        .boxed()
}

/// A whole document: 0 to 4 feeds, 0 to 3 subscribers of them.
fn document() -> BoxedStrategy<Table> {
    let schemes = proptest::collection::vec(
        prop_oneof![Just(Scheme::Ws), Just(Scheme::Wss), Just(Scheme::Tcp), Just(Scheme::Tls)],
        0..5,
    );
    (schemes, 0usize..4)
        .prop_flat_map(|(schemes, subscribers)| {
            let names: Vec<String> =
                (0..schemes.len()).map(|index| format!("feed-{index}")).collect();
            let websocket_only = schemes.iter().all(|scheme| scheme.websocket());
            let feeds: Vec<_> = names
                .iter()
                .zip(&schemes)
                .map(|(name, scheme)| feed(name.clone(), *scheme))
                .collect();
            let subscribers: Vec<_> = (0..subscribers)
                .map(|index| subscriber(format!("sub-{index}"), names.clone()))
                .collect();
            (
                http(),
                defaults(websocket_only),
                feeds,
                subscribers,
                proptest::option::of(duration(1..=300_000)),
                proptest::option::of(1u32..=256),
                hosts(),
            )
        })
        .prop_map(|(http, defaults, feeds, subscribers, shutdown_timeout, workers, hosts)| {
            let mut document = Table::new();
            document.insert("http".to_owned(), Value::Table(http));
            document.insert("defaults".to_owned(), Value::Table(defaults));
            document.insert(
                "feeds".to_owned(),
                Value::Array(feeds.into_iter().map(Value::Table).collect()),
            );
            document.insert(
                "subscribers".to_owned(),
                Value::Array(subscribers.into_iter().map(Value::Table).collect()),
            );
            set(&mut document, "shutdown_timeout", shutdown_timeout);
            set(&mut document, "workers", workers.map(|n| Value::Integer(n.into())));
            if !hosts.is_empty() {
                let hosts = hosts.into_iter().map(Value::Table).collect();
                document.insert("hosts".to_owned(), Value::Array(hosts));
            }
            document
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What `check` accepts reads back from its own serialisation as the
    /// same config (secrets as shown), and serialises the same way again.
    #[test]
    fn an_accepted_config_reads_back_from_its_serialisation(document in document()) {
        let dir = ConfigDir::new();
        let text = toml::to_string(&document).expect("a generated document serialises");
        // Generated within the schema, so refused only by a rule across
        // fields (`most_generated_documents_are_accepted` bounds how often).
        let first = dir.load(&text);
        prop_assume!(first.is_ok());
        let first = first.expect("checked above");
        let shown = toml::to_string(&first).expect("a loaded config serialises to TOML");
        let second = dir.load(&shown);
        prop_assert!(second.is_ok(), "{shown}\nfrom\n{text}\nrefused: {:?}", second.as_ref().err());
        let second = second.expect("checked above");
        prop_assert_eq!(secrets_as_shown(first), secrets_as_shown(second.clone()));
        prop_assert_eq!(toml::to_string(&second).expect("serialises again"), shown);
    }
}

/// The generator reaches what it is for: most generated documents are
/// accepted, so the property above is not vacuous.
#[test]
fn most_generated_documents_are_accepted() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let dir = ConfigDir::new();
    let mut runner = TestRunner::deterministic();
    let strategy = document();
    let mut accepted = 0;
    let mut refusals = Vec::new();
    for _ in 0..200 {
        let document = strategy.new_tree(&mut runner).expect("a document").current();
        let text = toml::to_string(&document).expect("serialises");
        match dir.load(&text) {
            Ok(_) => accepted += 1,
            Err(error) => refusals.push(error.to_string()),
        }
    }
    assert!(accepted >= 150, "only {accepted} of 200 accepted; refusals: {refusals:#?}");
}
