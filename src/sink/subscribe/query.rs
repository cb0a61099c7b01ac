//! What a `/subscribe` request asks for (`?feed=...&topic=...`) and whether
//! its `Origin` may ask: pure checks, made before the upgrade.

use url::Url;

/// Patterns one parameter may list, summed over its repetitions.
pub(super) const MAX_PATTERNS: usize = 64;
/// The longest pattern accepted, in bytes.
pub(super) const MAX_PATTERN_LEN: usize = 256;

/// The subscription a `/subscribe` query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscribeQuery {
    /// Feed names or glob patterns; `["*"]` when the query names none.
    pub feeds: Vec<String>,
    /// Topic glob patterns; `None` (every message) when the query names none.
    pub topics: Option<Vec<String>>,
}

/// Why a `/subscribe` query was refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// A parameter other than `feed` and `topic`.
    #[error("unknown query parameter {0:?}: use feed=PATTERN and topic=PATTERN")]
    UnknownParameter(String),
    /// `feed=` or `topic=` with nothing (or an empty item in a comma list).
    #[error("empty {0} pattern: leave the parameter out to match everything")]
    EmptyPattern(&'static str),
    /// More than [`MAX_PATTERNS`] patterns.
    #[error("too many {0} patterns: at most {MAX_PATTERNS}")]
    TooManyPatterns(&'static str),
    /// A pattern longer than [`MAX_PATTERN_LEN`].
    #[error("{0} pattern longer than {MAX_PATTERN_LEN} bytes")]
    PatternTooLong(&'static str),
    /// A feed pattern no feed name can match.
    #[error("feed pattern {pattern:?} contains {bad:?}: feed names use letters, digits, '_', '.' and '-' (patterns add '*' and '?')")]
    BadFeedPattern {
        /// The pattern as given.
        pattern: String,
        /// The first character no feed name has.
        bad: char,
    },
}

/// Parses a query string: `feed` (default `*`) and `topic`, each repeatable
/// and comma-separated, percent-decoded, glob patterns as the router uses.
pub(crate) fn parse_query(query: &str) -> Result<SubscribeQuery, QueryError> {
    let mut feeds = Vec::new();
    let mut topics: Option<Vec<String>> = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (parameter, list) = match key.as_ref() {
            "feed" => ("feed", &mut feeds),
            "topic" => ("topic", topics.get_or_insert_with(Vec::new)),
            // The `[http].token` for browsers, which cannot set headers; checked by the HTTP layer.
            "token" => continue,
            other => return Err(QueryError::UnknownParameter(other.to_owned())),
        };
        for pattern in value.split(',') {
            if pattern.is_empty() {
                return Err(QueryError::EmptyPattern(parameter));
            }
            if pattern.len() > MAX_PATTERN_LEN {
                return Err(QueryError::PatternTooLong(parameter));
            }
            if list.len() == MAX_PATTERNS {
                return Err(QueryError::TooManyPatterns(parameter));
            }
            list.push(pattern.to_owned());
        }
    }
    for pattern in &feeds {
        let bad = pattern
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?')));
        if let Some(bad) = bad {
            return Err(QueryError::BadFeedPattern { pattern: pattern.clone(), bad });
        }
    }
    if feeds.is_empty() {
        feeds.push("*".to_owned());
    }
    Ok(SubscribeQuery { feeds, topics })
}

/// Whether a request with this `Origin` may subscribe: no `Origin` (a
/// program, not a browser page) always may; otherwise the origin must be
/// listed (compared as origins: scheme, host and port) or `"*"` listed.
pub(crate) fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allowed.iter().any(|entry| entry == "*") {
        return true;
    }
    let Some(origin) = normalize(origin) else { return false };
    allowed.iter().filter_map(|entry| normalize(entry)).any(|entry| entry == origin)
}

/// `scheme://host[:port]` with default ports left out and the host in
/// lower case; `None` for an opaque origin (`null`) or no URL at all.
fn normalize(origin: &str) -> Option<String> {
    let origin = Url::parse(origin).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn no_query_means_every_feed_and_every_topic() {
        let query = parse_query("").expect("valid");
        assert_eq!(query, SubscribeQuery { feeds: strings(&["*"]), topics: None });
    }

    #[test]
    fn parameters_repeat_and_split_on_commas() {
        let query = parse_query("feed=stocks,weather&topic=AAPL&feed=fx.*&topic=MS%2A,GOOG")
            .expect("valid");
        assert_eq!(query.feeds, strings(&["stocks", "weather", "fx.*"]));
        assert_eq!(query.topics, Some(strings(&["AAPL", "MS*", "GOOG"])));
    }

    #[test]
    fn topics_may_hold_any_character_feeds_may_not() {
        let query = parse_query("topic=EUR%2FUSD%20spot").expect("valid");
        assert_eq!(query.topics, Some(strings(&["EUR/USD spot"])));
        assert_eq!(
            parse_query("feed=st%2Fcks"),
            Err(QueryError::BadFeedPattern { pattern: "st/cks".to_owned(), bad: '/' })
        );
    }

    #[test]
    fn bad_queries_are_refused_with_what_is_wrong() {
        assert_eq!(parse_query("feeds=x"), Err(QueryError::UnknownParameter("feeds".to_owned())));
        assert_eq!(parse_query("feed="), Err(QueryError::EmptyPattern("feed")));
        assert_eq!(parse_query("topic=a,,b"), Err(QueryError::EmptyPattern("topic")));
        let long = format!("topic={}", "x".repeat(MAX_PATTERN_LEN + 1));
        assert_eq!(parse_query(&long), Err(QueryError::PatternTooLong("topic")));
        let many = vec!["f"; MAX_PATTERNS + 1].join(",");
        assert_eq!(parse_query(&format!("feed={many}")), Err(QueryError::TooManyPatterns("feed")));
        let message = parse_query("topic=").expect_err("refused").to_string();
        assert!(message.contains("empty topic pattern"), "{message}");
    }

    #[test]
    fn origins_are_checked_only_when_sent() {
        let allowed = strings(&["http://localhost:3000", "https://Dash.Example.com/"]);
        assert!(origin_allowed(None, &allowed));
        assert!(origin_allowed(None, &[]));
        assert!(origin_allowed(Some("http://localhost:3000"), &allowed));
        assert!(origin_allowed(Some("https://dash.example.com"), &allowed));
        assert!(origin_allowed(Some("https://dash.example.com:443"), &allowed));
        assert!(!origin_allowed(Some("http://localhost:3001"), &allowed));
        assert!(!origin_allowed(Some("http://dash.example.com"), &allowed));
        assert!(!origin_allowed(Some("null"), &allowed));
        assert!(!origin_allowed(Some("http://localhost:3000"), &[]));
    }

    #[test]
    fn a_star_allows_every_origin() {
        let any = strings(&["*"]);
        assert!(origin_allowed(Some("https://anything.example"), &any));
        assert!(origin_allowed(Some("null"), &any));
    }
}
