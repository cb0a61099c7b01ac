//! What the config says about freshness and metrics: `[metrics]` (histogram
//! buckets) and each feed's `timestamp = { pointer, unit }` (where a
//! message carries its own event time) and `stale_after` (how long an open
//! feed may go without a data message before it is reported `stale`).

use std::time::Duration;

use serde::Serialize;

use super::checks::check_pointer;
use super::raw::{RawDuration, RawMetrics, RawTimestamp};
use super::scope::Scope;
use super::session::optional_duration;
pub use crate::metrics::HistogramBuckets;

/// Most bounds a histogram may have: each is a series per feed.
const MAX_BUCKETS: usize = 64;

/// `[metrics]`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// Histogram bucket bounds, in seconds. They apply to series created
    /// after the sidecar starts with them: a reload does not change them.
    /// Shown as `[metrics]` is written (`delivery_buckets`, ...).
    #[serde(flatten)]
    pub buckets: HistogramBuckets,
}

/// Where a message carries its own event time, and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampConfig {
    /// JSON pointer to the timestamp, such as `/ts`.
    pub pointer: String,
    /// How the value there is written.
    pub unit: TimestampUnit,
}

/// How a message's timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// A number of seconds since the Unix epoch (fractions allowed).
    Seconds,
    /// Milliseconds since the Unix epoch.
    Millis,
    /// Microseconds since the Unix epoch.
    Micros,
    /// Nanoseconds since the Unix epoch.
    Nanos,
    /// An RFC 3339 string, such as `"2026-01-02T03:04:05.678Z"`.
    Rfc3339,
}

impl TimestampUnit {
    /// Every unit, as written in the config.
    pub const NAMES: [&'static str; 5] = ["s", "ms", "us", "ns", "rfc3339"];

    /// The name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "s",
            TimestampUnit::Millis => "ms",
            TimestampUnit::Micros => "us",
            TimestampUnit::Nanos => "ns",
            TimestampUnit::Rfc3339 => "rfc3339",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "s" => TimestampUnit::Seconds,
            "ms" => TimestampUnit::Millis,
            "us" => TimestampUnit::Micros,
            "ns" => TimestampUnit::Nanos,
            "rfc3339" => TimestampUnit::Rfc3339,
            _ => return None,
        })
    }
}

impl Serialize for TimestampConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("TimestampConfig", 2)?;
        out.serialize_field("pointer", &self.pointer)?;
        out.serialize_field("unit", self.unit.as_str())?;
        out.end()
    }
}

/// `[metrics]` over the built-in buckets; an invalid list keeps its default.
pub(super) fn metrics(raw: Option<&RawMetrics>, scope: &mut Scope<'_>) -> MetricsConfig {
    let mut buckets = HistogramBuckets::default();
    if let Some(raw) = raw {
        let lists = [
            ("delivery_buckets", &raw.delivery_buckets, &mut buckets.delivery),
            ("freshness_buckets", &raw.freshness_buckets, &mut buckets.freshness),
            ("network_buckets", &raw.network_buckets, &mut buckets.network),
        ];
        for (field, written, resolved) in lists {
            if let Some(written) = written {
                match check_buckets(written) {
                    Ok(()) => resolved.clone_from(written),
                    Err(message) => scope.error(field, message),
                }
            }
        }
    }
    MetricsConfig { buckets }
}

/// Bucket bounds: 1 to 64 finite numbers above 0, strictly ascending.
fn check_buckets(bounds: &[f64]) -> Result<(), String> {
    if bounds.is_empty() {
        return Err("must list at least one bound, in seconds".to_owned());
    }
    if bounds.len() > MAX_BUCKETS {
        return Err(format!("lists {} bounds: at most {MAX_BUCKETS}", bounds.len()));
    }
    if let Some(bad) = bounds.iter().find(|bound| !bound.is_finite() || **bound <= 0.0) {
        return Err(format!("{bad} is not a bound: use numbers of seconds above 0"));
    }
    if let Some(pair) = bounds.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!(
            "bounds must rise: {} is followed by {} (write them in ascending order, each once)",
            pair[0], pair[1]
        ));
    }
    Ok(())
}

