//! The load-time rule of `overflow = { conflate = "/pointer" }`: a feed in
//! stream mode delivers pieces of messages, which cannot stand in for one
//! another, so a conflating subscriber may not name one. (The pointer's
//! own checks, not empty and RFC 6901, are `KeyPointer`'s, in
//! `inbox/conflate.rs`; a stream feed added at run time under a subscriber's
//! pattern has its pieces queued as key-less entries, never replaced.)

use feedvisor_transport_api::DeliveryMode;
use wildmatch::WildMatch;

use super::checks::label;
use super::raw::RawSubscriber;
use super::{FeedConfig, FieldError, SubscriberConfig, SubscriberOverflow};

/// Refuses each conflating subscriber that names, or matches by pattern, a
/// feed in stream mode.
pub(super) fn check_stream_feeds(
    raw: &[RawSubscriber],
    subscribers: &[SubscriberConfig],
    feeds: &[FeedConfig],
    errors: &mut Vec<FieldError>,
) {
    for subscriber in subscribers {
        if !matches!(subscriber.overflow, SubscriberOverflow::Conflate(_)) {
            continue;
        }
        let streams: Vec<&str> = feeds
            .iter()
            .filter(|feed| matches!(feed.mode, DeliveryMode::Stream { .. }))
            .filter(|feed| {
                let mut patterns = subscriber.feeds.iter();
                patterns.any(|pattern| WildMatch::new(pattern).matches(&feed.name))
            })
            .map(|feed| feed.name.as_str())
            .collect();
        if streams.is_empty() {
            continue;
        }
        let index = raw
            .iter()
            .position(|raw| raw.name.as_deref() == Some(subscriber.name.as_str()))
            .unwrap_or_default();
        let prefix = label("subscribers", index, Some(&subscriber.name));
        let message = format!(
            "cannot conflate feeds in stream mode ({}): their pieces are parts of one \
             message, not messages that replace one another; use drop_oldest, drop_newest \
             or backpressure, or leave those feeds out",
            streams.join(", ")
        );
        errors.push(FieldError::new(format!("{prefix}.overflow"), message));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, KeyPointer, SubscriberOverflow};

    const FEEDS: &str = r#"
[[feeds]]
name = "ticks"
url = "ws://127.0.0.1:1/"

[[feeds]]
name = "bulk"
url = "ws://127.0.0.1:1/"
mode = "stream"
"#;

    fn load(subscribers: &str) -> Result<Config, ConfigError> {
        let transports = crate::transports::TransportRegistry::with_defaults();
        let text = format!("{FEEDS}{subscribers}");
        Config::from_toml_str(&text, "t.toml".as_ref(), &transports)
    }

    /// The one error of `subscribers`, as `path: message`.
    fn error_of(subscribers: &str) -> String {
        let error = load(subscribers).expect_err("refused");
        assert_eq!(error.errors.len(), 1, "{error}");
        format!("{}: {}", error.errors[0].path, error.errors[0].message)
    }

    #[test]
    fn a_conflating_subscriber_loads_and_shows_its_pointer_as_written() {
        let config = load(
            "[[subscribers]]\nname = \"latest\"\nfeeds = [\"ticks\"]\nqueue = 100\n\
             overflow = { conflate = \"/data/symbol\" }\n\
             [http.subscribe]\noverflow = { conflate = \"/symbol\" }\n",
        )
        .expect("valid");
        let pointer = KeyPointer::new("/data/symbol").expect("a pointer");
        assert_eq!(config.subscribers[0].overflow, SubscriberOverflow::Conflate(pointer));
        assert_eq!(config.subscribers[0].describe(), "stdout, queue 100 (conflate)");
        let shown = serde_json::to_value(&config.subscribers[0]).expect("serializable");
        assert_eq!(shown["overflow"], serde_json::json!({ "conflate": "/data/symbol" }));
        let symbol = KeyPointer::new("/symbol").expect("a pointer");
        assert_eq!(config.http.subscribe.overflow, SubscriberOverflow::Conflate(symbol));
    }

    #[test]
    fn an_empty_or_malformed_key_pointer_is_refused_at_its_path() {
        let entry = "[[subscribers]]\nname = \"latest\"\nfeeds = [\"ticks\"]\n";
        let empty = error_of(&format!("{entry}overflow = {{ conflate = \"\" }}\n"));
        assert!(empty.starts_with("subscribers[0] (latest).overflow"), "{empty}");
        assert!(empty.contains("the conflation key pointer is empty"), "{empty}");
        let bare = error_of(&format!("{entry}overflow = {{ conflate = \"symbol\" }}\n"));
        assert!(bare.contains("\"symbol\" is not a JSON pointer: start it with '/'"), "{bare}");
        let escape = error_of(&format!("{entry}overflow = {{ conflate = \"/a~b\" }}\n"));
        assert!(escape.contains("'~' must be followed by 0 or 1"), "{escape}");
        let endpoint = error_of("[http.subscribe]\noverflow = { conflate = \"\" }\n");
        assert!(endpoint.starts_with("http.subscribe.overflow"), "{endpoint}");
        let unknown = error_of(&format!("{entry}overflow = {{ coalesce = \"/s\" }}\n"));
        assert!(unknown.contains("unknown key \"coalesce\" in overflow"), "{unknown}");
        let bare_word = error_of(&format!("{entry}overflow = \"conflate\"\n"));
        assert!(bare_word.contains("write { conflate = \"/symbol\" }"), "{bare_word}");
        let extra = error_of(&format!("{entry}overflow = {{ conflate = \"/s\", by = \"/t\" }}\n"));
        assert!(extra.contains("unknown key \"by\" in overflow"), "{extra}");
    }

    #[test]
    fn conflating_a_stream_mode_feed_is_refused_naming_the_feed() {
        let by_name = error_of(
            "[[subscribers]]\nname = \"first\"\nfeeds = [\"ticks\"]\n\
             [[subscribers]]\nname = \"latest\"\nfeeds = [\"ticks\", \"bulk\"]\n\
             overflow = { conflate = \"/symbol\" }\n",
        );
        assert!(by_name.starts_with("subscribers[1] (latest).overflow: "), "{by_name}");
        assert!(by_name.contains("cannot conflate feeds in stream mode (bulk)"), "{by_name}");
        let by_pattern = error_of(
            "[[subscribers]]\nname = \"all\"\nfeeds = [\"*\"]\noverflow = { conflate = \"/s\" }\n",
        );
        assert!(by_pattern.contains("(bulk)"), "{by_pattern}");
        // The same subscriber without conflation, or without the stream feed, loads.
        load("[[subscribers]]\nname = \"all\"\nfeeds = [\"*\"]\n").expect("valid");
        load("[[subscribers]]\nname = \"t\"\nfeeds = [\"t*\"]\noverflow = { conflate = \"/s\" }\n")
            .expect("valid");
    }
}
