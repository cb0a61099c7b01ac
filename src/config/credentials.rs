//! `credentials = { ... }` of a feed or `[defaults.credentials]`, resolved:
//! the provider run before every connect attempt (a program or an HTTP
//! request) and on its refresh timer, the bounds of one run, and what counts
//! as the upstream refusing the credentials it gave.
//!
//! A feed's table overrides `[defaults.credentials]` field by field (`exec`
//! and `http` as one: the source), and `credentials = "none"` takes none.
//! What a provider prints is a secret; only where it comes from is config,
//! and that is shown with header values, the request body and literal query
//! values as `***`.
//!
//! Also checked here: a feed whose `on_open` or heartbeat message uses
//! `{{credentials.NAME}}` must have a provider.

use std::path::PathBuf;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use url::Url;

use super::checks::{check_pointer, parse_duration};
use super::heartbeat::{HeartbeatConfig, HeartbeatKind};
use super::raw::{RawCredentials, RawCredentialsHttp, RawCredentialsTable, RawFeed, RawRejected};
use super::scope::{Context, Scope};
use super::show::{format_duration, format_size, mask_literal_query, mask_password, REDACTED};
use crate::secret::Secret;

/// The placeholder's prefix in `on_open` and heartbeat messages.
pub const PLACEHOLDER_PREFIX: &str = "{{credentials.";

/// Default [`CredentialsConfig::timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`CredentialsConfig::max_output`].
const DEFAULT_MAX_OUTPUT: u64 = 64 << 10;
/// Largest accepted `max_output`: the output is held whole while parsed.
const MAX_OUTPUT_LIMIT: u64 = 16 << 20;
/// Default [`Refresh::share`]: refresh at 80% of the remaining life.
const DEFAULT_SHARE: f64 = 0.8;
/// Default [`Rejections::statuses`].
const DEFAULT_STATUSES: [u16; 2] = [401, 403];

/// A feed's credential provider.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsConfig {
    /// What is run.
    pub source: CredentialSource,
    /// When it is run again while the feed is open.
    pub refresh: Refresh,
    /// How long one run may take; a program still running then is killed.
    pub timeout: Duration,
    /// The most bytes of output one run may give (a program's stdout, a
    /// response body); more is a failure.
    pub max_output: u64,
    /// What counts as the upstream refusing the credentials.
    pub rejected: Rejections,
}

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// A program, run without a shell, in the config file's directory; it
    /// inherits the environment.
    Exec {
        /// The program and its arguments as written (not `${VAR}` expanded:
        /// the program reads its secrets from the environment itself).
        command: Vec<String>,
        /// The program: a path with a `/` resolved against the config
        /// file's directory, a bare name looked up in `PATH`.
        program: PathBuf,
        /// The directory it runs in.
        dir: PathBuf,
    },
    /// An HTTP request whose 2xx response body is the output.
    Http(HttpSource),
}

impl CredentialSource {
    /// `exec` or `http`: the kind of provider, for status and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Exec { .. } => "exec",
            CredentialSource::Http(_) => "http",
        }
    }

    /// What is run, safe to show: the program as written, or the URL
    /// without password or literal query values.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Exec { command, .. } => {
                format!("exec {}", command.first().map_or("", String::as_str))
            }
            CredentialSource::Http(http) => format!("http {} {}", http.method, http.shown_url()),
        }
    }
}

/// `credentials.http = { url, method, headers, body }`, `${VAR}` expanded.
#[derive(Clone, PartialEq)]
pub struct HttpSource {
    /// Where the request goes (`http` or `https`).
    pub url: Url,
    /// The URL as written, for display.
    pub url_as_written: String,
    /// `GET`, `POST` or `PUT`.
    pub method: String,
    /// Request headers; the values may be secrets.
    pub headers: Vec<(String, String)>,
    /// The request body, if any.
    pub body: Option<Secret>,
}

impl HttpSource {
    /// The URL as written, password and literal query values masked.
    pub fn shown_url(&self) -> String {
        mask_literal_query(&mask_password(&self.url_as_written))
    }
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(name, _)| (name.as_str(), REDACTED)).collect();
        f.debug_struct("HttpSource")
            .field("url", &self.shown_url())
            .field("method", &self.method)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// When a provider is run again while its feed stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refresh {
    /// `refresh = "20m"`: at most this long after the last good run.
    pub every: Option<Duration>,
    /// The share of the remaining life of the credentials (`expires_at`)
    /// after which they are refreshed (`"80%"` is 0.8).
    pub share: f64,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh { every: None, share: DEFAULT_SHARE }
    }
}

