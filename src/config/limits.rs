//! What venues limit, in the config: a feed's `outbound_rate` (also in
//! `[defaults]` and in a `[[hosts]]` entry) and the `[[hosts]]` entries,
//! each a connect budget and cool-down rules shared by every feed to one
//! host.
//!
//! Checked here, purely; used by `src/venue/`. A host entry's
//! `outbound_rate` is a per-connection default for the feeds to that host
//! (venues count messages per connection); a feed's own `outbound_rate`
//! wins over it, and it wins over `[defaults]`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::checks::label;
use super::raw::{RawHost, RawOutboundRate};
use super::scope::Scope;
use super::FieldError;

/// The most messages an `outbound_rate` may allow per window (each one
/// allowed is remembered until it leaves the window).
pub(super) const MAX_RATE_MESSAGES: u64 = 100_000;

/// The most connects a host entry may allow per window.
pub(super) const MAX_HOST_CONNECTS: u64 = 100_000;

/// The longest window or cool-down accepted: past it, clocks would be asked
/// for times they cannot hold, and no venue counts over days.
pub const MAX_LIMIT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The cool-down when a host refuses without `Retry-After`, unless its entry sets `cooldown`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);

/// The handshake statuses that put a host in a cool-down unless its entry sets `cooldown_statuses`.
pub const DEFAULT_COOLDOWN_STATUSES: [u16; 2] = [429, 503];

/// At most `messages` messages per rolling window of `per`, strictly (no burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutboundRate {
    /// Messages allowed in any window of `per`.
    pub messages: u32,
    /// The window.
    #[serde(serialize_with = "crate::sink::serialize_duration")]
    pub per: Duration,
    /// Whether heartbeat pings (protocol and application) count and wait too.
    pub count_pings: bool,
}

/// At most `connects` connect attempts per rolling window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnectBudget {
    /// Attempts allowed in any window of `per`.
    pub connects: u32,
    /// The window.
    #[serde(serialize_with = "crate::sink::serialize_duration")]
    pub per: Duration,
}

/// One `[[hosts]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostLimits {
    /// `match` as written: the entry's name in `/hosts` and in metric labels.
    #[serde(rename = "match")]
    pub matches: String,
    /// The host name (lower case, IPv6 without brackets).
    #[serde(skip)]
    pub host: String,
    /// The port, when `match` names one: then only feeds to that port match.
    #[serde(skip)]
    pub port: Option<u16>,
    /// The connect budget; `None`: connects are not limited, cool-downs still apply.
    /// Shown as written: `connects` and `per` beside the other fields.
    #[serde(flatten)]
    pub connect_budget: Option<ConnectBudget>,
    /// The cool-down when the host refuses without `Retry-After`.
    #[serde(serialize_with = "crate::sink::serialize_duration")]
    pub cooldown: Duration,
    /// The longest cool-down; `None`: the refused feed's `reconnect.max_retry_after`.
    #[serde(serialize_with = "serialize_optional_duration")]
    pub max_cooldown: Option<Duration>,
    /// Handshake statuses that start a cool-down.
    pub cooldown_statuses: Vec<u16>,
    /// Close codes that start a cool-down.
    pub cooldown_close_codes: Vec<u16>,
    /// Default `outbound_rate` of each connection to the host.
    pub outbound_rate: Option<OutboundRate>,
}

fn serialize_optional_duration<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => crate::sink::serialize_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// A duration of `field` at most [`MAX_LIMIT_DURATION`]; `None` after an error.
fn bounded(field: &str, duration: Option<Duration>, scope: &mut Scope<'_>) -> Option<Duration> {
    match duration {
        Some(duration) if duration > MAX_LIMIT_DURATION => {
            scope.fail(field, "is over the limit of 1 day")
        }
        other => other,
    }
}

impl HostLimits {
    /// Whether a feed connecting to `host`:`port` falls under this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host) && self.port.is_none_or(|own| own == port)
    }
}

