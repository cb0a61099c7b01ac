//! Zero-gap settings of a feed: redundant legs (`urls`, `redundancy`), how
//! their duplicates are removed (`sequence`, or `dedup_window` without one),
//! how long a gap is held for another leg to fill (`gap_fill_wait`,
//! `gap_fill_max`), and make-before-break rotation (`rotate_every`).

use std::time::Duration;

use url::Url;

use super::checks::{parse_duration, parse_url};
use super::raw::{RawDedupWindow, RawDuration, RawFeed};
use super::scope::{Context, Scope};

/// Most legs a feed may have: each is a connection and a `leg` label value.
pub const MAX_LEGS: usize = 8;
/// Default `gap_fill_wait`.
pub(super) const DEFAULT_GAP_FILL_WAIT: Duration = Duration::from_secs(1);
/// Default `gap_fill_max`.
pub(super) const DEFAULT_GAP_FILL_MAX: usize = 10_000;
/// Largest `gap_fill_max`.
const MAX_GAP_FILL_MAX: u64 = 1_000_000;
/// Default `dedup_window` of a feed without `sequence`.
pub(super) const DEFAULT_DEDUP_WINDOW: DedupWindow = DedupWindow::Time(Duration::from_secs(5));
/// Most payload hashes a `dedup_window` remembers, whatever its length: the
/// memory bound of a time window (about 40 bytes each).
pub const MAX_DEDUP_ENTRIES: usize = 1 << 20;
/// Shortest `rotate_every`: a rotation must have time to open, subscribe and deliver.
const MIN_ROTATE_EVERY: Duration = Duration::from_secs(1);

/// How far back a payload hash is remembered to recognise a copy from another leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupWindow {
    /// Messages delivered within this long (and at most [`MAX_DEDUP_ENTRIES`]).
    Time(Duration),
    /// The last this many messages delivered.
    Count(usize),
}

/// A feed's redundant legs (`urls`), resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redundancy {
    /// One URL per leg, in order (the leg's index is its `leg` label); the same URL may repeat.
    pub urls: Vec<Url>,
    /// Each leg's URL as written when it used `${VAR}`, for display.
    pub written: Vec<Option<String>>,
    /// Without `sequence`: how long payload hashes are remembered.
    pub dedup_window: DedupWindow,
    /// How long a leg that runs ahead is held while another open leg can still fill the gap.
    pub gap_fill_wait: Duration,
    /// How many messages are held at most while waiting for a gap to be filled.
    pub gap_fill_max: usize,
}

/// What a feed's zero-gap fields resolve to.
pub(super) struct ZeroGap {
    /// The legs, when `urls` is given.
    pub redundancy: Option<Redundancy>,
    /// `rotate_every`; `None`: off.
    pub rotate_every: Option<Duration>,
}

