//! The TOML config: what feeds to keep alive and who receives their messages.
//!
//! Loading runs in three steps:
//! 1. `raw.rs`: serde parses the text into structs that mirror it exactly
//!    (unknown fields are errors; a TOML syntax error names line and column;
//!    a type error names the field path, such as `feeds[0].mode`).
//! 2. `validate.rs`: a pure function checks every field, applies
//!    `[defaults]`, expands `${VAR}` (`env.rs`) and collects *every* error
//!    with its path, such as `feeds[1] (weather).url`.
//! 3. The result is a resolved [`Config`] that the rest of the program uses
//!    without further checks.
//!
//! A feed added at run time goes through the same raw struct and the same
//! checks: see [`parse_feed_json`].
//!
//! Secrets: header values are never printed (`Debug` and `Serialize` show
//! `***`), and a URL or `on_open` message that uses `${VAR}` is shown as
//! written, with the reference unexpanded; a URL password is masked.

mod env;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

pub use validate::{parse_duration, parse_size, MAX_MESSAGE_SIZE_LIMIT};

/// A whole, valid, resolved config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The admin HTTP server (`/metrics`, `/feeds`, ...).
    pub http: HttpConfig,
    /// `[defaults]`, kept so that feeds added at run time inherit them too.
    pub defaults: FeedDefaults,
    /// The feeds to connect to, in file order; names are unique.
    pub feeds: Vec<FeedConfig>,
    /// Who receives what; names are unique and every plain feed name exists.
    pub subscribers: Vec<SubscriberConfig>,
}

/// `[http]`: the admin HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    /// Address to listen on; loopback by default so nothing is exposed.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9900)) }
    }
}

/// `[defaults]`: values a feed gets for the fields it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedDefaults {
    /// Default [`FeedConfig::mode`].
    pub mode: FeedMode,
    /// Default [`FeedConfig::max_message_size`], in bytes.
    #[serde(serialize_with = "serialize_size")]
    pub max_message_size: u64,
    /// Default [`FeedConfig::chunk_size`], in bytes.
    #[serde(serialize_with = "serialize_size")]
    pub chunk_size: u64,
    /// Default [`FeedConfig::handshake_timeout`].
    #[serde(serialize_with = "serialize_duration")]
    pub handshake_timeout: Duration,
}

impl Default for FeedDefaults {
    fn default() -> Self {
        Self {
            mode: FeedMode::Message,
            max_message_size: 1 << 20,
            chunk_size: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// One upstream connection, resolved: defaults applied, `${VAR}` expanded.
///
/// `Debug` and `Serialize` redact secrets (see the module docs), so both are
/// safe to log and to return from the status API.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// Unique; used in metric labels and subscriber patterns.
    pub name: String,
    /// Upstream address; the scheme (`ws`, `wss`, `memory`) picks the transport.
    pub url: Url,
    /// Whole messages, or chunks of a byte stream.
    pub mode: FeedMode,
    /// JSON pointer to each message's topic (`/symbol`); `None`: no topic.
    pub topic: Option<String>,
    /// Extra handshake headers; the values may be secrets.
    pub headers: Vec<(String, String)>,
    /// `Sec-WebSocket-Protocol` offers, in order of preference.
    pub subprotocols: Vec<String>,
    /// Text messages sent after every (re)connect, such as a subscription.
    pub on_open: Vec<String>,
    /// Largest message accepted in message mode, in bytes; larger closes with 1009.
    pub max_message_size: u64,
    /// Largest chunk delivered in stream mode, in bytes.
    pub chunk_size: u64,
    /// How long the opening handshake may take.
    pub handshake_timeout: Duration,
    /// TLS settings for `wss://`.
    pub tls: TlsConfig,
    /// The URL and `on_open` as written, when they use `${VAR}`: for display.
    pub unexpanded: Unexpanded,
}

/// The text of fields that used `${VAR}`, before expansion, so that `Debug`
/// and `Serialize` show `${STOCKS_TOKEN}` instead of the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unexpanded {
    /// The URL as written, if it uses `${VAR}`.
    pub url: Option<String>,
    /// All `on_open` messages as written, if any uses `${VAR}`; else empty.
    pub on_open: Vec<String>,
}

impl FeedConfig {
    /// A feed with the built-in defaults, for code and tests that build feeds directly.
    pub fn new(name: impl Into<String>, url: Url) -> Self {
        let defaults = FeedDefaults::default();
        Self {
            name: name.into(),
            url,
            mode: defaults.mode,
            topic: None,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            on_open: Vec::new(),
            max_message_size: defaults.max_message_size,
            chunk_size: defaults.chunk_size,
            handshake_timeout: defaults.handshake_timeout,
            tls: TlsConfig::default(),
            unexpanded: Unexpanded::default(),
        }
    }

