//! Unit tests of loading: every field, defaults, `${VAR}`, and every error
//! with its path and the key part of its message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use feedvisor_transport_api::{DeliveryMode, Framing};

use super::checks::parse_size;
use super::show::framing_name;
use super::*;
use crate::backoff::{Jitter, PolicyKind};
use crate::transports::TransportRegistry;

/// A valid feed that error tests append one bad line to.
const STOCKS: &str = "[[feeds]]\nname = \"stocks\"\nurl = \"ws://127.0.0.1:8080/ticks\"\n";

fn test_env(name: &str) -> Option<String> {
    match name {
        "STOCKS_KEY" => Some("k3y-value".to_owned()),
        "TOKEN" => Some("t0ken-value".to_owned()),
        "PATH_PART" => Some("path-value".to_owned()),
        "WITH_NEWLINE" => Some("value\r\nInjected: yes".to_owned()),
        _ => None,
    }
}

/// The built-in transports and the in-memory one, as tests run with.
fn transports() -> TransportRegistry {
    TransportRegistry::with_memory()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(text, Path::new("config/test.toml"), &test_env, &transports())
}

/// [`parse_feed_json`] with the test transports.
fn feed_json(
    json: serde_json::Value,
    defaults: &FeedDefaults,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FeedConfig, ConfigError> {
    parse_feed_json(json, defaults, Path::new("."), env, &transports())
}

fn parse_ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|error| panic!("config should be valid:\n{error}"))
}

fn errors_of(text: &str) -> Vec<FieldError> {
    parse(text).expect_err("config should be rejected").errors
}

