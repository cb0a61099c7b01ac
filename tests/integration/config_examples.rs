//! Every file in `config/` loads and validates, so the examples in the
//! repository never drift from what the code accepts.

use std::path::{Path, PathBuf};

use feedvisor::config::{Config, FeedDefaults, HeartbeatKind, ReplyMatch};
use feedvisor::transports::TransportRegistry;

/// The `*.toml` files in `config/`, sorted.
fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("read {}: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    files.sort();
    files
}

/// Whether a line outside comments uses `${VAR}`.
fn uses_env(text: &str) -> bool {
    text.lines().any(|line| !line.trim_start().starts_with('#') && line.contains("${"))
}

#[test]
fn every_example_config_is_valid() {
    let files = example_files();
    for expected in ["example.toml", "minimal.toml"] {
        assert!(
            files.iter().any(|path| path.ends_with(expected)),
            "config/{expected} is missing: {files:?}"
        );
    }
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable example");
        let loaded = if uses_env(&text) {
            // Examples must not depend on the environment of whoever runs the tests.
            let env = |name: &str| Some(format!("test-value-for-{name}"));
            Config::from_toml_str_with_env(&text, path, &env, &TransportRegistry::with_defaults())
        } else {
            Config::load(path, &TransportRegistry::with_defaults())
        };
        if let Err(error) = loaded {
            panic!("{} does not validate:\n{error}", path.display());
        }
    }
}

#[test]
fn example_sets_every_feed_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let config = Config::load(&path, &TransportRegistry::with_defaults())
        .unwrap_or_else(|error| panic!("{error}"));
    let stocks = config.feeds.iter().find(|feed| feed.name == "stocks").expect("stocks feed");
    assert!(stocks.topic.is_some());
    assert!(
        !stocks.headers.is_empty() && !stocks.subprotocols.is_empty() && !stocks.on_open.is_empty()
    );
    assert!(config.subscribers.iter().any(|subscriber| subscriber.topics.is_some()));

    // The session settings: each differs from its default, so the example shows it in use.
    let builtin = FeedDefaults::default();
    assert_ne!(stocks.reconnect, builtin.reconnect);
    assert!(matches!(
        stocks.heartbeat.as_ref().map(|heartbeat| &heartbeat.kind),
        Some(HeartbeatKind::Application { reply: ReplyMatch::Pointer { .. }, .. })
    ));
    assert!(stocks.idle_timeout.is_some());
    assert_ne!(stocks.outbound_queue, builtin.outbound_queue);
    assert!(stocks.sequence.is_some());
    assert!(stocks.on_open.iter().any(|message| message.contains("{{last_seq}}")));
    assert!(config.feeds.iter().any(|feed| !feed.required));
    assert!(config.feeds.iter().any(|feed| feed.reconnect.max_attempts > 0));
}

/// `[defaults]` in example.toml spells out every built-in default, as its comments say.
#[test]
fn example_defaults_are_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let config = Config::load(&path, &TransportRegistry::with_defaults())
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.defaults, FeedDefaults::default());
}
