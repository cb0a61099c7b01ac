//! How resolved config is shown: `Debug` for logs, `Serialize` in the
//! config's own shape (sizes and durations in human form) for `feedvisor
//! check` and the status API. Both redact secrets: header values become
//! `***`, and fields that used `${VAR}` are shown as written.
//!
//! A serialized feed reads back through [`super::parse_feed_json`] as the
//! same feed, so every field is written out, including the ones that are off
//! (`idle_timeout = "0s"`, `heartbeat = { interval = "0s" }`).

use std::fmt;
use std::time::Duration;

use feedvisor_transport_api::{Compression, DeliveryMode, Framing, TlsOptions, TrustRoots};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::env::has_reference;
use super::heartbeat::as_written;
use super::legs::{DedupWindow, Redundancy};
use super::network::show_proxy;
use super::{
    FeedConfig, FeedDefaults, HeartbeatConfig, HeartbeatKind, OutboundQueueConfig, ReplyMatch,
    SubscribeConfig,
};
use crate::backoff::ReconnectPolicy;

/// Shown in place of a secret.
pub(super) const REDACTED: &str = "***";

impl fmt::Debug for FeedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(name, _)| (name.as_str(), REDACTED)).collect();
        f.debug_struct("FeedConfig")
            .field("name", &self.name)
            .field("url", &self.display_url())
            .field("mode", &self.mode)
            .field("topic", &self.topic)
            .field("headers", &headers)
            .field("subprotocols", &self.subprotocols)
            .field("on_open", &self.display_on_open())
            .field("max_message_size", &self.max_message_size)
            .field("framing", &self.written_framing())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls)
            .field("proxy", &show_proxy(&self.proxy))
            .field("reconnect", &self.reconnect)
            .field("heartbeat", &self.display_heartbeat())
            .field("idle_timeout", &self.idle_timeout)
            .field("outbound_queue", &self.outbound_queue)
            .field("sequence", &self.sequence)
            .field("required", &self.required)
            .field("timestamp", &self.timestamp)
            .field("stale_after", &self.stale_after)
            .field("compression", &self.compression)
            .field("decode", &self.decode)
            .field("subscribe", &self.subscribe)
            .field("credentials", &self.credentials)
            .field("outbound_rate", &self.outbound_rate)
            .field("legs", &self.redundancy.as_ref().map(|legs| legs.urls.len()))
            .field("rotate_every", &self.rotate_every)
            .finish_non_exhaustive()
    }
}

/// In the config's shape (sizes and durations in human form), so that the
/// output of `feedvisor check` reads like the file; secrets redacted.
impl Serialize for FeedConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Headers<'a>(&'a [(String, String)]);
        impl Serialize for Headers<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (name, _) in self.0 {
                    map.serialize_entry(name, REDACTED)?;
                }
                map.end()
            }
        }
        let mut out = serializer.serialize_struct("FeedConfig", 19)?;
        out.serialize_field("name", &self.name)?;
        let (legs, sequenced) = (self.redundancy.as_ref(), self.sequence.is_some());
        show_legs(legs, self.rotate_every, sequenced, &self.display_url(), &mut out)?;
        out.serialize_field("mode", mode_name(self.mode))?;
        match &self.topic {
            Some(topic) => out.serialize_field("topic", topic)?,
            None => out.skip_field("topic")?,
        }
        out.serialize_field("headers", &Headers(&self.headers))?;
        out.serialize_field("subprotocols", &self.subprotocols)?;
        out.serialize_field("on_open", self.display_on_open())?;
        out.serialize_field("max_message_size", &format_size(self.max_message_size))?;
        match self.mode {
            DeliveryMode::Stream { chunk_size } => {
                let chunk_size = u64::try_from(chunk_size).unwrap_or(u64::MAX);
                out.serialize_field("chunk_size", &format_size(chunk_size))?;
            }
            DeliveryMode::Message => out.skip_field("chunk_size")?,
        }
        match self.written_framing() {
            Some(framing) => out.serialize_field("framing", framing_name(framing))?,
            None => out.skip_field("framing")?,
        }
        out.serialize_field("handshake_timeout", &format_duration(self.handshake_timeout))?;
        out.serialize_field("tls", &ShowTls(&self.tls))?;
        match show_proxy(&self.proxy) {
            Some(proxy) => out.serialize_field("proxy", &proxy)?,
            None => out.skip_field("proxy")?,
        }
        out.serialize_field("reconnect", &ShowReconnect(&self.reconnect))?;
        out.serialize_field("heartbeat", &ShowHeartbeat(self.display_heartbeat().as_ref()))?;
        out.serialize_field("idle_timeout", &format_off(self.idle_timeout))?;
        out.serialize_field("outbound_queue", &ShowQueue(&self.outbound_queue))?;
        match &self.sequence {
            Some(sequence) => out.serialize_field("sequence", sequence)?,
            None => out.skip_field("sequence")?,
        }
        out.serialize_field("required", &self.required)?;
        match &self.timestamp {
            Some(timestamp) => out.serialize_field("timestamp", timestamp)?,
            None => out.skip_field("timestamp")?,
        }
        match self.stale_after {
            Some(after) => out.serialize_field("stale_after", &format_duration(after))?,
            None => out.skip_field("stale_after")?,
        }
        show_compression(self.compression, &mut out)?;
        match self.decode {
            Some(decode) => out.serialize_field("decode", decode.name())?,
            None => out.skip_field("decode")?,
        }
        show_subscribe(self.subscribe.as_ref(), &mut out)?;
        optional_field(&mut out, "credentials", self.credentials.as_ref())?;
        optional_field(&mut out, "outbound_rate", self.outbound_rate.as_ref())?;
        out.end()
    }
}