/// Asserts that some error sits at exactly `path` and mentions `part`.
#[track_caller]
fn assert_error(text: &str, path: &str, part: &str) {
    let errors = errors_of(text);
    assert!(
        errors.iter().any(|error| error.path == path && error.message.contains(part)),
        "expected an error at {path:?} containing {part:?}, got {errors:#?}"
    );
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn full_config_parses_every_field() {
    let text = r#"
        [http]
        listen = "127.0.0.1:9901"

        [defaults]
        mode = "message"
        max_message_size = "2MiB"
        chunk_size = "32KiB"
        handshake_timeout = "5s"

        [[feeds]]
        name = "stocks"
        url = "wss://127.0.0.1:8443/ticks"
        mode = "message"
        topic = "/symbol"
        headers = { "X-Api-Key" = "${STOCKS_KEY}", "User-Agent" = "feedvisor" }
        subprotocols = ["v1", "v2"]
        on_open = ['{"op":"subscribe","symbols":["AAPL"]}']
        max_message_size = "4MiB"
        handshake_timeout = "1m 30s"
        tls = { ca_file = "Cargo.toml" }

        [[subscribers]]
        name = "print"
        feeds = ["stocks", "weather-*"]
        topics = ["AAPL", "MS*"]
        sink = "stdout"
    "#;
    // A wss feed's CA file is read and parsed at load: a real one.
    let certificates = feedvisor_test_support::TestCertificates::generate();
    let ca_file = certificates.ca_file();
    let text = text.replace("Cargo.toml", &ca_file.display().to_string());
    let origin = manifest_dir().join("feedvisor.toml");
    let config = Config::from_toml_str_with_env(&text, &origin, &test_env, &transports())
        .expect("valid config");

    assert_eq!(config.http.listen, "127.0.0.1:9901".parse().expect("address"));
    let feed = &config.feeds[0];
    assert_eq!(feed.name, "stocks");
    assert_eq!(feed.url.as_str(), "wss://127.0.0.1:8443/ticks");
    assert_eq!(feed.mode, DeliveryMode::Message);
    assert_eq!(feed.topic.as_deref(), Some("/symbol"));
    assert_eq!(
        feed.headers,
        vec![
            ("User-Agent".to_owned(), "feedvisor".to_owned()),
            ("X-Api-Key".to_owned(), "k3y-value".to_owned()),
        ]
    );
    assert_eq!(feed.subprotocols, ["v1", "v2"]);
    assert_eq!(feed.on_open, [r#"{"op":"subscribe","symbols":["AAPL"]}"#]);
    assert_eq!(feed.max_message_size, 4 << 20);
    assert_eq!(config.defaults.chunk_size, 32 << 10);
    assert_eq!(feed.handshake_timeout, Duration::from_secs(90));
    assert_eq!(feed.tls.ca_file, Some(ca_file));

    let subscriber = &config.subscribers[0];
    assert_eq!(subscriber.name, "print");
    assert_eq!(subscriber.feeds, ["stocks", "weather-*"]);
    assert_eq!(subscriber.topics, Some(vec!["AAPL".to_owned(), "MS*".to_owned()]));
    assert_eq!(subscriber.sink, SinkConfig::Stdout(StdoutSinkConfig));
}

#[test]
fn empty_file_is_the_default_config() {
    let config = parse_ok("");
    assert_eq!(config, Config::default());
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9900");
    assert!(config.feeds.is_empty());
}

#[test]
fn built_in_defaults_apply_to_a_bare_feed() {
    let feed = parse_ok(STOCKS).feeds.remove(0);
    assert_eq!(feed, FeedConfig::new("stocks", feed.url.clone()));
    assert_eq!(feed.mode, DeliveryMode::Message);
    assert_eq!(feed.max_message_size, 1 << 20);
    let stream = parse_ok(&format!("{STOCKS}mode = \"stream\"\n")).feeds.remove(0);
    assert_eq!(stream.mode, DeliveryMode::Stream { chunk_size: 64 << 10 });
    assert_eq!(feed.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn defaults_section_applies_and_feed_fields_win() {
    let text = r#"
        [defaults]
        mode = "message"
        max_message_size = "2MiB"
        chunk_size = 4096
        handshake_timeout = "3s"

        [[feeds]]
        name = "inherits"
        url = "ws://127.0.0.1:1/a"

        [[feeds]]
        name = "overrides"
        url = "ws://127.0.0.1:1/b"
        max_message_size = "512KiB"
        handshake_timeout = "250ms"

        [[feeds]]
        name = "streams"
        url = "ws://127.0.0.1:1/c"
        mode = "stream"
    "#;
    let config = parse_ok(text);
    let (inherits, overrides) = (&config.feeds[0], &config.feeds[1]);
    assert_eq!(inherits.mode, DeliveryMode::Message);
    assert_eq!(inherits.max_message_size, 2 << 20);
    assert_eq!(config.feeds[2].mode, DeliveryMode::Stream { chunk_size: 4096 });
    assert_eq!(inherits.handshake_timeout, Duration::from_secs(3));
    assert_eq!(overrides.max_message_size, 512 << 10);
    assert_eq!(overrides.handshake_timeout, Duration::from_millis(250));
    assert_eq!(config.defaults.chunk_size, 4096);
}

#[test]
fn env_references_expand_in_url_headers_and_on_open() {
    let text = r#"
        [[feeds]]
        name = "stocks"
        url = "wss://127.0.0.1/ticks?token=${TOKEN}"
        headers = { X-Api-Key = "${STOCKS_KEY}" }
        on_open = ['{"auth":"${TOKEN}","literal":"$${KEEP}"}']
    "#;
    let feed = parse_ok(text).feeds.remove(0);
    assert_eq!(feed.url.query(), Some("token=t0ken-value"));
    assert_eq!(feed.headers, [("X-Api-Key".to_owned(), "k3y-value".to_owned())]);
    assert_eq!(feed.on_open, [r#"{"auth":"t0ken-value","literal":"${KEEP}"}"#]);

    // Neither Debug nor Serialize may show a secret.
    let debug = format!("{feed:?}");
    let json = serde_json::to_string(&feed).expect("serialize");
    for shown in [&debug, &json] {
        assert!(!shown.contains("k3y-value") && !shown.contains("t0ken-value"), "{shown}");
        assert!(shown.contains("${TOKEN}") && shown.contains("***"), "{shown}");
    }
}

#[test]
fn header_values_are_redacted_without_env() {
    let text = format!("{}headers = {{ Authorization = \"Bearer literal\" }}\n", STOCKS);
    let feed = parse_ok(&text).feeds.remove(0);
    let debug = format!("{feed:?}");
    let json = serde_json::to_value(&feed).expect("serialize");
    assert!(!debug.contains("literal"), "{debug}");
    assert_eq!(json["headers"]["Authorization"], "***");
    assert_eq!(json["url"], "ws://127.0.0.1:8080/ticks");
    assert_eq!(json["max_message_size"], "1MiB");
    assert_eq!(json["handshake_timeout"], "10s");
}

#[test]
fn missing_env_var_names_field_and_variable() {
    let text = format!("{STOCKS}headers = {{ X-Api-Key = \"${{NOT_SET}}\" }}\n");
    assert_error(
        &text,
        "feeds[0] (stocks).headers.X-Api-Key",
        "environment variable NOT_SET is not set",
    );
    let text = STOCKS.replace("/ticks", "/${ALSO_NOT_SET}");
    assert_error(&text, "feeds[0] (stocks).url", "ALSO_NOT_SET");
    assert_error(
        &format!("{STOCKS}on_open = ['${{A}}']\n"),
        "feeds[0] (stocks).on_open[0]",
        "A is not set",
    );
}

#[test]
fn header_value_with_line_break_is_rejected_without_showing_it() {
    let text = format!("{STOCKS}headers = {{ X-Api-Key = \"${{WITH_NEWLINE}}\" }}\n");
    let errors = errors_of(&text);
    assert_eq!(errors[0].path, "feeds[0] (stocks).headers.X-Api-Key");
    assert!(errors[0].message.contains("CR or LF"), "{errors:?}");
    assert!(!errors[0].message.contains("Injected"), "{errors:?}");
}

#[test]
fn unknown_field_names_its_path_and_line() {
    let errors = errors_of(&format!("{STOCKS}reconect = true\n"));
    assert_eq!(errors[0].path, "feeds[0] (stocks).reconect");
    assert!(errors[0].message.contains("unknown field `reconect`"), "{errors:?}");
    assert_eq!(errors[0].location.map(|at| at.line), Some(4));
    assert_error("[http]\nport = 1\n", "http.port", "unknown field `port`");
}

#[test]
fn bad_mode_is_a_bad_variant() {
    assert_error(
        &format!("{STOCKS}mode = \"streem\"\n"),
        "feeds[0] (stocks).mode",
        "unknown variant `streem`",
    );
}

#[test]
fn bad_url_scheme_renders_as_one_line() {
    let text = "[[feeds]]\nname = \"weather\"\nurl = \"htp://127.0.0.1/\"\n";
    let origin = Path::new("config/test.toml");
    let production = TransportRegistry::with_defaults();
    let error = Config::from_toml_str_with_env(text, origin, &test_env, &production)
        .expect_err("bad scheme");
    assert_eq!(
        error.to_string(),
        "config/test.toml: feeds[0] (weather).url: unsupported scheme \"htp\": use ws://, wss://, tcp:// or tls://"
    );
    assert_error(
        &STOCKS.replace("ws://127.0.0.1:8080", "not a url"),
        "feeds[0] (stocks).url",
        "invalid URL",
    );
    assert_error(&STOCKS.replace("/ticks", "/ticks#x"), "feeds[0] (stocks).url", "fragment");
}

#[test]
fn memory_scheme_is_accepted_only_where_that_transport_is_registered() {
    let text = "[[feeds]]\nname = \"m\"\nurl = \"memory://ticks\"\n";
    let feed = parse_ok(text).feeds.remove(0);
    assert_eq!(feed.url.scheme(), "memory");
    let production = TransportRegistry::with_defaults();
    let error = Config::from_toml_str(text, Path::new("prod.toml"), &production)
        .expect_err("no memory transport in production");
    assert_eq!(
        error.to_string(),
        "prod.toml: feeds[0] (m).url: unsupported scheme \"memory\": use ws://, wss://, tcp:// or tls://"
    );
    assert_error(
        "[[feeds]]\nname = \"m\"\nurl = \"memory:///\"\n",
        "feeds[0] (m).url",
        "memory://",
    );
}

#[test]
fn a_config_checked_with_other_transports_is_checked_again_with_those_it_runs_with() {
    let config = parse_ok("[[feeds]]\nname = \"m\"\nurl = \"memory://ticks\"\n");
    assert_eq!(config.check_transports("test", &transports()), Ok(()));
    let error = config
        .check_transports("test", &TransportRegistry::with_defaults())
        .expect_err("memory is not served");
    assert_eq!(error.errors[0].path, "feeds[0] (m).url");
    assert!(error.errors[0].message.contains("unsupported scheme \"memory\""), "{error}");
    let tcp = parse_ok("[[feeds]]\nname = \"t\"\nurl = \"tcp://127.0.0.1:7000\"\n");
    assert_eq!(tcp.check_transports("test", &TransportRegistry::with_defaults()), Ok(()));
}

#[test]
fn required_fields_are_reported() {
    assert_error("[[feeds]]\nurl = \"ws://127.0.0.1/\"\n", "feeds[0].name", "required");
    assert_error("[[feeds]]\nname = \"stocks\"\n", "feeds[0] (stocks).url", "required");
    assert_error("[[subscribers]]\nname = \"print\"\n", "subscribers[0] (print).feeds", "required");
}

#[test]
fn duplicate_feed_name_points_at_the_first_use() {
    let text = format!("{STOCKS}{STOCKS}");
    assert_error(
        &text,
        "feeds[1] (stocks).name",
        "duplicate feed name \"stocks\": already used by feeds[0]",
    );
}

#[test]
fn names_must_be_label_safe() {
    let text = STOCKS.replace("\"stocks\"", "\"stock ticks\"");
    assert_error(&text, "feeds[0].name", "contains ' '");
    assert_error(&STOCKS.replace("\"stocks\"", "\"\""), "feeds[0].name", "must not be empty");
    let subscriber = format!("{STOCKS}[[subscribers]]\nname = \"pr/int\"\nfeeds = [\"stocks\"]\n");
    assert_error(&subscriber, "subscribers[0].name", "contains '/'");
}

#[test]
fn bad_duration_and_sizes_name_the_field() {
    assert_error(
        &format!("{STOCKS}handshake_timeout = \"5 parsecs\"\n"),
        "feeds[0] (stocks).handshake_timeout",
        "invalid duration \"5 parsecs\"",
    );
    assert_error(
        &format!("{STOCKS}handshake_timeout = \"0s\"\n"),
        "feeds[0] (stocks).handshake_timeout",
        "greater than 0",
    );
    assert_error(
        &format!("{STOCKS}max_message_size = \"12 bananas\"\n"),
        "feeds[0] (stocks).max_message_size",
        "invalid size \"12 bananas\"",
    );
    assert_error(
        &format!("{STOCKS}max_message_size = \"0\"\n"),
        "feeds[0] (stocks).max_message_size",
        "must be greater than 0",
    );
    assert_error(
        &format!("{STOCKS}max_message_size = \"2GiB\"\n"),
        "feeds[0] (stocks).max_message_size",
        "2GiB is over the limit of 1GiB",
    );
    assert_error("[defaults]\nchunk_size = 0\n", "defaults.chunk_size", "must be greater than 0");
    assert_error(
        &format!("{STOCKS}max_message_size = -1\n"),
        "feeds[0] (stocks).max_message_size",
        "invalid value",
    );
}

#[test]
fn stream_mode_takes_a_bounded_chunk_size() {
    let feed =
        parse_ok(&format!("{STOCKS}mode = \"stream\"\nchunk_size = \"8KiB\"\n")).feeds.remove(0);
    assert_eq!(feed.mode, DeliveryMode::Stream { chunk_size: 8 << 10 });
    assert_error(
        &format!("{STOCKS}mode = \"stream\"\nchunk_size = \"1GiB\"\n"),
        "feeds[0] (stocks).chunk_size",
        "",
    );
}

#[test]
fn byte_stream_feeds_need_a_port_and_take_a_framing() {
    let text =
        "[[feeds]]\nname = \"t\"\nurl = \"tcp://127.0.0.1:7000\"\nframing = \"length_prefixed\"\n";
    let feed = parse_ok(text).feeds.remove(0);
    assert_eq!(feed.framing, Framing::LengthPrefixed);
    let text = "[[feeds]]\nname = \"t\"\nurl = \"tcp://127.0.0.1\"\n";
    assert_error(text, "feeds[0] (t).url", "needs a host and a port");
    assert_error(&format!("{STOCKS}framing = \"lines\"\n"), "feeds[0] (stocks).framing", "ws://");
    let stream = "[[feeds]]\nname = \"t\"\nurl = \"tls://h.example:7000\"\nmode = \"stream\"\nframing = \"lines\"\n";
    assert_error(stream, "feeds[0] (t).framing", "message mode");
    let tcp = "[[feeds]]\nname = \"t\"\nurl = \"tcp://127.0.0.1:7000\"\n";
    assert_eq!(parse_ok(tcp).feeds[0].heartbeat, None, "no protocol pings on TCP by default");
    let defaults = format!("[defaults]\nheartbeat = {{ interval = \"20s\" }}\n{tcp}");
    assert_eq!(parse_ok(&defaults).feeds[0].heartbeat, None, "nor from [defaults]");
    assert_error(
        &format!("{tcp}subprotocols = [\"v1\"]\n"),
        "feeds[0] (t).subprotocols",
        "handshake",
    );
    assert_error(
        &format!("{tcp}tls = {{ ca_file = \"Cargo.toml\" }}\n"),
        "feeds[0] (t).tls.ca_file",
        "tls://",
    );
    let pinged = format!("{tcp}heartbeat = {{ interval = \"15s\" }}\n");
    assert_error(&pinged, "feeds[0] (t).heartbeat", "no protocol pings");
    let app = format!(
        "{tcp}heartbeat = {{ interval = \"15s\", message = \"PING\", reply = \"PONG\" }}\n"
    );
    assert!(parse_ok(&app).feeds[0].heartbeat.is_some());
}

#[test]
fn chunk_size_belongs_to_stream_mode() {
    assert_error(
        &format!("{STOCKS}chunk_size = \"1KiB\"\n"),
        "feeds[0] (stocks).chunk_size",
        "mode = \"stream\"",
    );
    assert_error(
        &format!("{STOCKS}mode = \"stream\"\nchunk_size = \"0B\"\n"),
        "feeds[0] (stocks).chunk_size",
        "greater than 0",
    );
}

#[test]
fn topic_must_be_a_json_pointer() {
    assert_error(
        &format!("{STOCKS}topic = \"symbol\"\n"),
        "feeds[0] (stocks).topic",
        "not a JSON pointer",
    );
    assert_error(
        &format!("{STOCKS}topic = \"/a~2b\"\n"),
        "feeds[0] (stocks).topic",
        "'~' must be followed by 0 or 1",
    );
    assert_eq!(
        parse_ok(&format!("{STOCKS}topic = \"/data/0/s~1ym\"\n")).feeds[0].topic.as_deref(),
        Some("/data/0/s~1ym")
    );
}

#[test]
fn header_names_must_be_valid_and_not_handshake_headers() {
    assert_error(
        &format!("{STOCKS}headers = {{ \"Bad Name\" = \"v\" }}\n"),
        "feeds[0] (stocks).headers.\"Bad Name\"",
        "not a valid header name",
    );
    assert_error(
        &format!("{STOCKS}headers = {{ Upgrade = \"x\" }}\n"),
        "feeds[0] (stocks).headers.Upgrade",
        "handshake",
    );
    assert_error(
        &format!("{STOCKS}headers = {{ Sec-WebSocket-Protocol = \"v1\" }}\n"),
        "feeds[0] (stocks).headers.Sec-WebSocket-Protocol",
        "`subprotocols`",
    );
}

#[test]
fn subprotocols_are_unique_tokens() {
    let text = format!("{STOCKS}subprotocols = [\"v1\", \"\", \"a b\", \"v1\"]\n");
    assert_error(&text, "feeds[0] (stocks).subprotocols[1]", "must not be empty");
    assert_error(&text, "feeds[0] (stocks).subprotocols[2]", "not a valid subprotocol");
    assert_error(&text, "feeds[0] (stocks).subprotocols[3]", "duplicate subprotocol \"v1\"");
}

#[test]
fn tls_ca_file_is_checked() {
    let wss = STOCKS.replace("ws://", "wss://");
    assert_error(
        &format!("{wss}tls = {{ ca_file = \"missing.pem\" }}\n"),
        "feeds[0] (stocks).tls.ca_file",
        "no such file: config/missing.pem",
    );
    assert_error(
        &format!("{STOCKS}tls = {{ ca_file = \"Cargo.toml\" }}\n"),
        "feeds[0] (stocks).tls.ca_file",
        "only used by wss://",
    );
}

#[test]
fn subscriber_naming_an_unknown_feed() {
    let subscriber = r#"
        [[subscribers]]
        name = "print"
        feeds = ["stocks", "stokcs", "nothing-yet-*"]
    "#;
    let text = format!("{STOCKS}{subscriber}");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "a pattern may match no feed yet: {errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "subscribers[0] (print).feeds[1]: no feed named \"stokcs\" (did you mean \"stocks\"?)"
    );
}

#[test]
fn subscriber_lists_and_patterns_are_checked() {
    let subscribers = r#"
        [[subscribers]]
        name = "print"
        feeds = ["a b*"]
        topics = []

        [[subscribers]]
        name = "print"
        feeds = []
        topics = [""]
    "#;
    let text = format!("{STOCKS}{subscribers}");
    assert_error(&text, "subscribers[0] (print).feeds[0]", "can never match");
    assert_error(&text, "subscribers[0] (print).topics", "leave `topics` out");
    assert_error(&text, "subscribers[1] (print).name", "duplicate subscriber name");
    assert_error(&text, "subscribers[1] (print).feeds", "at least one");
    assert_error(&text, "subscribers[1] (print).topics[0]", "must not be empty");
}

#[test]
fn bad_listen_address() {
    assert_error("[http]\nlisten = \"localhost\"\n", "http.listen", "use IP:PORT");
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let error =
        parse("[http]\nlisten = \"127.0.0.1:9900\"\nthis is not toml\n").expect_err("syntax");
    let location = error.errors[0].location.expect("location");
    assert_eq!(location.line, 3);
    let shown = error.to_string();
    assert!(shown.starts_with("config/test.toml: line 3, column "), "{shown}");
    assert!(shown.contains("invalid TOML"), "{shown}");
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
        [defaults]
        handshake_timeout = "soon"

        [[feeds]]
        name = "stocks"
        url = "htp://127.0.0.1/"

        [[feeds]]
        name = "weather"
        url = "ws://127.0.0.1/${NOT_SET}"
        topic = "city"

        [[subscribers]]
        name = "print"
        feeds = ["wether"]
    "#;
    let error = parse(text).expect_err("many errors");
    let paths: Vec<&str> = error.errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "defaults.handshake_timeout",
            "feeds[0] (stocks).url",
            "feeds[1] (weather).url",
            "feeds[1] (weather).topic",
            "subscribers[0] (print).feeds[0]",
        ]
    );
    assert_eq!(error.to_string().lines().count(), 5);
}

/// One `[[subscribers]]` entry named `out` on feed `stocks`, with `settings`.
fn sink_entry(settings: &str) -> String {
    format!("{STOCKS}[[subscribers]]\nname = \"out\"\nfeeds = [\"stocks\"]\n{settings}")
}

#[test]
fn the_file_sink_layout_is_said_in_the_config() {
    let lines = parse_ok(&sink_entry("sink = \"file\"\npath = \"logs/out.jsonl\"\n"));
    let expected = crate::sink::FileSinkConfig {
        path: PathBuf::from("config/logs/out.jsonl"),
        layout: crate::sink::FileLayout::Lines,
    };
    assert_eq!(lines.subscribers[0].sink, SinkConfig::File(expected));
    let per_message = sink_entry("sink = \"file\"\npath = \"bulk/\"\nlayout = \"per_message\"\n");
    let per_message = parse_ok(&per_message);
    let SinkConfig::File(file) = &per_message.subscribers[0].sink else { panic!("a file sink") };
    assert_eq!(file.layout, crate::sink::FileLayout::PerMessage);
    assert!(per_message.subscribers[0].describe().starts_with("file per message in "));
}

#[test]
fn a_directory_path_with_the_lines_layout_is_a_config_error() {
    let text = sink_entry("sink = \"file\"\npath = \"bulk/\"\n");
    assert_error(&text, "subscribers[0] (out).path", "set layout = \"per_message\"");
    let text = sink_entry("sink = \"file\"\npath = \"bulk/\"\nlayout = \"lines\"\n");
    assert_error(&text, "subscribers[0] (out).path", "names a directory");
    assert_error(&sink_entry("sink = \"file\"\n"), "subscribers[0] (out).path", "required");
    let text = sink_entry("sink = \"file\"\npath = \"x\"\nlayout = \"sideways\"\n");
    let errors = errors_of(&text);
    assert!(errors.iter().any(|error| error.message.contains("per_message")), "{errors:?}");
    let text = sink_entry("sink = \"stdout\"\nlayout = \"lines\"\n");
    assert_error(&text, "subscribers[0] (out).layout", "only used by sink = \"file\"");
}

#[test]
fn each_sink_s_own_checks_are_reported_under_the_subscriber() {
    let text = sink_entry("sink = \"exec\"\ncommand = []\n");
    assert_error(&text, "subscribers[0] (out).command", "required for sink = \"exec\"");
    let text = sink_entry("sink = \"exec\"\ncommand = [\"\", \"x\"]\n");
    assert_error(&text, "subscribers[0] (out).command[0]", "must name a program");
    let webhook = "sink = \"webhook\"\nurl = \"ftp://hooks.example/\"\nbatch = 0\n\
                   headers = { \"X-Key\" = \"${TOKEN}\\r\\n\", \"bad name\" = \"v\" }\n";
    let text = sink_entry(webhook);
    assert_error(&text, "subscribers[0] (out).url", "unsupported scheme \"ftp\"");
    assert_error(&text, "subscribers[0] (out).batch", "at least 1");
    assert_error(&text, "subscribers[0] (out).headers.X-Key", "line break");
    assert_error(&text, "subscribers[0] (out).headers.bad name", "not a valid header name");
    let errors = format!("{:?}", errors_of(&text));
    assert!(!errors.contains("t0ken-value"), "a header value was shown: {errors}");

    let webhook = "sink = \"webhook\"\nurl = \"https://hooks.example/in?key=${TOKEN}\"\n\
                   headers = { Authorization = \"Bearer ${TOKEN}\" }\n";
    let config = parse_ok(&sink_entry(webhook));
    let SinkConfig::Webhook(hook) = &config.subscribers[0].sink else { panic!("a webhook") };
    assert_eq!(hook.url.query(), Some("key=t0ken-value"));
    assert_eq!(hook.headers[0].1.expose(), "Bearer t0ken-value");
    assert_eq!((hook.batch, hook.max_in_flight), (1, 4));
    let shown = serde_json::to_string(&config).expect("serialize") + &format!("{config:?}");
    assert!(!shown.contains("t0ken-value"), "{shown}");
}

#[test]
fn a_sink_setting_nobody_takes_is_reported_with_every_other_error() {
    let text = sink_entry("sink = \"file\"\npth = \"x\"\ntopic = [\"a\"]\n");
    let errors = errors_of(&text);
    assert_error(&text, "subscribers[0] (out).pth", "unknown field `pth`");
    assert_error(&text, "subscribers[0] (out).pth", "(did you mean \"path\"?)");
    assert_error(&text, "subscribers[0] (out).topic", "(did you mean \"topics\"?)");
    // The file sink's own check still runs: its path is missing.
    assert_error(&text, "subscribers[0] (out).path", "required for sink = \"file\"");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let text = sink_entry("bogus = 1\n");
    assert_error(&text, "subscribers[0] (out).bogus", "expected one of `name`, `feeds`");
}

#[test]
fn fields_of_other_sinks_name_the_sink_that_takes_them() {
    let text =
        sink_entry("sink = \"exec\"\ncommand = [\"cat\"]\npath = \"x\"\nurl = \"http://h/\"\n");
    assert_error(&text, "subscribers[0] (out).path", "only used by sink = \"file\", not \"exec\"");
    assert_error(
        &text,
        "subscribers[0] (out).url",
        "only used by sink = \"webhook\", not \"exec\"",
    );
    assert_eq!(errors_of(&text).len(), 2);
}

#[test]
fn a_sink_setting_of_the_wrong_type_names_its_field() {
    let text =
        sink_entry("sink = \"webhook\"\nurl = \"https://hooks.example/\"\nbatch = \"many\"\n");
    assert_error(&text, "subscribers[0] (out).batch", "invalid type");
    let text = sink_entry("sink = \"exec\"\ncommand = \"cat\"\n");
    assert_error(&text, "subscribers[0] (out).command", "expected a sequence");
    let text = sink_entry("sink = \"file\"\npath = \"x\"\nlayout = \"sideways\"\n");
    assert_error(&text, "subscribers[0] (out).layout", "unknown variant `sideways`");
}

#[test]
fn an_unknown_sink_lists_the_built_in_ones() {
    let errors = errors_of(&sink_entry("sink = \"kafka\"\n"));
    assert_eq!(errors[0].path, "subscribers[0] (out).sink");
    assert!(
        errors[0].message.contains(
            "unknown variant `kafka`, expected one of `stdout`, `file`, `exec`, `webhook`"
        ),
        "{errors:?}"
    );
}

#[test]
fn a_subscriber_is_shown_with_its_sink_name_beside_its_settings() {
    let shown = |settings: &str| {
        let config = parse_ok(&sink_entry(settings));
        serde_json::to_value(&config.subscribers[0]).expect("serialize")
    };
    let common = serde_json::json!({
        "name": "out", "feeds": ["stocks"], "queue": 1024, "overflow": "drop_oldest",
    });
    let with = |sink: serde_json::Value| {
        let mut expected = common.clone();
        for (key, value) in sink.as_object().expect("an object") {
            expected[key] = value.clone();
        }
        expected
    };
    assert_eq!(shown(""), with(serde_json::json!({ "sink": "stdout" })));
    assert_eq!(
        shown("sink = \"file\"\npath = \"out.jsonl\"\n"),
        with(serde_json::json!({ "sink": "file", "path": "config/out.jsonl", "layout": "lines" }))
    );
    assert_eq!(
        shown("sink = \"exec\"\ncommand = [\"cat\"]\n"),
        with(serde_json::json!({ "sink": "exec", "command": ["cat"] }))
    );
    let webhook = "sink = \"webhook\"\nurl = \"https://hooks.example/in?key=${TOKEN}\"\n\
                   timeout = \"2s\"\nheaders = { X-Key = \"${TOKEN}\" }\n";
    assert_eq!(
        shown(webhook),
        with(serde_json::json!({
            "sink": "webhook", "url": "https://hooks.example/in?***", "batch": 1,
            "max_in_flight": 4, "timeout": "2s", "headers": { "X-Key": "***" },
        }))
    );
}

#[test]
fn no_sink_setting_is_named_like_a_shared_subscriber_field() {
    for kind in SinkKind::ALL {
        for field in kind.fields() {
            assert!(
                !raw::RawSubscriber::SHARED_FIELDS.contains(field),
                "sink {:?} has a setting {field:?}, which every subscriber already has",
                kind.as_str()
            );
        }
    }
}

#[test]
fn feed_json_shares_the_file_checks() {
    let defaults = FeedDefaults { max_message_size: 4096, ..FeedDefaults::default() };
    let json = serde_json::json!({
        "name": "live",
        "url": "ws://127.0.0.1:1/",
        "headers": { "X-Key": "${STOCKS_KEY}" },
    });
    let feed = feed_json(json, &defaults, &test_env).expect("valid feed");
    assert_eq!(feed.max_message_size, 4096);
    assert_eq!(feed.headers[0].1, "k3y-value");

    let json =
        serde_json::json!({ "name": "live", "url": "htp://x/", "handshake_timeout": "5 parsecs" });
    let production = TransportRegistry::with_defaults();
    let error = parse_feed_json(json, &defaults, Path::new("."), &test_env, &production)
        .expect_err("bad feed");
    assert_eq!(
        error.to_string(),
        "feed: url: unsupported scheme \"htp\": use ws://, wss://, tcp:// or tls://\n\
         feed: handshake_timeout: invalid duration \"5 parsecs\": \
         use a number with a unit, such as \"10s\" or \"500ms\""
    );
    let json = serde_json::json!({ "name": "live", "url": "ws://x/", "mode": "fast" });
    let error = feed_json(json, &defaults, &test_env).expect_err("bad mode");
    assert_eq!(error.errors[0].path, "mode");
}

#[test]
fn framing_is_shown_where_the_transport_uses_it() {
    let shown =
        |text: &str| serde_json::to_value(feed_of(text)).expect("serialize")["framing"].clone();
    let tcp = "[[feeds]]\nname = \"t\"\nurl = \"tcp://127.0.0.1:7000\"\n";
    assert_eq!(shown(tcp), "lines", "message mode on tcp:// uses the default framing");
    assert_eq!(shown(&format!("{tcp}framing = \"length_prefixed\"\n")), "length_prefixed");
    assert_eq!(shown(&format!("{tcp}mode = \"stream\"\n")), serde_json::Value::Null);
    assert_eq!(shown(STOCKS), serde_json::Value::Null, "WebSocket has no framing");
    let feed = feed_of(&format!("{tcp}framing = \"length_prefixed\"\n"));
    let json = serde_json::to_value(&feed).expect("serialize");
    assert_eq!(feed_json(json, &FeedDefaults::default(), &|_: &str| None), Ok(feed));
}

#[test]
fn serialized_feed_reads_back_as_the_same_feed() {
    let fields = r#"
        mode = "message"
        topic = "/s"
        subprotocols = ["v1"]
        on_open = ['hi']
        handshake_timeout = "1m 30s"
    "#;
    let text = format!("{STOCKS}{fields}");
    let feed = parse_ok(&text).feeds.remove(0);
    let json = serde_json::to_value(&feed).expect("serialize");
    let back = feed_json(json, &FeedDefaults::default(), &|_: &str| None).expect("reads back");
    assert_eq!(back, feed);
}

#[test]
fn sizes_and_durations_have_human_forms() {
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
    assert_eq!(parse_size("1MB"), Ok(1_000_000));
    assert_eq!(parse_size("1024"), Ok(1024));
    assert!(parse_size("-1KiB").is_err() && parse_size("").is_err() && parse_size("KiB").is_err());
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert!(parse_duration("10").is_err());
    for bytes in [1, 1000, 1024, 1536, 1 << 20, 3 << 30, 1 << 40] {
        assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{}", format_size(bytes));
    }
    assert_eq!(format_size(64 << 10), "64KiB");
    assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
}

#[test]
fn mode_and_sink_names() {
    assert_eq!(mode_name(DeliveryMode::Stream { chunk_size: 1 }), "stream");
    assert_eq!(mode_name(DeliveryMode::Message), "message");
    assert_eq!(framing_name(Framing::LengthPrefixed), "length_prefixed");
    assert_eq!(SinkKind::Stdout.as_str(), "stdout");
}

#[test]
fn a_literal_query_string_is_hidden_when_shown() {
    let text = "[[feeds]]\nname = \"q\"\nurl = \"wss://example.com/feed?apikey=literal-secret\"\n";
    let config = Config::from_toml_str(text, Path::new("q.toml"), &transports()).expect("valid");
    let shown = config.feeds[0].display_url();
    assert_eq!(shown, "wss://example.com/feed?***");
    assert!(!format!("{:?}", config.feeds[0]).contains("literal-secret"));
}

#[test]
fn urls_with_credentials_are_refused_at_load_without_showing_them() {
    // Found by trying: `ws://TOKEN@host/` passed `check` (shown whole), then
    // failed every connect for ever; no transport sends URL credentials.
    for url in ["ws://TOKEN123@127.0.0.1:8080/", "wss://user:hunter2@example.com/feed"] {
        let text = format!("[[feeds]]\nname = \"q\"\nurl = \"{url}\"\n");
        let error = parse(&text).expect_err("credentials in the URL").to_string();
        assert!(error.contains("feeds[0] (q).url: credentials in the URL"), "{error}");
        assert!(!error.contains("TOKEN123") && !error.contains("hunter2"), "{error}");
    }
}

#[test]
fn a_literal_query_secret_beside_a_reference_is_hidden_too() {
    // Found by trying: a URL written with ${VAR} was shown as written, literal query and all.
    let text = "[[feeds]]\nname = \"q\"\nurl = \"wss://example.com/${PATH_PART}?apikey=literal-secret&t=${STOCKS_KEY}\"\n";
    let feed = feed_of(text);
    let shown = feed.display_url();
    assert!(!shown.contains("literal-secret"), "{shown}");
    assert!(shown.contains("${PATH_PART}"), "{shown}");
}

#[test]
fn a_transport_error_naming_the_expanded_url_shows_the_url_as_written() {
    // Found by trying: a ${VAR} in the URL path reached last_error expanded.
    let feed = feed_of(
        "[[feeds]]\nname = \"q\"\nurl = \"wss://example.com/v1/${PATH_PART}?t=${STOCKS_KEY}\"\n",
    );
    let error = "connect to wss://example.com/v1/path-value timed out after 1s";
    assert_eq!(
        feed.shown_error(error),
        "connect to wss://example.com/v1/${PATH_PART} timed out after 1s"
    );
    let plain = feed_of("[[feeds]]\nname = \"p\"\nurl = \"wss://example.com/v1/open\"\n");
    assert_eq!(
        plain.shown_error("refused by wss://example.com/v1/open"),
        "refused by wss://example.com/v1/open"
    );
}

#[test]
fn names_longer_than_128_bytes_are_refused() {
    // Found by trying: a 1 MB feed name made /metrics 74 MB.
    let long = "a".repeat(129);
    let text = format!("[[feeds]]\nname = \"{long}\"\nurl = \"ws://127.0.0.1:1/\"\n");
    let errors = errors_of(&text);
    assert!(errors.iter().any(|error| error.message.contains("at most 128 bytes")), "{errors:#?}");
    let ok = format!("[[feeds]]\nname = \"{}\"\nurl = \"ws://127.0.0.1:1/\"\n", "a".repeat(128));
    parse_ok(&ok);
}

// Session settings: reconnect, heartbeat, idle timeout, outbound queue,
// sequence and required.

fn feed_of(text: &str) -> FeedConfig {
    parse_ok(text).feeds.remove(0)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[test]
fn session_defaults_apply_to_a_bare_feed() {
    let feed = feed_of(STOCKS);
    assert_eq!(feed.reconnect, ReconnectPolicy::default());
    assert_eq!(
        feed.heartbeat,
        Some(HeartbeatConfig {
            interval: secs(30),
            timeout: secs(10),
            kind: HeartbeatKind::Protocol
        })
    );
    assert_eq!(feed.idle_timeout, None);
    assert_eq!(
        feed.outbound_queue,
        OutboundQueueConfig { max_messages: 1000, max_bytes: 1 << 20, overflow: Overflow::Reject }
    );
    assert_eq!(feed.sequence, None);
    assert!(feed.required);
    let defaults = parse_ok("").defaults;
    assert_eq!(defaults, FeedDefaults::default());
    assert_eq!(defaults.heartbeat, feed.heartbeat);
}

#[test]
fn session_fields_parse() {
    let fields = r#"
        reconnect = { policy = "fixed", initial = "2s", max = "1m", multiplier = 3, jitter = "equal", max_attempts = 5, reset_after = "5m", max_retry_after = "2m" }
        heartbeat = { interval = "20s", timeout = "5s" }
        idle_timeout = "90s"
        outbound_queue = { max_messages = 10, max_bytes = "64KiB", overflow = "drop_oldest" }
        sequence = "/seq"
        required = false
        on_open = ['{"op":"resume","from":{{last_seq}}}']
    "#;
    let feed = feed_of(&format!("{STOCKS}{fields}"));
    assert_eq!(
        feed.reconnect,
        ReconnectPolicy {
            kind: PolicyKind::Fixed,
            initial: secs(2),
            max: secs(60),
            multiplier: 3.0,
            jitter: Jitter::Equal,
            max_attempts: 5,
            reset_after: secs(300),
            max_retry_after: secs(120),
        }
    );
    assert_eq!(
        feed.heartbeat,
        Some(HeartbeatConfig {
            interval: secs(20),
            timeout: secs(5),
            kind: HeartbeatKind::Protocol
        })
    );
    assert_eq!(feed.idle_timeout, Some(secs(90)));
    assert_eq!(
        feed.outbound_queue,
        OutboundQueueConfig {
            max_messages: 10,
            max_bytes: 64 << 10,
            overflow: Overflow::DropOldest
        }
    );
    assert_eq!(feed.sequence.as_deref(), Some("/seq"));
    assert!(!feed.required);
    assert_eq!(feed.on_open, [r#"{"op":"resume","from":{{last_seq}}}"#]);
}

#[test]
fn defaults_reconnect_merges_field_by_field_with_a_feed_reconnect() {
    let text = r#"
        [defaults.reconnect]
        initial = "1s"
        max = "2m"
        jitter = "decorrelated"
        max_attempts = 10

        [[feeds]]
        name = "inherits"
        url = "ws://127.0.0.1:1/a"

        [[feeds]]
        name = "overrides"
        url = "ws://127.0.0.1:1/b"
        reconnect = { max = "10s", jitter = "none" }
    "#;
    let config = parse_ok(text);
    let expected = ReconnectPolicy {
        initial: secs(1),
        max: secs(120),
        jitter: Jitter::Decorrelated,
        max_attempts: 10,
        ..ReconnectPolicy::default()
    };
    assert_eq!(config.defaults.reconnect, expected);
    assert_eq!(config.feeds[0].reconnect, expected);
    // Only `max` and `jitter` change; `initial` and `max_attempts` still come from [defaults].
    assert_eq!(
        config.feeds[1].reconnect,
        ReconnectPolicy { max: secs(10), jitter: Jitter::None, ..expected }
    );
}

#[test]
fn defaults_supply_every_session_setting_and_feeds_override_them() {
    let text = r#"
        [defaults]
        idle_timeout = "2m"
        required = false
        heartbeat = { interval = "15s", message = "ping", reply = "pong" }
        outbound_queue = { max_messages = 50, overflow = "drop_newest" }

        [[feeds]]
        name = "inherits"
        url = "ws://127.0.0.1:1/a"

        [[feeds]]
        name = "overrides"
        url = "ws://127.0.0.1:1/b"
        idle_timeout = "0s"
        required = true
        heartbeat = { timeout = "3s" }
        outbound_queue = { max_bytes = "2KiB" }
    "#;
    let config = parse_ok(text);
    let application = HeartbeatKind::Application {
        message: "ping".to_owned(),
        reply: ReplyMatch::Substring("pong".to_owned()),
    };
    let (inherits, overrides) = (&config.feeds[0], &config.feeds[1]);
    assert_eq!(inherits.idle_timeout, Some(secs(120)));
    assert!(!inherits.required);
    assert_eq!(
        inherits.heartbeat,
        Some(HeartbeatConfig { interval: secs(15), timeout: secs(10), kind: application.clone() })
    );
    assert_eq!(
        inherits.outbound_queue,
        OutboundQueueConfig {
            max_messages: 50,
            max_bytes: 1 << 20,
            overflow: Overflow::DropNewest
        }
    );
    assert_eq!(overrides.idle_timeout, None);
    assert!(overrides.required);
    assert_eq!(
        overrides.heartbeat,
        Some(HeartbeatConfig { interval: secs(15), timeout: secs(3), kind: application })
    );
    assert_eq!(
        overrides.outbound_queue,
        OutboundQueueConfig { max_messages: 50, max_bytes: 2048, overflow: Overflow::DropNewest }
    );
}

#[test]
fn heartbeat_is_off_with_a_zero_interval() {
    let feed = feed_of(&format!("{STOCKS}heartbeat = {{ interval = \"0s\" }}\n"));
    assert_eq!(feed.heartbeat, None);

    // Off in [defaults]: off for every feed, until a feed sets an interval.
    let text = format!(
        "[defaults]\nheartbeat = {{ interval = \"0s\" }}\n{STOCKS}\
         [[feeds]]\nname = \"on\"\nurl = \"ws://127.0.0.1/\"\nheartbeat = {{ interval = \"20s\" }}\n"
    );
    let config = parse_ok(&text);
    assert_eq!(config.defaults.heartbeat, None);
    assert_eq!(config.feeds[0].heartbeat, None);
    assert_eq!(
        config.feeds[1].heartbeat,
        Some(HeartbeatConfig { interval: secs(20), ..HeartbeatConfig::default() })
    );

    assert_eq!(feed_of(&format!("{STOCKS}idle_timeout = \"0s\"\n")).idle_timeout, None);
}

#[test]
fn application_heartbeat_with_a_substring_reply() {
    let text = format!(
        "{STOCKS}heartbeat = {{ interval = \"20s\", timeout = \"5s\", \
         message = '{{\"op\":\"ping\"}}', reply = \"pong\" }}\n"
    );
    let heartbeat = feed_of(&text).heartbeat.expect("on");
    assert_eq!(
        heartbeat.kind,
        HeartbeatKind::Application {
            message: r#"{"op":"ping"}"#.to_owned(),
            reply: ReplyMatch::Substring("pong".to_owned()),
        }
    );
    assert_eq!((heartbeat.interval, heartbeat.timeout), (secs(20), secs(5)));
}

#[test]
fn application_heartbeat_with_a_pointer_reply() {
    let text = format!(
        "{STOCKS}heartbeat = {{ message = '{{\"op\":\"ping\"}}', reply = \"pong\", \
         reply_pointer = \"/op\" }}\n"
    );
    let heartbeat = feed_of(&text).heartbeat.expect("on");
    assert_eq!(
        heartbeat.kind,
        HeartbeatKind::Application {
            message: r#"{"op":"ping"}"#.to_owned(),
            reply: ReplyMatch::Pointer { pointer: "/op".to_owned(), value: "pong".to_owned() },
        }
    );
    assert_eq!(heartbeat.interval, secs(30), "the interval is the default");
}

#[test]
fn reply_match_cases() {
    let substring = ReplyMatch::Substring("pong".to_owned());
    assert!(substring.matches(br#"{"op":"pong"}"#));
    assert!(substring.matches(b"pong"));
    assert!(!substring.matches(b"pon"));
    assert!(!substring.matches(b""));

    let pointer = ReplyMatch::Pointer { pointer: "/op".to_owned(), value: "pong".to_owned() };
    assert!(pointer.matches(br#"{"op":"pong","ts":1}"#));
    assert!(!pointer.matches(br#"{"op":"pongs"}"#), "equality, not substring");
    assert!(!pointer.matches(br#"{"data":{"op":"pong"}}"#));
    assert!(!pointer.matches(br#"{"op":["pong"]}"#));
    assert!(!pointer.matches(b"pong"), "not JSON");
    assert!(!pointer.matches(br#"{"op":"pong""#), "truncated JSON");

    let nested = ReplyMatch::Pointer { pointer: "/data/0/a~1b".to_owned(), value: "ok".to_owned() };
    assert!(nested.matches(br#"{"data":[{"a/b":"ok"}]}"#));

    let number = ReplyMatch::Pointer { pointer: "/code".to_owned(), value: "200".to_owned() };
    assert!(number.matches(br#"{"code":200}"#));
    assert!(number.matches(br#"{"code":"200"}"#));
    assert!(!number.matches(br#"{"code":201}"#));
    let boolean = ReplyMatch::Pointer { pointer: "/pong".to_owned(), value: "true".to_owned() };
    assert!(boolean.matches(br#"{"pong":true}"#));
    assert!(!boolean.matches(br#"{"pong":false}"#));
    let null = ReplyMatch::Pointer { pointer: "/pong".to_owned(), value: "null".to_owned() };
    assert!(!null.matches(br#"{"pong":null}"#), "null is not a value to compare");
}

#[test]
fn heartbeat_message_expands_env_and_is_shown_as_written() {
    let text = format!(
        "[defaults]\nheartbeat = {{ message = '{{\"ping\":\"${{TOKEN}}\"}}', reply = \"pong\" }}\n\
         {STOCKS}[[feeds]]\nname = \"own\"\nurl = \"ws://127.0.0.1/\"\n\
         heartbeat = {{ message = 'auth ${{STOCKS_KEY}}', reply = \"ok\" }}\n"
    );
    let config = parse_ok(&text);
    let message_of =
        |feed: &FeedConfig| match feed.heartbeat.clone().map(|heartbeat| heartbeat.kind) {
            Some(HeartbeatKind::Application { message, .. }) => message,
            other => panic!("application heartbeat expected, got {other:?}"),
        };
    // Inherited from [defaults], and a feed's own.
    assert_eq!(message_of(&config.feeds[0]), r#"{"ping":"t0ken-value"}"#);
    assert_eq!(message_of(&config.feeds[1]), "auth k3y-value");
    assert_eq!(
        config.feeds[0].unexpanded.heartbeat_message.as_deref(),
        Some(r#"{"ping":"${TOKEN}"}"#)
    );

    let debug = format!("{config:?}");
    let json = serde_json::to_string(&config).expect("serialize");
    for shown in [&debug, &json] {
        assert!(!shown.contains("k3y-value") && !shown.contains("t0ken-value"), "{shown}");
        assert!(shown.contains("${TOKEN}") && shown.contains("${STOCKS_KEY}"), "{shown}");
    }
    let json = serde_json::to_value(&config.feeds[1]).expect("serialize");
    assert_eq!(json["heartbeat"]["message"], "auth ${STOCKS_KEY}");

    assert_error(
        &format!("{STOCKS}heartbeat = {{ message = '${{NOT_SET}}', reply = \"pong\" }}\n"),
        "feeds[0] (stocks).heartbeat.message",
        "environment variable NOT_SET is not set",
    );
}

#[test]
fn reconnect_errors_name_the_field() {
    let feed = "feeds[0] (stocks)";
    let bad = [
        ("reconnect = { initial = \"0s\" }", "reconnect.initial", "greater than 0"),
        ("reconnect = { initial = \"soon\" }", "reconnect.initial", "invalid duration"),
        ("reconnect = { max = \"100ms\" }", "reconnect.max", "at least `initial` (500ms)"),
        ("reconnect = { initial = \"1m\" }", "reconnect.initial", "at most `max` (30s)"),
        (
            "reconnect = { initial = \"1m\", max = \"10s\" }",
            "reconnect.max",
            "at least `initial` (1m)",
        ),
        ("reconnect = { multiplier = 0.5 }", "reconnect.multiplier", "at least 1.0"),
        ("reconnect = { multiplier = nan }", "reconnect.multiplier", "at least 1.0"),
        ("reconnect = { multiplier = inf }", "reconnect.multiplier", "at least 1.0"),
        ("reconnect = { reset_after = \"0s\" }", "reconnect.reset_after", "greater than 0"),
        ("reconnect = { max_attempts = -1 }", "reconnect.max_attempts", "invalid value"),
        ("reconnect = { policy = \"linear\" }", "reconnect.policy", "unknown variant `linear`"),
        ("reconnect = { jitter = \"some\" }", "reconnect.jitter", "unknown variant `some`"),
        ("reconnect = { maximum = \"1s\" }", "reconnect.maximum", "unknown field `maximum`"),
    ];
    for (line, field, part) in bad {
        assert_error(&format!("{STOCKS}{line}\n"), &format!("{feed}.{field}"), part);
    }
    assert_error(
        "[defaults.reconnect]\ninitial = \"10s\"\nmax = \"5s\"\n",
        "defaults.reconnect.max",
        "at least `initial` (10s)",
    );
    // Every error in one table is reported.
    let errors = errors_of(&format!(
        "{STOCKS}reconnect = {{ initial = \"0s\", multiplier = 0.0, reset_after = \"x\" }}\n"
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn a_fixed_policy_does_not_check_max() {
    let feed =
        feed_of(&format!("{STOCKS}reconnect = {{ policy = \"fixed\", initial = \"1m\" }}\n"));
    assert_eq!(feed.reconnect.kind, PolicyKind::Fixed);
    assert_eq!((feed.reconnect.initial, feed.reconnect.max), (secs(60), secs(30)));
    // Switching such a policy back to exponential brings the check back.
    let text = format!(
        "[defaults]\nreconnect = {{ policy = \"fixed\", initial = \"1m\" }}\n{STOCKS}\
         reconnect = {{ policy = \"exponential\" }}\n"
    );
    assert_error(&text, "feeds[0] (stocks).reconnect.max", "at least `initial` (1m)");
}

#[test]
fn heartbeat_errors_name_the_field() {
    let feed = "feeds[0] (stocks)";
    let bad = [
        ("heartbeat = { timeout = \"0s\" }", "heartbeat.timeout", "greater than 0"),
        (
            "heartbeat = { interval = \"5s\", timeout = \"5s\" }",
            "heartbeat.timeout",
            "shorter than `interval` (5s)",
        ),
        ("heartbeat = { timeout = \"1m\" }", "heartbeat.timeout", "shorter than `interval` (30s)"),
        ("heartbeat = { interval = \"5s\" }", "heartbeat.interval", "longer than `timeout` (10s)"),
        ("heartbeat = { interval = \"often\" }", "heartbeat.interval", "invalid duration"),
        ("heartbeat = { message = \"ping\" }", "heartbeat.message", "needs `reply`"),
        ("heartbeat = { reply = \"pong\" }", "heartbeat.reply", "needs `message`"),
        ("heartbeat = { reply_pointer = \"/op\" }", "heartbeat.reply_pointer", "needs `reply`"),
        (
            "heartbeat = { message = \"ping\", reply = \"pong\", reply_pointer = \"op\" }",
            "heartbeat.reply_pointer",
            "not a JSON pointer",
        ),
        (
            "heartbeat = { message = \"\", reply = \"pong\" }",
            "heartbeat.message",
            "must not be empty",
        ),
        (
            "heartbeat = { message = \"ping\", reply = \"\" }",
            "heartbeat.reply",
            "must not be empty",
        ),
        (
            "heartbeat = { interval = \"0s\", timeout = \"5s\" }",
            "heartbeat.timeout",
            "unused while the heartbeat is off",
        ),
        (
            "heartbeat = { interval = \"0s\", message = \"a\", reply = \"b\" }",
            "heartbeat.reply",
            "unused while the heartbeat is off",
        ),
        ("heartbeat = { ping = \"x\" }", "heartbeat.ping", "unknown field `ping`"),
    ];
    for (line, field, part) in bad {
        assert_error(&format!("{STOCKS}{line}\n"), &format!("{feed}.{field}"), part);
    }
    assert_error(
        "[defaults]\nheartbeat = { interval = \"5s\" }\n",
        "defaults.heartbeat.interval",
        "longer than `timeout` (10s)",
    );
    // A heartbeat turned off in [defaults] stays off for a feed that only sets a timeout.
    assert_error(
        &format!("[defaults]\nheartbeat = {{ interval = \"0s\" }}\n{STOCKS}heartbeat = {{ timeout = \"5s\" }}\n"),
        "feeds[0] (stocks).heartbeat.timeout",
        "unused while the heartbeat is off",
    );
}

#[test]
fn queue_sequence_and_idle_timeout_errors_name_the_field() {
    let feed = "feeds[0] (stocks)";
    let bad = [
        ("outbound_queue = { max_messages = 0 }", "outbound_queue.max_messages", "greater than 0"),
        ("outbound_queue = { max_bytes = 0 }", "outbound_queue.max_bytes", "greater than 0"),
        ("outbound_queue = { max_bytes = \"lots\" }", "outbound_queue.max_bytes", "invalid size"),
        (
            "outbound_queue = { overflow = \"block\" }",
            "outbound_queue.overflow",
            "unknown variant `block`",
        ),
        ("sequence = \"seq\"", "sequence", "not a JSON pointer"),
        ("idle_timeout = \"forever\"", "idle_timeout", "invalid duration"),
        ("required = \"yes\"", "required", "invalid type"),
    ];
    for (line, field, part) in bad {
        assert_error(&format!("{STOCKS}{line}\n"), &format!("{feed}.{field}"), part);
    }
    assert_error(
        "[defaults]\noutbound_queue = { max_messages = 0 }\n",
        "defaults.outbound_queue.max_messages",
        "greater than 0",
    );
}

#[test]
fn last_seq_in_on_open_needs_sequence() {
    let on_open =
        "on_open = ['{\"op\":\"subscribe\"}', '{\"op\":\"resume\",\"from\":{{last_seq}}}']\n";
    assert_error(
        &format!("{STOCKS}{on_open}"),
        "feeds[0] (stocks).on_open[1]",
        "{{last_seq}} needs `sequence`",
    );
    assert_eq!(errors_of(&format!("{STOCKS}{on_open}")).len(), 1);
    let feed = feed_of(&format!("{STOCKS}{on_open}sequence = \"/seq\"\n"));
    assert_eq!(feed.on_open[1], r#"{"op":"resume","from":{{last_seq}}}"#);
}

#[test]
fn feed_json_inherits_session_defaults() {
    let defaults = FeedDefaults {
        reconnect: ReconnectPolicy { max_attempts: 3, ..ReconnectPolicy::default() },
        heartbeat: None,
        required: false,
        ..FeedDefaults::default()
    };
    let json = serde_json::json!({
        "name": "live",
        "url": "ws://127.0.0.1:1/",
        "reconnect": { "initial": "1s" },
    });
    let feed = feed_json(json, &defaults, &test_env).expect("valid feed");
    assert_eq!(feed.reconnect, ReconnectPolicy { initial: secs(1), ..defaults.reconnect });
    assert_eq!(feed.heartbeat, None);
    assert!(!feed.required);

    let json = serde_json::json!({
        "name": "live",
        "url": "ws://127.0.0.1:1/",
        "outbound_queue": { "max_messages": 0 },
    });
    let error = feed_json(json, &defaults, &test_env).expect_err("bad");
    assert_eq!(error.to_string(), "feed: outbound_queue.max_messages: must be greater than 0");
}

#[test]
fn serialized_session_settings_read_back() {
    let fields = r#"
        reconnect = { policy = "exponential", initial = "250ms", max = "1m 30s", multiplier = 1.5, jitter = "decorrelated", max_attempts = 7, reset_after = "2m" }
        heartbeat = { interval = "20s", timeout = "5s", message = '{"op":"ping"}', reply = "pong", reply_pointer = "/op" }
        idle_timeout = "45s"
        outbound_queue = { max_messages = 10, max_bytes = 1500, overflow = "drop_newest" }
        sequence = "/seq"
        required = false
        on_open = ['{"from":{{last_seq}}}']
    "#;
    let feed = feed_of(&format!("{STOCKS}{fields}"));
    let json = serde_json::to_value(&feed).expect("serialize");
    assert_eq!(
        json["reconnect"],
        serde_json::json!({
            "policy": "exponential", "initial": "250ms", "max": "1m 30s", "multiplier": 1.5,
            "jitter": "decorrelated", "max_attempts": 7, "reset_after": "2m",
            "max_retry_after": "5m",
        })
    );
    assert_eq!(json["outbound_queue"]["max_bytes"], "1500B");
    assert_eq!(json["heartbeat"]["reply_pointer"], "/op");
    let back = feed_json(json, &FeedDefaults::default(), &|_: &str| None).expect("reads back");
    assert_eq!(back, feed);

    // Settings that are off read back as off, whatever the defaults say.
    let off = feed_of(&format!("{STOCKS}heartbeat = {{ interval = \"0s\" }}\n"));
    let json = serde_json::to_value(&off).expect("serialize");
    assert_eq!(json["heartbeat"], serde_json::json!({ "interval": "0s" }));
    assert_eq!(json["idle_timeout"], "0s");
    let defaults = FeedDefaults { idle_timeout: Some(secs(5)), ..FeedDefaults::default() };
    let back = feed_json(json, &defaults, &|_: &str| None).expect("reads back");
    assert_eq!(back, off);
}

/// Regression (found by the `feed_json` fuzz target): a value writing a
/// literal `${` as `$${` was shown expanded, and the `${` it showed read
/// back as an unterminated reference.
#[test]
fn a_literal_reference_written_as_double_dollar_reads_back() {
    let fields = r#"
        url = "wss://example.com/$${path}?key=k3y$${x}"
        on_open = ["price in $${USD}"]
        heartbeat = { interval = "20s", timeout = "5s", message = "$${ping}", reply = "pong" }
    "#;
    let feed = feed_of(&format!("[[feeds]]\nname = \"stocks\"\n{fields}"));
    assert_eq!(feed.on_open, ["price in ${USD}"]);
    let json = serde_json::to_value(&feed).expect("serialize");
    assert_eq!(json["on_open"][0], "price in $${USD}");
    assert_eq!(json["heartbeat"]["message"], "$${ping}");
    // Shown as written, and its literal query masked like any literal URL's.
    assert_eq!(json["url"], "wss://example.com/$${path}?***");
    let back = feed_json(json, &FeedDefaults::default(), &|_: &str| None).expect("reads back");
    assert_eq!((back.on_open, back.heartbeat), (feed.on_open, feed.heartbeat));
    assert_eq!(back.url.path(), feed.url.path());
}

#[test]
fn overflow_names() {
    assert_eq!(Overflow::DropOldest.as_str(), "drop_oldest");
    assert_eq!(Overflow::DropNewest.as_str(), "drop_newest");
    assert_eq!(Overflow::Reject.as_str(), "reject");
}

#[test]
fn process_settings_have_defaults_and_bounds() {
    let config = parse_ok("");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(config.workers, None);
    let config = parse_ok("shutdown_timeout = \"12s\"\nworkers = 3\n");
    assert_eq!(config.shutdown_timeout, Duration::from_secs(12));
    assert_eq!(config.workers, Some(3));
    assert_error("workers = 0\n", "workers", "at least 1");
    assert_error("workers = 100000\n", "workers", "at most");
    assert_error("shutdown_timeout = \"soon\"\n", "shutdown_timeout", "invalid duration");
}

/// Regression (found by `roundtrip_tests`): `shutdown_timeout` was shown
/// as `{ secs, nanos }`, which a config file cannot hold.
#[test]
fn shutdown_timeout_is_shown_as_a_config_writes_it() {
    let config = parse_ok("shutdown_timeout = \"1m 30s\"\n");
    let shown = serde_json::to_value(&config).expect("serializable");
    assert_eq!(shown["shutdown_timeout"], "1m 30s");
    let text = toml::to_string(&config).expect("serializable as TOML");
    assert_eq!(parse_ok(&text).shutdown_timeout, Duration::from_secs(90));
}

#[test]
fn http_token_comes_from_the_environment_and_is_never_shown() {
    let config = parse_ok("[http]\ntoken = \"${TOKEN}\"\n");
    let token = config.http.token.as_ref().expect("token set");
    assert_eq!(token.expose(), "t0ken-value");
    assert!(!format!("{config:?}").contains("t0ken"));
    assert!(!serde_json::to_string(&config).expect("serializable").contains("t0ken"));
    assert_error("[http]\ntoken = \"${NOPE}\"\n", "http.token", "NOPE");
    assert_error("[http]\ntoken = \"  \"\n", "http.token", "empty");
}