impl Refresh {
    /// The wait before the next refresh, given the remaining life of the
    /// credentials just fetched: the earlier of `every` and `share` of the
    /// life; `None` when neither applies (no period, no `expires_at`).
    pub fn next(&self, life: Option<Duration>) -> Option<Duration> {
        let by_life = life.map(|life| life.mul_f64(self.share));
        match (self.every, by_life) {
            (Some(every), Some(by_life)) => Some(every.min(by_life)),
            (every, by_life) => every.or(by_life),
        }
    }
}

/// What counts as the upstream refusing the credentials: then they are
/// refreshed before the next attempt, never tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejections {
    /// Handshake HTTP statuses (default 401 and 403).
    pub statuses: Vec<u16>,
    /// Close codes the peer closes with (default none).
    pub close_codes: Vec<u16>,
    /// A message from the peer (default none).
    pub reply: Option<RejectedReply>,
}

impl Default for Rejections {
    fn default() -> Self {
        Rejections { statuses: DEFAULT_STATUSES.to_vec(), close_codes: Vec::new(), reply: None }
    }
}

/// `rejected.reply`: a message whose text (at `pointer`, or whole) contains `contains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedReply {
    /// A JSON pointer to a string (or number) in the message; `None`: the whole payload.
    pub pointer: Option<String>,
    /// What it contains.
    pub contains: String,
}

impl RejectedReply {
    /// Whether `payload` is such a message.
    pub fn matches(&self, payload: &[u8]) -> bool {
        let needle = self.contains.as_bytes();
        // Cheap first: a message without the bytes at all cannot match.
        if !payload.windows(needle.len().max(1)).any(|window| window == needle) {
            return needle.is_empty();
        }
        let Some(pointer) = &self.pointer else { return true };
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return false;
        };
        match document.pointer(pointer) {
            Some(serde_json::Value::String(text)) => text.contains(&self.contains),
            Some(other @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                other.to_string().contains(&self.contains)
            }
            _ => false,
        }
    }
}