/// A feed's `timestamp`; `None` inside when absent, `None` outside after an error.
pub(super) fn timestamp(
    raw: Option<&RawTimestamp>,
    scope: &mut Scope<'_>,
) -> Option<Option<TimestampConfig>> {
    let Some(raw) = raw else { return Some(None) };
    let pointer = match raw.pointer.as_deref() {
        None => scope.fail(
            "timestamp.pointer",
            "required: the JSON pointer to each message's event time, such as \"/ts\"",
        ),
        Some(pointer) => match check_pointer(pointer) {
            Ok(()) => Some(pointer.to_owned()),
            Err(message) => scope.fail("timestamp.pointer", message),
        },
    };
    let names = TimestampUnit::NAMES.join(", ");
    let unit = match raw.unit.as_deref() {
        None => scope.fail("timestamp.unit", format!("required: one of {names}")),
        Some(text) => match TimestampUnit::parse(text) {
            Some(unit) => Some(unit),
            None => scope.fail("timestamp.unit", format!("unknown unit {text:?}: use {names}")),
        },
    };
    Some(Some(TimestampConfig { pointer: pointer?, unit: unit? }))
}

/// A feed's `stale_after`: `None` inside when absent or `"0s"` (off).
pub(super) fn stale_after(
    raw: Option<&RawDuration>,
    scope: &mut Scope<'_>,
) -> Option<Option<Duration>> {
    optional_duration("stale_after", raw, None, scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_must_be_positive_ascending_and_short() {
        assert!(check_buckets(&[0.001, 0.01, 1.0]).is_ok());
        assert!(check_buckets(&[]).is_err());
        assert!(check_buckets(&[0.0, 1.0]).is_err());
        assert!(check_buckets(&[1.0, f64::INFINITY]).is_err());
        let falling = check_buckets(&[1.0, 0.5]).expect_err("falling");
        assert!(falling.contains("1 is followed by 0.5"), "{falling}");
        assert!(check_buckets(&vec![1.0; 65]).is_err());
    }

    #[test]
    fn bad_freshness_settings_are_each_reported_at_their_path() {
        let text = r#"
[metrics]
delivery_buckets = [1.0, 0.5]
network_buckets = []

[[feeds]]
name = "a"
url = "ws://127.0.0.1:1/"
timestamp = { pointer = "ts", unit = "minutes" }
stale_after = "soon"

[[feeds]]
name = "b"
url = "ws://127.0.0.1:1/"
timestamp = { unit = "ms" }
"#;
        let transports = crate::transports::TransportRegistry::with_defaults();
        let error = super::super::Config::from_toml_str(text, "t.toml".as_ref(), &transports)
            .expect_err("invalid");
        let paths: Vec<&str> = error.errors.iter().map(|error| error.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metrics.delivery_buckets",
                "metrics.network_buckets",
                "feeds[0] (a).timestamp.pointer",
                "feeds[0] (a).timestamp.unit",
                "feeds[0] (a).stale_after",
                "feeds[1] (b).timestamp.pointer",
            ],
            "{error}"
        );
        assert!(error.to_string().contains("use s, ms, us, ns, rfc3339"), "{error}");
    }

    #[test]
    fn freshness_settings_resolve_and_show_as_written() {
        let text = "[metrics]\nfreshness_buckets = [0.5, 5.0]\n[[feeds]]\nname = \"a\"\n\
                    url = \"ws://127.0.0.1:1/\"\ntimestamp = { pointer = \"/t\", unit = \"rfc3339\" }\n\
                    stale_after = \"2s\"\n";
        let transports = crate::transports::TransportRegistry::with_defaults();
        let config = super::super::Config::from_toml_str(text, "t.toml".as_ref(), &transports)
            .expect("valid");
        assert_eq!(config.metrics.buckets.freshness, [0.5, 5.0]);
        let feed = &config.feeds[0];
        assert_eq!(feed.stale_after, Some(Duration::from_secs(2)));
        let timestamp = TimestampConfig { pointer: "/t".into(), unit: TimestampUnit::Rfc3339 };
        assert_eq!(feed.timestamp.as_ref(), Some(&timestamp));
        let shown = serde_json::to_value(feed).expect("serializable");
        assert_eq!(shown["timestamp"], serde_json::json!({ "pointer": "/t", "unit": "rfc3339" }));
        assert_eq!(shown["stale_after"], "2s");
    }

    #[test]
    fn every_unit_name_round_trips() {
        for name in TimestampUnit::NAMES {
            assert_eq!(TimestampUnit::parse(name).map(TimestampUnit::as_str), Some(name));
        }
        assert_eq!(TimestampUnit::parse("msec"), None);
    }
}