/// permessage-deflate's fields as the feed set them (none when it set none).
fn show_compression<S: SerializeStruct>(
    compression: Option<Compression>,
    out: &mut S,
) -> Result<(), S::Error> {
    let params = match compression {
        None => return Ok(()),
        Some(Compression::Off) => return out.serialize_field("compression", "off"),
        Some(Compression::Deflate(params)) => params,
    };
    out.serialize_field("compression", "deflate")?;
    if let Some(bits) = params.client_max_window_bits {
        out.serialize_field("client_max_window_bits", &bits)?;
    }
    if let Some(bits) = params.server_max_window_bits {
        out.serialize_field("server_max_window_bits", &bits)?;
    }
    if params.client_no_context_takeover {
        out.serialize_field("client_no_context_takeover", &true)?;
    }
    if params.server_no_context_takeover {
        out.serialize_field("server_no_context_takeover", &true)?;
    }
    Ok(())
}

impl FeedDefaults {
    /// `heartbeat` with its message as written.
    fn display_heartbeat(&self) -> Option<HeartbeatConfig> {
        as_written(self.heartbeat.as_ref(), self.unexpanded_heartbeat_message.as_deref())
    }
}

impl fmt::Debug for FeedDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedDefaults")
            .field("mode", &self.mode())
            .field("max_message_size", &self.max_message_size)
            .field("chunk_size", &self.chunk_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("reconnect", &self.reconnect)
            .field("heartbeat", &self.display_heartbeat())
            .field("idle_timeout", &self.idle_timeout)
            .field("outbound_queue", &self.outbound_queue)
            .field("required", &self.required)
            .field("credentials", &self.credentials)
            .field("outbound_rate", &self.outbound_rate)
            .finish_non_exhaustive()
    }
}

/// In the shape of `[defaults]`, like [`FeedConfig`]'s.
impl Serialize for FeedDefaults {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("FeedDefaults", 9)?;
        out.serialize_field("mode", mode_name(self.mode()))?;
        out.serialize_field("max_message_size", &format_size(self.max_message_size))?;
        out.serialize_field("chunk_size", &format_size(self.chunk_size))?;
        out.serialize_field("handshake_timeout", &format_duration(self.handshake_timeout))?;
        out.serialize_field("reconnect", &ShowReconnect(&self.reconnect))?;
        out.serialize_field("heartbeat", &ShowHeartbeat(self.display_heartbeat().as_ref()))?;
        out.serialize_field("idle_timeout", &format_off(self.idle_timeout))?;
        out.serialize_field("outbound_queue", &ShowQueue(&self.outbound_queue))?;
        out.serialize_field("required", &self.required)?;
        optional_field(&mut out, "credentials", self.credentials.as_ref())?;
        optional_field(&mut out, "outbound_rate", self.outbound_rate.as_ref())?;
        out.end()
    }
}

/// The name of a delivery mode in the config (`mode = "stream"`) and in the status API.
pub(crate) fn mode_name(mode: DeliveryMode) -> &'static str {
    match mode {
        DeliveryMode::Message => "message",
        DeliveryMode::Stream { .. } => "stream",
    }
}

