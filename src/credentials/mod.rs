//! Credential providers: what a feed runs before every connect attempt
//! (and on its refresh timer) to get the URL, headers and values it
//! connects with, and what became of each run.
//!
//! A provider is a program (`exec.rs`) or an HTTP request (`http.rs`); each
//! run is bounded in time and in output, and a program still running at its
//! timeout is killed with its process group. Its output, one JSON object
//! (`output.rs`), is a secret from the moment it is read: [`Credentials`]
//! shows none of it, and a [`FetchError`] says what failed (an exit status,
//! a timeout, a field of the wrong type) without quoting what was printed.
//! An exec provider's standard error is read and dropped, never logged.
//!
//! The connection actor drives it (`connection/credentials.rs`); nothing
//! here knows of actors, so that everything can be tested on its own.

mod exec;
mod http;
mod output;

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use futures_util::future::LocalBoxFuture;
use url::Url;

use crate::config::{placeholders, CredentialSource, CredentialsConfig};
pub(crate) use output::{parse, Expect};

/// What one good run of a provider gave; every field a secret but `expires_at`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Replaces the feed's URL.
    pub url: Option<Url>,
    /// Added to the handshake (replacing a configured header of the same name).
    pub headers: Vec<(String, String)>,
    /// Substituted for `{{credentials.NAME}}` in `on_open` and heartbeat messages.
    pub values: BTreeMap<String, String>,
    /// When the upstream stops taking them, if the provider said.
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        let values: Vec<&str> = self.values.keys().map(String::as_str).collect();
        f.debug_struct("Credentials")
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("headers", &headers)
            .field("values", &values)
            .field("expires_at", &self.expires_at.map(humantime::format_rfc3339_seconds))
            .finish()
    }
}

impl Credentials {
    /// How long they have left at `now`; zero once expired; `None`: no `expires_at`.
    pub(crate) fn life(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at.map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// A digest that tells two outputs apart without keeping either: the
    /// credentials an upstream rejected are remembered by it alone.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        thread_local! {
            /// Keys drawn once per thread: the digest means nothing outside this process.
            static KEYS: std::collections::hash_map::RandomState =
                std::collections::hash_map::RandomState::new();
        }
        KEYS.with(|keys| {
            let mut hasher = keys.build_hasher();
            self.url.as_ref().map(Url::as_str).hash(&mut hasher);
            self.headers.hash(&mut hasher);
            self.values.hash(&mut hasher);
            hasher.finish()
        })
    }

    /// `template` with each `{{credentials.NAME}}` replaced by its value;
    /// a name without a value is left as written (the fetch checked that
    /// every name the feed uses has one).
    pub(crate) fn fill(&self, template: &str) -> String {
        let Ok(names) = placeholders(template) else { return template.to_owned() };
        let mut text = template.to_owned();
        for name in names {
            if let Some(value) = self.values.get(name) {
                let placeholder = format!("{}{name}}}}}", crate::config::PLACEHOLDER_PREFIX);
                text = text.replace(&placeholder, value);
            }
        }
        text
    }
}

/// Why a run of a provider gave no credentials. Never holds what the
/// provider printed or answered: only what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// The program could not be started (not found, not executable).
    #[error("credential provider {provider} could not be started: {reason}")]
    Start {
        /// `exec ./get-token.sh`.
        provider: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The program exited unsuccessfully (its standard error is not shown: it may hold secrets).
    #[error("credential provider {provider} exited with {status} (its stderr is not logged)")]
    ExitStatus {
        /// `exec ./get-token.sh`.
        provider: String,
        /// `exit status: 1`, `signal: 9`.
        status: String,
    },
    /// The run took longer than `credentials.timeout` (a program is killed).
    #[error("credential provider {provider} did not finish within {after:?}{killed}")]
    Timeout {
        /// `exec ./get-token.sh`.
        provider: String,
        /// `credentials.timeout`.
        after: Duration,
        /// `": killed"` for a program.
        killed: &'static str,
    },
    /// The output was longer than `credentials.max_output`.
    #[error(
        "credential provider {provider} gave more than {limit} bytes (credentials.max_output)"
    )]
    TooLarge {
        /// `exec ./get-token.sh`.
        provider: String,
        /// The limit.
        limit: u64,
    },
    /// The output is not what a provider must give.
    #[error("credential provider {provider} gave output that is not usable: {reason}")]
    Invalid {
        /// `exec ./get-token.sh`.
        provider: String,
        /// What is wrong, never quoting the output.
        reason: String,
    },
    /// The HTTP provider answered with a status other than 2xx.
    #[error("credential provider {provider} answered HTTP {status}")]
    HttpStatus {
        /// `http POST https://...`.
        provider: String,
        /// The status.
        status: u16,
    },
    /// The HTTP request failed (connect, TLS, a broken response).
    #[error("credential provider {provider} request failed: {reason}")]
    Http {
        /// `http POST https://...`.
        provider: String,
        /// What failed.
        reason: String,
    },
    /// The credentials had expired already when they arrived.
    #[error(
        "credential provider {provider} gave credentials that expired at {expired_at}: not used"
    )]
    Expired {
        /// `exec ./get-token.sh`.
        provider: String,
        /// Their `expires_at`, RFC 3339.
        expired_at: String,
    },
    /// The credentials are the very ones the upstream just rejected.
    #[error("credential provider {provider} gave the credentials the upstream just rejected: not used again")]
    Unchanged {
        /// `exec ./get-token.sh`.
        provider: String,
    },
}

/// The `result` label values of `feedvisor_credentials_fetches_total`.
pub(crate) const FETCH_RESULTS: [&str; 10] = [
    "ok",
    "failed_to_start",
    "exit_status",
    "timeout",
    "too_large",
    "invalid",
    "http_status",
    "http_error",
    "expired",
    "unchanged",
];

impl FetchError {
    /// The `result` label (see [`FETCH_RESULTS`]).
    pub(crate) fn result(&self) -> &'static str {
        match self {
            FetchError::Start { .. } => "failed_to_start",
            FetchError::ExitStatus { .. } => "exit_status",
            FetchError::Timeout { .. } => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Invalid { .. } => "invalid",
            FetchError::HttpStatus { .. } => "http_status",
            FetchError::Http { .. } => "http_error",
            FetchError::Expired { .. } => "expired",
            FetchError::Unchanged { .. } => "unchanged",
        }
    }
}

/// Runs a provider once and hands back what it printed or answered, unparsed.
pub(crate) trait Provider {
    /// One run, bounded by the provider's timeout and output limit.
    fn run(&self) -> LocalBoxFuture<'static, Result<Vec<u8>, FetchError>>;

    /// What is run, safe to show (`exec ./get-token.sh`).
    fn describe(&self) -> &str;
}

/// The provider `config` asks for, for feed `feed`.
pub(crate) fn provider(config: &CredentialsConfig, feed: &str) -> Rc<dyn Provider> {
    match &config.source {
        CredentialSource::Exec { .. } => Rc::new(exec::ExecProvider::new(config, feed)),
        CredentialSource::Http(_) => Rc::new(http::HttpProvider::new(config)),
    }
}

/// The names of the values `templates` use, each once.
pub(crate) fn used_values<'a>(templates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = templates
        .into_iter()
        .filter_map(|template| placeholders(template).ok())
        .flatten()
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;