/// `raw` over `inherited` (`[defaults.credentials]`); `None`: no provider.
pub(super) fn credentials(
    raw: Option<&RawCredentials>,
    inherited: Option<&CredentialsConfig>,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<CredentialsConfig> {
    let table = match raw {
        None => return inherited.cloned(),
        Some(RawCredentials::Named(name)) if name.trim() == "none" => return None,
        Some(RawCredentials::Named(other)) => {
            return scope.fail(
                "credentials",
                format!(
                    "{other:?} is not a provider: use a table such as \
                     {{ exec = [\"./get-token.sh\"] }} or {{ http = {{ url = \"...\" }} }}, or \"none\""
                ),
            );
        }
        Some(RawCredentials::Table(table)) => table,
    };
    let source = source(table, inherited, context, scope);
    let refresh = match &table.refresh {
        None => inherited.map_or_else(Refresh::default, |inherited| inherited.refresh),
        Some(raw) => refresh(&raw.0, scope).unwrap_or_default(),
    };
    let timeout = scope.duration(
        "credentials.timeout",
        table.timeout.as_ref(),
        inherited.map_or(DEFAULT_TIMEOUT, |inherited| inherited.timeout),
    );
    let max_output = scope.size(
        "credentials.max_output",
        table.max_output.as_ref(),
        inherited.map_or(DEFAULT_MAX_OUTPUT, |inherited| inherited.max_output),
        MAX_OUTPUT_LIMIT,
    );
    let inherited_rejected = inherited.map(|inherited| &inherited.rejected);
    let rejected = rejections(table.rejected.as_ref(), inherited_rejected, scope);
    Some(CredentialsConfig {
        source: source?,
        refresh,
        timeout: timeout?,
        max_output: max_output?,
        rejected: rejected?,
    })
}

fn source(
    table: &RawCredentialsTable,
    inherited: Option<&CredentialsConfig>,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<CredentialSource> {
    match (&table.exec, &table.http) {
        (Some(_), Some(_)) => {
            scope.fail("credentials", "set exec or http, not both: one provider per feed")
        }
        (Some(command), None) => exec(command, context, scope),
        (None, Some(http)) => http_source(http, context, scope),
        (None, None) => match inherited {
            Some(inherited) => Some(inherited.source.clone()),
            None => scope.fail(
                "credentials",
                "no provider: set exec = [\"./get-token.sh\"] or http = { url = \"...\" }",
            ),
        },
    }
}

fn exec(
    command: &[String],
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<CredentialSource> {
    let Some(first) = command.first().filter(|program| !program.trim().is_empty()) else {
        return scope.fail(
            "credentials.exec",
            "must name a program first, such as [\"./get-token.sh\", \"stocks\"]",
        );
    };
    let program = if first.contains('/') {
        let path = context.base_dir.join(first);
        if !(context.file_exists)(&path) {
            return scope.fail("credentials.exec", format!("no such file: {}", path.display()));
        }
        path
    } else {
        PathBuf::from(first)
    };
    Some(CredentialSource::Exec {
        command: command.to_vec(),
        program,
        dir: context.base_dir.to_path_buf(),
    })
}

fn http_source(
    raw: &RawCredentialsHttp,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> Option<CredentialSource> {
    let Some(written) = &raw.url else {
        return scope.fail("credentials.http.url", "required: where the credentials are asked");
    };
    let url =
        scope.expand("credentials.http.url", written, context.env).and_then(
            |text| match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                Ok(_) => scope.fail("credentials.http.url", "must be an http:// or https:// URL"),
                Err(error) => scope.fail("credentials.http.url", format!("invalid URL: {error}")),
            },
        );
    let method = raw.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "PUT") {
        scope.error("credentials.http.method", format!("{method:?}: use GET, POST or PUT"));
    }
    let headers = scope.headers("credentials.http.headers", &raw.headers, context.env);
    let body = match &raw.body {
        None => None,
        Some(template) => {
            Some(Secret::new(scope.expand("credentials.http.body", template, context.env)?))
        }
    };
    Some(CredentialSource::Http(HttpSource {
        url: url?,
        url_as_written: written.clone(),
        method,
        headers,
        body,
    }))
}

/// `"20m"` (a period) or `"80%"` (a share of the remaining life, 1% to 99%).
fn refresh(text: &str, scope: &mut Scope<'_>) -> Option<Refresh> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(share) if (1.0..=99.0).contains(&share) => {
                Some(Refresh { every: None, share: share / 100.0 })
            }
            _ => scope.fail(
                "credentials.refresh",
                format!("{text:?}: a share of the remaining life is 1% to 99%, such as \"80%\""),
            ),
        };
    }
    match parse_duration(text) {
        Ok(every) if every >= Duration::from_secs(1) => {
            Some(Refresh { every: Some(every), share: DEFAULT_SHARE })
        }
        Ok(_) => scope.fail("credentials.refresh", "must be at least 1s"),
        Err(_) => scope.fail(
            "credentials.refresh",
            format!(
                "invalid refresh {text:?}: use a duration such as \"20m\", \
                 or a share of the credentials' remaining life such as \"80%\""
            ),
        ),
    }
}

fn rejections(
    raw: Option<&RawRejected>,
    inherited: Option<&Rejections>,
    scope: &mut Scope<'_>,
) -> Option<Rejections> {
    let mut rejected = inherited.cloned().unwrap_or_default();
    let Some(raw) = raw else { return Some(rejected) };
    let before = scope.errors.len();
    if let Some(statuses) = &raw.statuses {
        for status in statuses {
            if !(100..=599).contains(status) {
                scope.error(
                    "credentials.rejected.statuses",
                    format!("{status} is not an HTTP status"),
                );
            }
        }
        rejected.statuses.clone_from(statuses);
    }
    if let Some(codes) = &raw.close_codes {
        for code in codes {
            if !(1000..=4999).contains(code) {
                scope.error(
                    "credentials.rejected.close_codes",
                    format!("{code} is not a close code (1000 to 4999)"),
                );
            }
        }
        rejected.close_codes.clone_from(codes);
    }
    if let Some(reply) = &raw.reply {
        if let Some(Err(message)) = reply.pointer.as_deref().map(check_pointer) {
            scope.error("credentials.rejected.reply.pointer", message);
        }
        match reply.contains.as_deref() {
            None | Some("") => scope.error(
                "credentials.rejected.reply.contains",
                "required: the text that marks a rejection, such as \"token is expired\"",
            ),
            Some(contains) => {
                rejected.reply = Some(RejectedReply {
                    pointer: reply.pointer.clone(),
                    contains: contains.to_owned(),
                })
            }
        }
    }
    (scope.errors.len() == before).then_some(rejected)
}