    /// The URL safe to show: as written if it used `${VAR}`, password masked.
    pub fn display_url(&self) -> String {
        match self.unexpanded.url.as_deref() {
            // As written: `${VAR}` placeholders show where secrets go, not the secrets.
            Some(written) => mask_password(written),
            None => mask_query(&mask_password(self.url.as_str())),
        }
    }

    /// The `on_open` messages safe to show: as written if any used `${VAR}`.
    pub fn display_on_open(&self) -> &[String] {
        if self.unexpanded.on_open.len() == self.on_open.len() && !self.on_open.is_empty() {
            &self.unexpanded.on_open
        } else {
            &self.on_open
        }
    }
}

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
            .field("chunk_size", &self.chunk_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls)
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
        let mut out = serializer.serialize_struct("FeedConfig", 11)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("url", &self.display_url())?;
        out.serialize_field("mode", &self.mode)?;
        match &self.topic {
            Some(topic) => out.serialize_field("topic", topic)?,
            None => out.skip_field("topic")?,
        }
        out.serialize_field("headers", &Headers(&self.headers))?;
        out.serialize_field("subprotocols", &self.subprotocols)?;
        out.serialize_field("on_open", self.display_on_open())?;
        out.serialize_field("max_message_size", &format_size(self.max_message_size))?;
        match self.mode {
            FeedMode::Stream => out.serialize_field("chunk_size", &format_size(self.chunk_size))?,
            FeedMode::Message => out.skip_field("chunk_size")?,
        }
        out.serialize_field("handshake_timeout", &format_duration(self.handshake_timeout))?;
        out.serialize_field("tls", &self.tls)?;
        out.end()
    }
}

/// How a feed delivers data, after the WinRT MessageWebSocket / StreamWebSocket pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedMode {
    /// Whole messages, bounded by `max_message_size`.
    #[default]
    Message,
    /// Ordered chunks of at most `chunk_size`, message boundaries marked.
    Stream,
}

impl FeedMode {
    /// The name used in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Stream => "stream",
        }
    }
}

/// `tls = { ... }` of a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) to trust, besides the built-in roots;
    /// already resolved against the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// `[[subscribers]]`: a built-in sink and what it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberConfig {
    /// Unique; used in metric labels.
    pub name: String,
    /// Feed names or glob patterns (`*`, `?`); plain names are known feeds.
    pub feeds: Vec<String>,
    /// Topic glob patterns; `None` receives every message, with or without topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Where the messages go.
    pub sink: SinkKind,
}

/// The built-in sinks a config can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON lines on standard output.
    #[default]
    Stdout,
}

impl SinkKind {
    /// The name used in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
        }
    }
}

/// Every problem found in one config file (or one feed definition).
///
/// Displays one line per error, such as
/// `config/bad.toml: feeds[1] (weather).url: unsupported scheme "htp": use ws:// or wss://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given), or `feed` for a feed defined on its own.
    pub origin: String,
    /// At least one error, in the order found.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {error}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One problem, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `feeds[1] (weather).url`, `http.listen`; empty for the whole document.
    pub path: String,
    /// What is wrong, lower case; never contains a secret.
    pub message: String,
    /// Line and column in the file, when the parser knows them.
    pub location: Option<Location>,
}