/// The name of a framing in the config (`framing = "length_prefixed"`).
pub(crate) fn framing_name(framing: Framing) -> &'static str {
    match framing {
        Framing::Lines => "lines",
        Framing::LengthPrefixed => "length_prefixed",
    }
}

/// `tls = { ... }` of a feed; fields at their default are left out.
struct ShowTls<'a>(&'a TlsOptions);

impl Serialize for ShowTls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tls = self.0;
        let mut out = serializer.serialize_map(None)?;
        if tls.roots != TrustRoots::default() {
            out.serialize_entry("roots", tls.roots.as_str())?;
        }
        for (name, file) in [
            ("ca_file", &tls.ca_file),
            ("client_cert", &tls.client_cert),
            ("client_key", &tls.client_key),
        ] {
            if let Some(file) = file {
                out.serialize_entry(name, file)?;
            }
        }
        if let Some(server_name) = &tls.server_name {
            out.serialize_entry("server_name", server_name)?;
        }
        if !tls.pin_sha256.is_empty() {
            out.serialize_entry("pin_sha256", &tls.pin_sha256)?;
        }
        if tls.insecure_skip_verify {
            out.serialize_entry("insecure_skip_verify", &true)?;
        }
        out.end()
    }
}

/// `reconnect = { ... }` with every field, durations in human form.
struct ShowReconnect<'a>(&'a ReconnectPolicy);

impl Serialize for ShowReconnect<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let policy = self.0;
        let mut out = serializer.serialize_struct("ReconnectPolicy", 8)?;
        out.serialize_field("policy", policy.kind.as_str())?;
        out.serialize_field("initial", &format_duration(policy.initial))?;
        out.serialize_field("max", &format_duration(policy.max))?;
        out.serialize_field("multiplier", &policy.multiplier)?;
        out.serialize_field("jitter", policy.jitter.as_str())?;
        out.serialize_field("max_attempts", &policy.max_attempts)?;
        out.serialize_field("reset_after", &format_duration(policy.reset_after))?;
        out.serialize_field("max_retry_after", &format_duration(policy.max_retry_after))?;
        out.end()
    }
}

/// `heartbeat = { ... }` as it would be written; off is `{ interval = "0s" }`.
/// The message must already be the one to show (see [`as_written`]).
struct ShowHeartbeat<'a>(Option<&'a HeartbeatConfig>);

impl Serialize for ShowHeartbeat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        let Some(heartbeat) = self.0 else {
            out.serialize_entry("interval", &format_duration(Duration::ZERO))?;
            return out.end();
        };
        out.serialize_entry("interval", &format_duration(heartbeat.interval))?;
        out.serialize_entry("timeout", &format_duration(heartbeat.timeout))?;
        if let HeartbeatKind::Application { message, reply } = &heartbeat.kind {
            out.serialize_entry("message", message)?;
            match reply {
                ReplyMatch::Substring(value) => out.serialize_entry("reply", value)?,
                ReplyMatch::Pointer { pointer, value } => {
                    out.serialize_entry("reply", value)?;
                    out.serialize_entry("reply_pointer", pointer)?;
                }
            }
        }
        out.end()
    }
}

/// `outbound_queue = { ... }`, the byte bound in human form.
struct ShowQueue<'a>(&'a OutboundQueueConfig);

impl Serialize for ShowQueue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let queue = self.0;
        let mut out = serializer.serialize_struct("OutboundQueueConfig", 3)?;
        out.serialize_field("max_messages", &queue.max_messages)?;
        out.serialize_field("max_bytes", &format_size(queue.max_bytes))?;
        out.serialize_field("overflow", &queue.overflow)?;
        out.end()
    }
}

/// Exact human form of a byte count, readable back by [`super::checks::parse_size`]: `64KiB`, `1000B`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, factor) in UNITS {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Human form of a duration, readable back by [`super::parse_duration`]: `10s`, `1m 30s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// An optional duration where `"0s"` means off, as the config writes it.
fn format_off(duration: Option<Duration>) -> String {
    format_duration(duration.unwrap_or(Duration::ZERO))
}

/// `wss://user:pass@host/` becomes `wss://user:***@host/`.
pub(super) fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let start = scheme_end + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |offset| start + offset);
    let Some(at) = url[start..end].rfind('@') else { return url.to_owned() };
    let Some(colon) = url[start..start + at].find(':') else { return url.to_owned() };
    format!("{}:{REDACTED}{}", &url[..start + colon], &url[start + at..])
}