/// `outbound_rate = { ... }` under `scope`, or `base` when absent; `None` after an error.
pub(super) fn outbound_rate(
    raw: Option<&RawOutboundRate>,
    base: Option<OutboundRate>,
    scope: &mut Scope<'_>,
) -> Option<Option<OutboundRate>> {
    let Some(raw) = raw else { return Some(base) };
    let messages = match raw.messages {
        None => scope.fail("outbound_rate.messages", "required: how many messages per `per`"),
        Some(0) => scope.fail(
            "outbound_rate.messages",
            "must be greater than 0 (leave outbound_rate out to send without pacing)",
        ),
        Some(count) if count > MAX_RATE_MESSAGES => scope.fail(
            "outbound_rate.messages",
            format!("{count} is over the limit of {MAX_RATE_MESSAGES}"),
        ),
        Some(count) => u32::try_from(count).ok(),
    };
    let per = match &raw.per {
        None => scope.fail("outbound_rate.per", "required: the window, such as \"1s\""),
        Some(per) => {
            let per = scope.duration("outbound_rate.per", Some(per), Duration::ZERO);
            bounded("outbound_rate.per", per, scope)
        }
    };
    Some(Some(OutboundRate {
        messages: messages?,
        per: per?,
        count_pings: raw.count_pings.unwrap_or(false),
    }))
}