/// Checks `urls`, `redundancy`, `dedup_window`, `gap_fill_*` and
/// `rotate_every`; `None` after an error (recorded in `scope`).
pub(super) fn zero_gap(
    raw: &RawFeed,
    stream: bool,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<ZeroGap> {
    let before = scope.errors.len();
    let rotate_every = rotate_every(raw, stream, scope);
    let redundancy = legs(raw, stream, context, scope);
    (scope.errors.len() == before).then_some(ZeroGap { redundancy: redundancy?, rotate_every })
}

fn rotate_every(raw: &RawFeed, stream: bool, scope: &mut Scope<'_>) -> Option<Duration> {
    let RawDuration(text) = raw.rotate_every.as_ref()?;
    match parse_duration(text) {
        Err(message) => scope.fail("rotate_every", message),
        Ok(every) if every.is_zero() => None,
        Ok(_) if stream => scope.fail(
            "rotate_every",
            "only for mode = \"message\": a streamed message cannot move to another connection",
        ),
        Ok(every) if every < MIN_ROTATE_EVERY => scope.fail(
            "rotate_every",
            format!("{text:?} is too short: at least \"1s\", or \"0s\" for off"),
        ),
        Ok(every) => Some(every),
    }
}

/// `Some(None)`: no legs; `None`: an error.
fn legs(
    raw: &RawFeed,
    stream: bool,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<Option<Redundancy>> {
    let Some(written) = raw.urls.as_ref() else {
        for field in ["redundancy", "dedup_window", "gap_fill_wait", "gap_fill_max"] {
            if is_set(raw, field) {
                scope.error(field, "only used with `urls`: the feed's redundant legs");
            }
        }
        return Some(None);
    };
    if raw.url.is_some() {
        return scope.fail("urls", "`url` and `urls` are exclusive: list every leg in `urls`");
    }
    if written.is_empty() {
        return scope.fail("urls", "needs at least one URL");
    }
    if written.len() > MAX_LEGS {
        return scope.fail("urls", format!("at most {MAX_LEGS} legs, not {}", written.len()));
    }
    if stream {
        return scope.fail(
            "urls",
            "only for mode = \"message\": pieces of streamed messages cannot be deduplicated",
        );
    }
    if raw.max_topics_per_connection.is_some() {
        return scope.fail(
            "urls",
            "legs cannot be combined with `max_topics_per_connection`: double a feed without \
             shards, or split the topics over feeds that each have `urls`",
        );
    }
    let mut urls = Vec::with_capacity(written.len());
    for (index, text) in written.iter().enumerate() {
        let field = format!("urls[{index}]");
        let Some(expanded) = scope.expand(&field, text, context.env) else { continue };
        match parse_url(&expanded) {
            Ok(url) => urls.push(url),
            Err(message) => scope.error(&field, message),
        }
    }
    if let Some(first) = urls.first() {
        if let Some(index) = urls.iter().position(|url| url.scheme() != first.scheme()) {
            let message = format!(
                "every leg uses the scheme of the first ({}), not {}",
                first.scheme(),
                urls[index].scheme()
            );
            scope.error(&format!("urls[{index}]"), message);
        }
    }
    let dedup_window = match &raw.dedup_window {
        Some(_) if raw.sequence.is_some() => scope.fail(
            "dedup_window",
            "only for feeds without `sequence`: sequenced legs are deduplicated by number",
        ),
        None => Some(DEFAULT_DEDUP_WINDOW),
        Some(RawDedupWindow::Count(0)) => scope.fail("dedup_window", "must be greater than 0"),
        Some(RawDedupWindow::Count(count)) if *count > MAX_DEDUP_ENTRIES as u64 => {
            scope.fail("dedup_window", format!("at most {MAX_DEDUP_ENTRIES} messages, not {count}"))
        }
        Some(RawDedupWindow::Count(count)) => {
            Some(DedupWindow::Count(usize::try_from(*count).unwrap_or(MAX_DEDUP_ENTRIES)))
        }
        Some(RawDedupWindow::Time(window)) => {
            scope.duration("dedup_window", Some(window), Duration::ZERO).map(DedupWindow::Time)
        }
    };
    let gap_fill_wait =
        scope.duration("gap_fill_wait", raw.gap_fill_wait.as_ref(), DEFAULT_GAP_FILL_WAIT);
    let gap_fill_max = match raw.gap_fill_max {
        None => Some(DEFAULT_GAP_FILL_MAX),
        Some(0) => scope.fail("gap_fill_max", "must be greater than 0"),
        Some(max) if max > MAX_GAP_FILL_MAX => {
            scope.fail("gap_fill_max", format!("at most {MAX_GAP_FILL_MAX} messages, not {max}"))
        }
        Some(max) => Some(usize::try_from(max).unwrap_or(DEFAULT_GAP_FILL_MAX)),
    };
    if urls.len() != written.len() {
        return None;
    }
    let written =
        written.iter().map(|text| Some(text.clone()).filter(|t| t.contains('$'))).collect();
    Some(Some(Redundancy {
        urls,
        written,
        dedup_window: dedup_window?,
        gap_fill_wait: gap_fill_wait?,
        gap_fill_max: gap_fill_max?,
    }))
}

fn is_set(raw: &RawFeed, field: &str) -> bool {
    match field {
        "redundancy" => raw.redundancy.is_some(),
        "dedup_window" => raw.dedup_window.is_some(),
        "gap_fill_wait" => raw.gap_fill_wait.is_some(),
        _ => raw.gap_fill_max.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, FeedConfig};
    use crate::transports::TransportRegistry;

    fn load(feed: &str) -> Result<Config, Vec<(String, String)>> {
        let text = format!("[[feeds]]\nname = \"legs\"\n{feed}\n");
        let env = |name: &str| (name == "HOST_B").then(|| "b.example.com".to_owned());
        let transports = TransportRegistry::with_defaults();
        Config::from_toml_str_with_env(&text, Path::new("legs.toml"), &env, &transports)
            .map_err(|error| error.errors.into_iter().map(|e| (e.path, e.message)).collect())
    }

    fn refused(feed: &str) -> Vec<(String, String)> {
        load(feed).err().unwrap_or_else(|| panic!("accepted: {feed}"))
    }

    #[test]
    fn urls_make_legs_whose_first_is_the_feed_url_and_which_show_back_as_written() {
        let config = load(
            "urls = [\"wss://a.example.com/t?key=1\", \"wss://${HOST_B}/t\", \"wss://a.example.com/t?key=1\"]\n\
             sequence = \"/seq\"\nrotate_every = \"23h50m\"",
        )
        .expect("valid");
        let feed = &config.feeds[0];
        let legs = feed.redundancy.as_ref().expect("legs");
        assert_eq!(legs.urls.len(), 3, "the same URL twice is two legs");
        assert_eq!(feed.url, legs.urls[0]);
        assert_eq!(legs.urls[1].host_str(), Some("b.example.com"));
        assert_eq!(legs.gap_fill_wait, DEFAULT_GAP_FILL_WAIT);
        assert_eq!(legs.gap_fill_max, DEFAULT_GAP_FILL_MAX);
        assert_eq!(feed.rotate_every, Some(Duration::from_secs(23 * 3600 + 50 * 60)));
        assert_eq!(legs.display_url(1), "wss://${HOST_B}/t", "a variable shows as written");
        assert!(!legs.display_url(0).contains("key=1"), "a query may hold a secret");
        let shown = toml::to_string(feed).expect("shown as TOML");
        assert!(shown.contains("urls = ["), "{shown}");
        assert!(!shown.contains("dedup_window"), "not for a sequenced feed: {shown}");
        assert!(!shown.contains("\nurl ="), "{shown}");
    }

    #[test]
    fn what_check_shows_loads_again_to_the_same_feed() {
        let written = "urls = [\"ws://a/x\", \"ws://b/x\"]\ndedup_window = 100\n\
                       gap_fill_wait = \"2s\"\ngap_fill_max = 5\nrotate_every = \"1h\"";
        let feed = load(written).expect("valid").feeds.remove(0);
        #[derive(serde::Serialize)]
        struct Document<'a> {
            feeds: [&'a FeedConfig; 1],
        }
        let shown = toml::to_string(&Document { feeds: [&feed] }).expect("shown as TOML");
        let again = Config::from_toml_str(
            &shown,
            Path::new("again.toml"),
            &TransportRegistry::with_defaults(),
        )
        .expect("loads again");
        assert_eq!(again.feeds[0], feed, "{shown}");
    }

    #[test]
    fn a_dedup_window_is_a_duration_or_a_count() {
        let timed =
            load("urls = [\"ws://a/\", \"ws://b/\"]\ndedup_window = \"2s\"").expect("valid");
        let legs = timed.feeds[0].redundancy.clone().expect("legs");
        assert_eq!(legs.dedup_window, DedupWindow::Time(Duration::from_secs(2)));
        let counted = load("urls = [\"ws://a/\"]\ndedup_window = 500").expect("valid");
        let legs = counted.feeds[0].redundancy.clone().expect("legs");
        assert_eq!(legs.dedup_window, DedupWindow::Count(500));
        let default = load("urls = [\"ws://a/\"]").expect("valid");
        assert_eq!(
            default.feeds[0].redundancy.as_ref().map(|l| l.dedup_window),
            Some(DEFAULT_DEDUP_WINDOW)
        );
    }

    #[test]
    fn what_legs_cannot_be_is_refused_naming_the_field() {
        let cases = [
            ("url = \"ws://a/\"\nurls = [\"ws://b/\"]", "urls", "exclusive"),
            ("urls = []", "urls", "at least one"),
            ("urls = [\"ws://a/\", \"tcp://b:1\"]", "urls[1]", "scheme of the first"),
            ("urls = [\"ws://a/\", \"not a url\"]", "urls[1]", "invalid URL"),
            ("urls = [\"ws://a/\"]\nmode = \"stream\"", "urls", "message"),
            (
                "urls = [\"ws://a/\"]\nmax_topics_per_connection = 2\n\
                 subscribe = { template = '{{topics}}', topics = [\"a\", \"b\", \"c\"] }",
                "urls",
                "max_topics_per_connection",
            ),
            (
                "urls = [\"ws://a/\"]\nsequence = \"/s\"\ndedup_window = \"5s\"",
                "dedup_window",
                "without `sequence`",
            ),
            ("urls = [\"ws://a/\"]\ndedup_window = 0", "dedup_window", "greater than 0"),
            ("urls = [\"ws://a/\"]\ndedup_window = 9999999", "dedup_window", "at most"),
            ("urls = [\"ws://a/\"]\ngap_fill_max = 0", "gap_fill_max", "greater than 0"),
            ("urls = [\"ws://a/\"]\ngap_fill_wait = \"soon\"", "gap_fill_wait", ""),
            ("url = \"ws://a/\"\nredundancy = \"all\"", "redundancy", "only used with `urls`"),
            ("url = \"ws://a/\"\ngap_fill_wait = \"1s\"", "gap_fill_wait", "only used with `urls`"),
            ("url = \"ws://a/\"\nrotate_every = \"500ms\"", "rotate_every", "too short"),
            (
                "url = \"ws://a/\"\nmode = \"stream\"\nrotate_every = \"1h\"",
                "rotate_every",
                "message",
            ),
        ];
        for (feed, field, says) in cases {
            let errors = refused(feed);
            let path = format!("feeds[0] (legs).{field}");
            assert!(
                errors.iter().any(|(at, message)| *at == path && message.contains(says)),
                "{feed}: {errors:?}"
            );
        }
        let nine: Vec<String> = (0..9).map(|i| format!("\"ws://h{i}/\"")).collect();
        let errors = refused(&format!("urls = [{}]", nine.join(", ")));
        assert!(errors.iter().any(|(_, message)| message.contains("at most 8")), "{errors:?}");
        let errors = refused("urls = [\"ws://a/\"]\nredundancy = \"any\"");
        assert!(errors.iter().any(|(_, message)| message.contains("all")), "{errors:?}");
        assert_eq!(
            load("url = \"ws://a/\"\nrotate_every = \"0s\"").expect("off").feeds[0].rotate_every,
            None
        );
    }
}