/// Refuses a feed given over the network (`POST`/`PUT /feeds`, a feed
/// stored in the cluster) that names a program to run: only the config file
/// may make feedvisor run a program. `[defaults.credentials]` is the file's,
/// and such feeds may inherit it.
pub(crate) fn refuse_exec_credentials(feed: &serde_json::Value) -> Result<(), super::ConfigError> {
    if feed.pointer("/credentials/exec").is_none() {
        return Ok(());
    }
    Err(super::ConfigError {
        origin: "feed".to_owned(),
        errors: vec![super::FieldError::new(
            "credentials.exec",
            "a feed added over the API cannot run a program: set exec in the config file \
             (a feed may inherit [defaults.credentials]), or use credentials.http",
        )],
    })
}

/// The names of the `{{credentials.NAME}}` placeholders in `text`, or what
/// is wrong with one.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PLACEHOLDER_PREFIX) {
        let after = &rest[start + PLACEHOLDER_PREFIX.len()..];
        let Some(end) = after.find("}}") else {
            return Err(format!("{PLACEHOLDER_PREFIX} is not closed with }}}}"));
        };
        let name = &after[..end];
        if name.is_empty()
            || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte))
        {
            return Err(format!(
                "{PLACEHOLDER_PREFIX}{name}}}}}: a value's name is letters, digits, '_', '-' and '.'"
            ));
        }
        names.push(name);
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// Checks the `{{credentials.NAME}}` placeholders of a feed's `on_open`
/// and heartbeat messages: well formed, and only on a feed with a provider
/// (one whose table has errors of its own counts: those are reported).
pub(super) fn check_messages(
    raw: &RawFeed,
    resolved: Option<&CredentialsConfig>,
    heartbeat: Option<&HeartbeatConfig>,
    scope: &mut Scope<'_>,
) {
    let has_provider =
        resolved.is_some() || matches!(raw.credentials, Some(RawCredentials::Table(_)));
    for (index, template) in raw.on_open.iter().enumerate() {
        check_placeholders(&format!("on_open[{index}]"), template, has_provider, scope);
    }
    if let Some(HeartbeatKind::Application { message, .. }) = heartbeat.map(|config| &config.kind) {
        check_placeholders("heartbeat.message", message, has_provider, scope);
    }
}

/// Checks the placeholders of one message at `field`.
fn check_placeholders(field: &str, text: &str, has_provider: bool, scope: &mut Scope<'_>) {
    match placeholders(text) {
        Err(message) => scope.error(field, message),
        Ok(names) if !names.is_empty() && !has_provider => scope.error(
            field,
            format!(
                "uses {PLACEHOLDER_PREFIX}{}}}}} but the feed has no credential provider: \
                 set credentials = {{ exec = [...] }} or {{ http = {{ url = \"...\" }} }}",
                names[0]
            ),
        ),
        Ok(_) => {}
    }
}

/// In the config's shape, secrets as `***`; reads back as the same provider
/// (but for the secrets).
impl Serialize for CredentialsConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        match &self.source {
            CredentialSource::Exec { command, .. } => out.serialize_entry("exec", command)?,
            CredentialSource::Http(http) => out.serialize_entry("http", &ShowHttp(http))?,
        }
        let refresh = match self.refresh.every {
            Some(every) => format_duration(every),
            None => format!("{}%", (self.refresh.share * 100.0).round()),
        };
        out.serialize_entry("refresh", &refresh)?;
        out.serialize_entry("timeout", &format_duration(self.timeout))?;
        out.serialize_entry("max_output", &format_size(self.max_output))?;
        out.serialize_entry("rejected", &ShowRejected(&self.rejected))?;
        out.end()
    }
}

struct ShowHttp<'a>(&'a HttpSource);

impl Serialize for ShowHttp<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let http = self.0;
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("url", &http.shown_url())?;
        out.serialize_entry("method", &http.method)?;
        let headers: std::collections::BTreeMap<&str, &str> =
            http.headers.iter().map(|(name, _)| (name.as_str(), REDACTED)).collect();
        out.serialize_entry("headers", &headers)?;
        if let Some(body) = &http.body {
            out.serialize_entry("body", body)?;
        }
        out.end()
    }
}

struct ShowRejected<'a>(&'a Rejections);

impl Serialize for ShowRejected<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rejected = self.0;
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("statuses", &rejected.statuses)?;
        out.serialize_entry("close_codes", &rejected.close_codes)?;
        if let Some(reply) = &rejected.reply {
            let mut shown = std::collections::BTreeMap::new();
            if let Some(pointer) = &reply.pointer {
                shown.insert("pointer", pointer.as_str());
            }
            shown.insert("contains", reply.contains.as_str());
            out.serialize_entry("reply", &shown)?;
        }
        out.end()
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