/// Splits `match` into a lower-case host and an optional port.
fn parse_match(text: &str) -> Result<(String, Option<u16>), String> {
    let hint =
        "use a host name or host:port, such as \"api.example.com\" or \"api.example.com:443\"";
    let text = text.trim();
    if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
        return Err(format!("{text:?} is not a host: {hint}"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} lacks its closing ']': {hint}"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{text:?} is not a host: {hint}")),
            },
        }
    } else if text.matches(':').count() > 1 {
        (text, None) // a bare IPv6 address
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host name: {hint}"));
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Err(format!("{port:?} is not a port (1 to 65535): {hint}")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Checks every `[[hosts]]` entry; two entries that match the same host and port are refused.
pub(super) fn hosts(raw: &[RawHost], errors: &mut Vec<FieldError>) -> Vec<HostLimits> {
    let mut hosts = Vec::with_capacity(raw.len());
    let mut seen: HashMap<String, Vec<(usize, Option<u16>)>> = HashMap::new();
    for (index, entry) in raw.iter().enumerate() {
        let prefix = label("hosts", index, entry.host.as_deref());
        let mut scope = Scope { prefix: &prefix, errors: &mut *errors };
        if let Some(host) = host(entry, &mut scope) {
            let others = seen.entry(host.host.clone()).or_default();
            let overlapping = others
                .iter()
                .find(|(_, port)| port.is_none() || host.port.is_none() || *port == host.port);
            if let Some((first, _)) = overlapping {
                scope.error(
                    "match",
                    format!(
                        "matches the same host as hosts[{first}]: each host has one budget, \
                         so merge the two entries"
                    ),
                );
            } else {
                others.push((index, host.port));
                hosts.push(host);
            }
        }
    }
    hosts
}

fn host(raw: &RawHost, scope: &mut Scope<'_>) -> Option<HostLimits> {
    let before = scope.errors.len();
    let parsed = match raw.host.as_deref() {
        None => scope.fail("match", "required: the host name, such as \"api.example.com\""),
        Some(text) => parse_match(text).map_err(|message| scope.error("match", message)).ok(),
    };
    let connects = match raw.connects {
        Some(0) => scope.fail("connects", "must be greater than 0"),
        Some(count) if count > MAX_HOST_CONNECTS => {
            scope.fail("connects", format!("{count} is over the limit of {MAX_HOST_CONNECTS}"))
        }
        count => count.and_then(|count| u32::try_from(count).ok()),
    };
    let per = scope.duration("per", raw.per.as_ref(), Duration::ZERO);
    let per = bounded("per", per, scope);
    let connect_budget = match (connects, per, raw.connects.is_some(), raw.per.is_some()) {
        (Some(connects), Some(per), true, true) => Some(ConnectBudget { connects, per }),
        (_, _, true, false) => {
            scope.fail("per", "required with `connects`: the window, such as \"10s\"")
        }
        (_, _, false, true) => {
            scope.fail("connects", "required with `per`: attempts allowed per window")
        }
        _ => None,
    };
    let cooldown = scope.duration("cooldown", raw.cooldown.as_ref(), DEFAULT_COOLDOWN);
    let cooldown = bounded("cooldown", cooldown, scope);
    let max_cooldown = match &raw.max_cooldown {
        None => None,
        Some(max) => {
            let max = scope.duration("max_cooldown", Some(max), Duration::ZERO);
            bounded("max_cooldown", max, scope)
        }
    };
    let cooldown_statuses =
        raw.cooldown_statuses.clone().unwrap_or_else(|| DEFAULT_COOLDOWN_STATUSES.to_vec());
    for status in &cooldown_statuses {
        if !(400..=599).contains(status) {
            scope.error(
                "cooldown_statuses",
                format!("{status} is not an HTTP error status (400 to 599)"),
            );
        }
    }
    for code in &raw.cooldown_close_codes {
        if !(1000..=4999).contains(code) {
            scope.error(
                "cooldown_close_codes",
                format!("{code} is not a WebSocket close code (1000 to 4999)"),
            );
        }
    }
    let outbound_rate = outbound_rate(raw.outbound_rate.as_ref(), None, scope);
    if scope.errors.len() != before {
        return None;
    }
    let (host, port) = parsed?;
    Some(HostLimits {
        matches: raw.host.clone().unwrap_or_default(),
        host,
        port,
        connect_budget,
        cooldown: cooldown?,
        max_cooldown,
        cooldown_statuses,
        cooldown_close_codes: raw.cooldown_close_codes.clone(),
        outbound_rate: outbound_rate?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;
    use crate::transports::TransportRegistry;

    const FEED: &str = "[[feeds]]\nname = \"stocks\"\nurl = \"ws://api.example.com/ticks\"\n";

    fn parse(text: &str) -> Result<Config, Vec<FieldError>> {
        let transports = TransportRegistry::with_memory();
        Config::from_toml_str_with_env(text, Path::new("limits.toml"), &|_| None, &transports)
            .map_err(|error| error.errors)
    }

    #[track_caller]
    fn assert_refused(text: &str, path: &str, part: &str) {
        let errors = parse(text).expect_err("should be refused");
        assert!(
            errors.iter().any(|error| error.path == path && error.message.contains(part)),
            "expected {part:?} at {path:?}, got {errors:#?}"
        );
    }

    #[test]
    fn rates_and_hosts_resolve_with_their_defaults() {
        let text = format!(
            "[defaults]\noutbound_rate = {{ messages = 50, per = \"10s\" }}\n\
             [[hosts]]\nmatch = \"api.example.com\"\nconnects = 20\nper = \"10s\"\n\
             cooldown_close_codes = [1008]\noutbound_rate = {{ messages = 5, per = \"1s\", count_pings = true }}\n\
             {FEED}outbound_rate = {{ messages = 3, per = \"2s\" }}\n"
        );
        let config = parse(&text).expect("valid");
        let defaults =
            OutboundRate { messages: 50, per: Duration::from_secs(10), count_pings: false };
        assert_eq!(config.defaults.outbound_rate, Some(defaults));
        let feed = OutboundRate { messages: 3, per: Duration::from_secs(2), count_pings: false };
        assert_eq!(config.feeds[0].outbound_rate, Some(feed));
        let host = &config.hosts[0];
        assert_eq!(host.matches, "api.example.com");
        assert_eq!(
            host.connect_budget,
            Some(ConnectBudget { connects: 20, per: Duration::from_secs(10) })
        );
        assert_eq!(host.cooldown, DEFAULT_COOLDOWN);
        assert_eq!(host.cooldown_statuses, DEFAULT_COOLDOWN_STATUSES);
        assert_eq!(host.cooldown_close_codes, [1008]);
        assert!(host.outbound_rate.is_some_and(|rate| rate.count_pings));
    }

    #[test]
    fn a_host_entry_is_shown_as_written_and_reads_back() {
        let text = format!(
            "[[hosts]]\nmatch = \"API.example.com:443\"\nconnects = 20\nper = \"10s\"\n\
             max_cooldown = \"1m\"\n{FEED}"
        );
        let config = parse(&text).expect("valid");
        let shown = toml::to_string(&config).expect("serialises");
        let host = shown.split("[[hosts]]").nth(1).expect("a hosts entry");
        assert!(host.contains("connects = 20\nper = \"10s\""), "{host}");
        assert!(!host.contains("connect_budget"), "{host}");
        assert_eq!(parse(&shown).expect("reads back").hosts, config.hosts);
    }

    #[test]
    fn zero_messages_and_zero_windows_are_refused() {
        let feed = |rate: &str| format!("{FEED}outbound_rate = {rate}\n");
        assert_refused(
            &feed("{ messages = 0, per = \"1s\" }"),
            "feeds[0] (stocks).outbound_rate.messages",
            "must be greater than 0",
        );
        assert_refused(
            &feed("{ messages = 5, per = \"0s\" }"),
            "feeds[0] (stocks).outbound_rate.per",
            "must be greater than 0",
        );
        assert_refused(
            &feed("{ messages = 5 }"),
            "feeds[0] (stocks).outbound_rate.per",
            "required",
        );
        assert_refused(
            "[defaults]\noutbound_rate = { per = \"1s\" }\n",
            "defaults.outbound_rate.messages",
            "required",
        );
        assert_refused(
            &feed("{ messages = 1000000, per = \"1s\" }"),
            "feeds[0] (stocks).outbound_rate.messages",
            "over the limit",
        );
        let host = |rest: &str| format!("[[hosts]]\nmatch = \"api.example.com\"\n{rest}\n");
        assert_refused(
            &host("connects = 0\nper = \"10s\""),
            "hosts[0] (api.example.com).connects",
            "greater than 0",
        );
        assert_refused(
            &host("connects = 5\nper = \"0s\""),
            "hosts[0] (api.example.com).per",
            "greater than 0",
        );
        assert_refused(
            &host("connects = 5"),
            "hosts[0] (api.example.com).per",
            "required with `connects`",
        );
        let too_long = "over the limit of 1 day";
        assert_refused(
            &host("connects = 5\nper = \"30d\""),
            "hosts[0] (api.example.com).per",
            too_long,
        );
        assert_refused(&host("cooldown = \"2d\""), "hosts[0] (api.example.com).cooldown", too_long);
        let rate = feed("{ messages = 5, per = \"100y\" }");
        assert_refused(&rate, "feeds[0] (stocks).outbound_rate.per", too_long);
        assert_refused(
            &host("per = \"1s\""),
            "hosts[0] (api.example.com).connects",
            "required with `per`",
        );
        assert_refused(
            &host("cooldown_close_codes = [70000]"),
            "hosts[0].cooldown_close_codes[0]",
            "invalid value",
        );
        assert_refused(
            &host("cooldown_close_codes = [999]"),
            "hosts[0] (api.example.com).cooldown_close_codes",
            "not a WebSocket close code",
        );
        assert_refused(
            &host("cooldown_statuses = [200]"),
            "hosts[0] (api.example.com).cooldown_statuses",
            "not an HTTP error status",
        );
        assert_refused("[[hosts]]\nconnects = 5\nper = \"1s\"\n", "hosts[0].match", "required");
        assert_refused(
            "[[hosts]]\nmatch = \"wss://api.example.com\"\n",
            "hosts[0].match",
            "not a host",
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_place() {
        for (text, field) in [
            (
                format!("{FEED}outbound_rate = {{ messages = 5, per = \"1s\", burst = 2 }}\n"),
                "burst",
            ),
            ("[[hosts]]\nmatch = \"api.example.com\"\nconnect = 5\n".to_owned(), "connect"),
        ] {
            let errors = parse(&text).expect_err("should be refused");
            assert!(
                errors.iter().any(|error| error.message.contains("unknown field")
                    && error.message.contains(field)),
                "{errors:#?}"
            );
        }
    }

    #[test]
    fn two_entries_matching_the_same_host_are_refused() {
        let two = |first: &str, second: &str| {
            format!("[[hosts]]\nmatch = \"{first}\"\n[[hosts]]\nmatch = \"{second}\"\n")
        };
        assert_refused(
            &two("api.example.com", "API.example.com"),
            "hosts[1] (API.example.com).match",
            "same host as hosts[0]",
        );
        assert_refused(
            &two("api.example.com", "api.example.com:443"),
            "hosts[1].match",
            "same host as hosts[0]",
        );
        assert_refused(
            &two("api.example.com:443", "api.example.com:443"),
            "hosts[1].match",
            "merge",
        );
        // Two ports of one host are two budgets.
        assert!(parse(&two("api.example.com:443", "api.example.com:9443")).is_ok());
    }

    #[test]
    fn match_takes_a_host_or_a_host_and_port() {
        assert_eq!(parse_match("API.example.com"), Ok(("api.example.com".to_owned(), None)));
        assert_eq!(
            parse_match("api.example.com:443"),
            Ok(("api.example.com".to_owned(), Some(443)))
        );
        assert_eq!(parse_match("[::1]:9000"), Ok(("::1".to_owned(), Some(9000))));
        assert_eq!(parse_match("::1"), Ok(("::1".to_owned(), None)));
        for bad in
            ["", "wss://api.example.com", "api.example.com:0", "api.example.com:http", ":443"]
        {
            assert!(parse_match(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn an_entry_matches_its_host_in_any_case_and_its_port_only() {
        let mut errors = Vec::new();
        let raw = [
            RawHost { host: Some("api.example.com".into()), ..RawHost::default() },
            RawHost { host: Some("[::1]:9000".into()), ..RawHost::default() },
        ];
        let hosts = hosts(&raw, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(hosts[0].matches("API.Example.com", 443));
        assert!(hosts[0].matches("api.example.com", 8443));
        assert!(!hosts[0].matches("example.com", 443));
        assert!(hosts[1].matches("[::1]", 9000));
        assert!(!hosts[1].matches("::1", 9001));
    }
}