/// Hides each query value of a URL as written that is not only a `${VAR}`
/// reference: `?key=literal&t=${TOKEN}` becomes `?key=***&t=${TOKEN}`.
pub(super) fn mask_literal_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_owned() };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let only_reference =
                value.starts_with("${") && value.ends_with('}') && value.matches("${").count() == 1;
            if value.is_empty() || only_reference {
                pair.to_owned()
            } else {
                format!("{key}={REDACTED}")
            }
        })
        .collect();
    format!("{base}?{}", masked.join("&"))
}

/// Hides a query string written out literally: API keys often travel there.
pub(super) fn mask_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?{REDACTED}"),
        None => url.to_owned(),
    }
}

/// A feed's `subscribe` table and `max_topics_per_connection`, as a config
/// file writes them (nothing when the feed has none).
fn show_subscribe<S: SerializeStruct>(
    subscribe: Option<&SubscribeConfig>,
    out: &mut S,
) -> Result<(), S::Error> {
    struct Table<'a>(&'a SubscribeConfig);
    impl Serialize for Table<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let subscribe = self.0;
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("template", &subscribe.template)?;
            map.serialize_entry("topics", &subscribe.topics)?;
            map.serialize_entry("per_message", &subscribe.per_message)?;
            if let Some(ack) = &subscribe.ack {
                map.serialize_entry("ack", &Ack(ack))?;
            }
            if let Some(after) = subscribe.stale_after {
                map.serialize_entry("stale_after", &format_duration(after))?;
            }
            map.serialize_entry("replay_rejected", &subscribe.replay_rejected)?;
            map.end()
        }
    }
    struct Ack<'a>(&'a super::AckConfig);
    impl Serialize for Ack<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let ack = self.0;
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("id", &ack.id)?;
            let optional = [
                ("error", &ack.error),
                ("success", &ack.success),
                ("success_value", &ack.success_value),
                ("reason", &ack.reason),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    map.serialize_entry(name, value)?;
                }
            }
            map.serialize_entry("timeout", &format_duration(ack.timeout))?;
            map.end()
        }
    }
    let Some(subscribe) = subscribe else { return Ok(()) };
    out.serialize_field("subscribe", &Table(subscribe))?;
    if let Some(max) = subscribe.max_topics_per_connection {
        out.serialize_field("max_topics_per_connection", &max)?;
    }
    Ok(())
}

impl Redundancy {
    /// Leg `index`'s URL as it may be shown: `${VAR}` as written, password and query masked.
    pub(crate) fn display_url(&self, index: usize) -> String {
        match self.written.get(index).and_then(Option::as_deref) {
            Some(written) if has_reference(written) => mask_literal_query(&mask_password(written)),
            Some(written) => mask_query(&mask_password(written)),
            None => self
                .urls
                .get(index)
                .map_or_else(String::new, |url| mask_query(&mask_password(url.as_str()))),
        }
    }
}

/// Writes `url` (one leg) or `urls` and the legs' settings, in the config's shape.
fn show_legs<S: SerializeStruct>(
    redundancy: Option<&Redundancy>,
    rotate_every: Option<Duration>,
    sequenced: bool,
    display_url: &str,
    out: &mut S,
) -> Result<(), S::Error> {
    match redundancy {
        None => out.serialize_field("url", display_url)?,
        Some(legs) => {
            let urls: Vec<String> = (0..legs.urls.len()).map(|i| legs.display_url(i)).collect();
            out.serialize_field("urls", &urls)?;
            out.serialize_field("redundancy", "all")?;
            match legs.dedup_window {
                _ if sequenced => out.skip_field("dedup_window")?,
                DedupWindow::Time(window) => {
                    out.serialize_field("dedup_window", &format_duration(window))?
                }
                DedupWindow::Count(count) => out.serialize_field("dedup_window", &count)?,
            }
            out.serialize_field("gap_fill_wait", &format_duration(legs.gap_fill_wait))?;
            out.serialize_field("gap_fill_max", &legs.gap_fill_max)?;
        }
    }
    if let Some(every) = rotate_every {
        out.serialize_field("rotate_every", &format_duration(every))?;
    }
    Ok(())
}

/// Writes `value` as field `name`, or skips the field when there is none.
fn optional_field<S: SerializeStruct, T: Serialize + ?Sized>(
    out: &mut S,
    name: &'static str,
    value: Option<&T>,
) -> Result<(), S::Error> {
    match value {
        Some(value) => out.serialize_field(name, value),
        None => out.skip_field(name),
    }
}