impl FieldError {
    /// An error at `path` without a known location.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), location: None }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, self.path.is_empty()) {
            (Some(at), true) => {
                write!(f, "line {}, column {}: {}", at.line, at.column, self.message)
            }
            (Some(at), false) => {
                write!(
                    f,
                    "{}: {} (line {}, column {})",
                    self.path, self.message, at.line, at.column
                )
            }
            (None, true) => f.write_str(&self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A position in a file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text`.
    fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl Config {
    /// Reads and validates a config file; `${VAR}` comes from the process
    /// environment, relative paths are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            origin: origin.clone(),
            errors: vec![FieldError::new("", format!("cannot read the file: {error}"))],
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base_dir = absolute.parent().unwrap_or(Path::new(""));
        parse_toml(&text, origin, base_dir, &|name: &str| std::env::var(name).ok())
    }

    /// Validates config text as if read from `origin` (which names it in
    /// errors and anchors relative paths); `${VAR}` from the process environment.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Self::from_toml_str_with_env(text, origin, &|name: &str| std::env::var(name).ok())
    }

    /// Like [`Config::from_toml_str`], with `${VAR}` looked up in `env`.
    pub fn from_toml_str_with_env(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let base_dir = origin.parent().unwrap_or(Path::new(""));
        parse_toml(text, origin.display().to_string(), base_dir, env)
    }
}

fn parse_toml(
    text: &str,
    origin: String,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = raw::from_toml(text)
        .map_err(|error| ConfigError { origin: origin.clone(), errors: vec![error] })?;
    let context = validate::Context { base_dir, env, file_exists: &Path::is_file };
    validate::config(&raw, &context).map_err(|errors| ConfigError { origin, errors })
}

/// Validates one feed given as JSON in the config's `[[feeds]]` shape (the
/// body of `POST /feeds`), with the same checks as a file. Unset fields take
/// `defaults`; relative paths are resolved against `base_dir`.
///
/// `env` resolves `${VAR}`. A caller taking feeds from the network should
/// pass `&|_| None` unless it trusts the sender: a client could otherwise
/// send any variable's value to a server of its choosing. Checking that the
/// name is not already in use is the caller's job.
pub fn parse_feed_json(
    value: serde_json::Value,
    defaults: &FeedDefaults,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FeedConfig, ConfigError> {
    let origin = "feed".to_owned();
    let raw = raw::from_json(value)
        .map_err(|error| ConfigError { origin: origin.clone(), errors: vec![error] })?;
    let context = validate::Context { base_dir, env, file_exists: &Path::is_file };
    let mut errors = Vec::new();
    match validate::feed(&raw, defaults, "", &context, &mut errors) {
        Some(feed) if errors.is_empty() => Ok(feed),
        _ => Err(ConfigError { origin, errors }),
    }
}

/// Shown in place of a secret.
const REDACTED: &str = "***";

/// Exact human form of a byte count, readable back by [`parse_size`]: `64KiB`, `1000B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, factor) in UNITS {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Human form of a duration, readable back by [`parse_duration`]: `10s`, `1m 30s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn serialize_size<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_size(*bytes))
}

fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

/// `wss://user:pass@host/` becomes `wss://user:***@host/`.
fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let start = scheme_end + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |offset| start + offset);
    let Some(at) = url[start..end].rfind('@') else { return url.to_owned() };
    let Some(colon) = url[start..start + at].find(':') else { return url.to_owned() };
    format!("{}:{REDACTED}{}", &url[..start + colon], &url[start + at..])
}

/// Hides a query string written out literally: API keys often travel there.
fn mask_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?{REDACTED}"),
        None => url.to_owned(),
    }
}
