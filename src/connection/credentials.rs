//! The connection actor's side of a credential provider: run it before
//! every connect attempt and dial with what it gave, run it again on its
//! refresh timer while the connection is open, and treat the rejections the
//! feed names as "refresh, then reconnect".
//!
//! - Before every attempt the provider runs once; the attempt dials only
//!   with credentials that are not expired and are not the ones the
//!   upstream last rejected. A failed run counts as a failed attempt: the
//!   feed backs off by its reconnect policy and runs the provider again.
//! - A refresh (`credentials.refresh`, or 80% of the remaining life by
//!   default) keeps the open connection: new values go into later templated
//!   sends, a new URL and headers into the next connect. A failed refresh is
//!   retried on the reconnect policy's delays while the old credentials stay.
//! - A rejection (a handshake status, a close code or a reply the feed
//!   names) forgets the credentials, remembering only their digest, so that
//!   the next attempt dials with fresh ones or not at all.
//!
//! Nothing here logs, counts or shows what a provider gave.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use metrics::{counter, gauge, Counter, Gauge};

use feedvisor_transport_api::{FeedOptions, TransportError};

use super::FeedConnection;
use crate::backoff::Backoff;
use crate::config::{CredentialsConfig, FeedConfig, HeartbeatKind};
use crate::credentials::{self, Credentials, Expect, FetchError, Provider, FETCH_RESULTS};
use crate::metrics::{CREDENTIALS_EXPIRES_IN, CREDENTIALS_FETCHES, CREDENTIALS_REJECTIONS};
use crate::status::CredentialsStatus;

/// The shortest wait before a refresh, however short-lived the credentials.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// How often `feedvisor_credentials_expires_in_seconds` is brought up to date.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// How the upstream refused credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// The handshake was answered with this HTTP status.
    Status(u16),
    /// The peer closed with this code.
    CloseCode(u16),
    /// The peer sent a message matching `rejected.reply`.
    Reply,
}

impl Rejection {
    /// The `reason` label values of `feedvisor_credentials_rejections_total`.
    const REASONS: [&'static str; 3] = ["status", "close_code", "reply"];

    fn reason(self) -> &'static str {
        match self {
            Rejection::Status(_) => "status",
            Rejection::CloseCode(_) => "close_code",
            Rejection::Reply => "reply",
        }
    }

    fn describe(self) -> String {
        match self {
            Rejection::Status(status) => format!("handshake answered HTTP {status}"),
            Rejection::CloseCode(code) => format!("closed by the peer with code {code}"),
            Rejection::Reply => "a reply matching credentials.rejected.reply".to_owned(),
        }
    }
}

/// A feed's credential provider and what it last gave; empty for a feed without one.
#[derive(Default)]
pub(super) struct CredentialState {
    active: Option<Box<Active>>,
}

/// The state of a feed that has a provider.
struct Active {
    /// The feed's `credentials` table.
    config: CredentialsConfig,
    /// Runs it.
    provider: Rc<dyn Provider>,
    /// The values the feed's messages use: a run must give each.
    used_values: Vec<String>,
    /// What the last good run gave, until the upstream rejects it.
    current: Option<Credentials>,
    /// The digest of the credentials the current connection (or attempt)
    /// was dialed with: a refresh may have replaced them since.
    dialed: Option<u64>,
    /// The URL a provider gave that the current connection was dialed with,
    /// hidden from errors like the current one.
    dialed_url: Option<url::Url>,
    /// The digest of the credentials the upstream last rejected: never dialed with again.
    rejected: Option<u64>,
    /// The run under way before a connect attempt, cancelled (its program
    /// killed) when another attempt starts.
    fetch: Option<SpawnHandle>,
    /// The refresh timer, or the refresh run under way.
    refresh: Option<SpawnHandle>,
    /// Delays between failed refreshes (the feed's reconnect policy).
    refresh_backoff: Backoff,
    /// Keeps `feedvisor_credentials_expires_in_seconds` current.
    expiry_ticker: Option<SpawnHandle>,
    /// What `/feeds` shows.
    status: CredentialsStatus,
    /// Counters by `FETCH_RESULTS`.
    fetches: Vec<Counter>,
    /// Counters by `Rejection::REASONS`.
    rejections: Vec<Counter>,
    /// The feed's label, for the gauge below.
    label: String,
    /// `feedvisor_credentials_expires_in_seconds`, from the first `expires_at`
    /// on (without one there is nothing to show, and 0 would read as expired).
    expires_in: Option<Gauge>,
}

impl CredentialState {
    /// The state of `feed`: its provider built, its series registered at zero.
    pub(super) fn new(feed: &FeedConfig) -> Self {
        let Some(config) = feed.credentials.clone() else { return CredentialState::default() };
        let label = feed.name.clone();
        let mut templates: Vec<&str> = feed.on_open.iter().map(String::as_str).collect();
        if let Some(HeartbeatKind::Application { message, .. }) =
            feed.heartbeat.as_ref().map(|heartbeat| &heartbeat.kind)
        {
            templates.push(message);
        }
        let fetches: Vec<Counter> = FETCH_RESULTS
            .iter()
            .map(|result| counter!(CREDENTIALS_FETCHES, "feed" => label.clone(), "result" => *result))
            .collect();
        let rejections: Vec<Counter> = Rejection::REASONS
            .iter()
            .map(|reason| counter!(CREDENTIALS_REJECTIONS, "feed" => label.clone(), "reason" => *reason))
            .collect();
        for counter in fetches.iter().chain(&rejections) {
            counter.increment(0);
        }
        CredentialState {
            active: Some(Box::new(Active {
                provider: credentials::provider(&config, &feed.name),
                used_values: credentials::used_values(templates),
                current: None,
                dialed: None,
                dialed_url: None,
                rejected: None,
                fetch: None,
                refresh: None,
                refresh_backoff: Backoff::new(feed.reconnect),
                expiry_ticker: None,
                status: CredentialsStatus { provider: config.source.kind(), ..Default::default() },
                fetches,
                rejections,
                expires_in: None,
                label,
                config,
            })),
        }
    }

    /// Replaces the provider (tests script one).
    #[cfg(test)]
    pub(super) fn set_provider(&mut self, provider: Rc<dyn Provider>) {
        if let Some(active) = self.active.as_mut() {
            active.provider = provider;
        }
    }

    fn current(&self) -> Option<&Credentials> {
        self.active.as_ref()?.current.as_ref()
    }

    /// The URL to dial: the provider's, else `feed`'s.
    pub(super) fn url<'a>(&'a self, feed: &'a url::Url) -> &'a url::Url {
        self.current().and_then(|current| current.url.as_ref()).unwrap_or(feed)
    }

    /// The handshake headers: `configured`, but those the provider gave
    /// (by name, in any case) replaced by its values.
    pub(super) fn headers(&self, configured: &[(String, String)]) -> Vec<(String, String)> {
        let Some(current) = self.current().filter(|current| !current.headers.is_empty()) else {
            return configured.to_vec();
        };
        let given =
            |name: &str| current.headers.iter().any(|(own, _)| own.eq_ignore_ascii_case(name));
        let mut headers: Vec<(String, String)> =
            configured.iter().filter(|(name, _)| !given(name)).cloned().collect();
        headers.extend(current.headers.iter().cloned());
        headers
    }

    /// `text` with `{{credentials.NAME}}` filled in from the current credentials.
    pub(super) fn fill(&self, text: String) -> String {
        match self.current() {
            Some(current) if text.contains(crate::config::PLACEHOLDER_PREFIX) => {
                current.fill(&text)
            }
            _ => text,
        }
    }

    /// `text` with the URLs a provider gave (the current one and the one
    /// the connection was dialed with, as transports name them in errors:
    /// without credentials or query) replaced: a path may hold a key.
    pub(super) fn hide(&self, mut text: String) -> String {
        let Some(active) = &self.active else { return text };
        let given = active.current.as_ref().and_then(|current| current.url.as_ref());
        for url in given.into_iter().chain(active.dialed_url.as_ref()) {
            let mut named = url.clone();
            let _ = named.set_username("");
            let _ = named.set_password(None);
            named.set_query(None);
            named.set_fragment(None);
            text = text.replace(named.as_str(), "<the url from credentials>");
        }
        text
    }

    /// Whether an answer, close or message is one the feed says rejects credentials.
    #[inline]
    fn rejects(&self, rejection: Rejection, payload: &[u8]) -> bool {
        let Some(active) = &self.active else { return false };
        let rules = &active.config.rejected;
        match rejection {
            Rejection::Status(status) => rules.statuses.contains(&status),
            Rejection::CloseCode(code) => rules.close_codes.contains(&code),
            Rejection::Reply => rules.reply.as_ref().is_some_and(|reply| reply.matches(payload)),
        }
    }
}

impl FeedConnection {
    /// Runs the provider, then dials with what it gave; false (and nothing
    /// started) when the feed has no provider.
    pub(super) fn fetch_credentials_then_dial(&mut self, ctx: &mut Context<Self>) -> bool {
        let generation = self.generation;
        let Some(active) = self.credentials.active.as_mut() else { return false };
        for handle in [active.fetch.take(), active.refresh.take()].into_iter().flatten() {
            ctx.cancel_future(handle);
        }
        let run = active.provider.run();
        self.shared.set_credentials(active.status.clone());
        tracing::debug!(feed = %self.name, provider = active.provider.describe(), "running the credential provider");
        let handle = ctx.spawn(run.into_actor(self).map(move |output, actor, ctx| {
            if let Some(active) = actor.credentials.active.as_mut() {
                active.fetch = None;
            }
            let accepted = actor.accept_credentials(output, ctx);
            if actor.generation != generation {
                return;
            }
            match accepted {
                Ok(()) => {
                    if let Some(active) = actor.credentials.active.as_mut() {
                        active.dialed = active.current.as_ref().map(Credentials::fingerprint);
                        active.dialed_url =
                            active.current.as_ref().and_then(|current| current.url.clone());
                    }
                    actor.schedule_refresh(ctx);
                    actor.dial(ctx);
                }
                Err(shown) => {
                    actor.shared.set_error(shown);
                    actor.schedule_retry(None, ctx);
                }
            }
        }));
        if let Some(active) = self.credentials.active.as_mut() {
            active.fetch = Some(handle);
        }
        true
    }

    /// Checks a run's output and keeps it, counting and showing how the run
    /// went; `Err` holds the failure as it may be shown.
    fn accept_credentials(
        &mut self,
        output: Result<Vec<u8>, FetchError>,
        ctx: &mut Context<Self>,
    ) -> Result<(), String> {
        let checked = match &self.credentials.active {
            Some(active) => self.check_credentials(active, output),
            None => return Ok(()),
        };
        let now = SystemTime::now();
        let Some(active) = self.credentials.active.as_mut() else { return Ok(()) };
        match checked {
            Ok(credentials) => {
                active.fetches[0].increment(1);
                active.status.fetches += 1;
                active.status.fetched_at = Some(humantime::format_rfc3339_seconds(now).to_string());
                active.status.expires_at = credentials
                    .expires_at
                    .map(|at| humantime::format_rfc3339_seconds(at).to_string());
                let life = credentials.life(now);
                tracing::info!(feed = %self.name, provider = active.provider.describe(), expires_in = ?life, "credentials fetched");
                active.rejected = None;
                active.current = Some(credentials);
                self.shared.set_credentials(active.status.clone());
                self.update_expiry(ctx);
                Ok(())
            }
            Err(error) => {
                let index = FETCH_RESULTS.iter().position(|result| *result == error.result());
                if let Some(counter) = index.and_then(|index| active.fetches.get(index)) {
                    counter.increment(1);
                }
                let shown = error.to_string();
                tracing::warn!(feed = %self.name, error = %shown, "credential provider failed");
                active.status.failures += 1;
                active.status.last_failure = Some(shown.clone());
                self.shared.set_credentials(active.status.clone());
                Err(shown)
            }
        }
    }

    /// A run's output as credentials the feed may dial with.
    fn check_credentials(
        &self,
        active: &Active,
        output: Result<Vec<u8>, FetchError>,
    ) -> Result<Credentials, FetchError> {
        let provider = active.provider.describe().to_owned();
        let expect = Expect {
            provider: &provider,
            scheme: self.feed.url.scheme(),
            values: &active.used_values,
        };
        let credentials = credentials::parse(&output?, &expect)?;
        if let Some(reason) = self.refused_by_transport(&credentials) {
            return Err(FetchError::Invalid { provider, reason });
        }
        if credentials.life(SystemTime::now()) == Some(Duration::ZERO) {
            let expired_at = credentials.expires_at.map(humantime::format_rfc3339_seconds);
            let expired_at = expired_at.map(|at| at.to_string()).unwrap_or_default();
            return Err(FetchError::Expired { provider, expired_at });
        }
        if active.rejected == Some(credentials.fingerprint()) {
            return Err(FetchError::Unchanged { provider });
        }
        Ok(credentials)
    }

    /// What the feed's transport refuses in the URL and headers a provider gave.
    fn refused_by_transport(&self, credentials: &Credentials) -> Option<String> {
        let feed = &self.feed;
        let given =
            |name: &str| credentials.headers.iter().any(|(own, _)| own.eq_ignore_ascii_case(name));
        let mut names: Vec<&str> = feed
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !given(name))
            .collect();
        names.extend(credentials.headers.iter().map(|(name, _)| name.as_str()));
        let options = FeedOptions {
            url: credentials.url.as_ref().unwrap_or(&feed.url),
            header_names: &names,
            subprotocols: &feed.subprotocols,
            mode: feed.mode,
            framing: feed.written_framing(),
            tls: &feed.tls,
            protocol_pings: false,
            compression: feed.compression,
        };
        let problem = self
            .transport
            .check(&options)
            .into_iter()
            .find(|problem| problem.field == "url" || problem.field.starts_with("headers"))?;
        // A URL problem may quote the URL: name the field only.
        Some(if problem.field == "url" {
            "the url it gave is refused by the feed's transport".to_owned()
        } else {
            format!("{}: {}", problem.field, problem.message)
        })
    }

    /// Sets the expiry gauge now, and keeps it current while there is an `expires_at`.
    fn update_expiry(&mut self, ctx: &mut Context<Self>) {
        let Some(active) = self.credentials.active.as_mut() else { return };
        let Some(life) =
            active.current.as_ref().and_then(|current| current.life(SystemTime::now()))
        else {
            return;
        };
        let label = &active.label;
        let gauge = active
            .expires_in
            .get_or_insert_with(|| gauge!(CREDENTIALS_EXPIRES_IN, "feed" => label.clone()));
        gauge.set(life.as_secs_f64());
        if active.expiry_ticker.is_none() {
            active.expiry_ticker =
                Some(ctx.run_interval(EXPIRY_TICK, |actor, ctx| actor.update_expiry(ctx)));
        }
    }

    /// Arms the refresh timer for the credentials just fetched.
    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(active) = self.credentials.active.as_mut() else { return };
        if let Some(handle) = active.refresh.take() {
            ctx.cancel_future(handle);
        }
        let life = active.current.as_ref().and_then(|current| current.life(SystemTime::now()));
        let Some(delay) = active.config.refresh.next(life) else { return };
        self.refresh_after(delay.max(MIN_REFRESH), ctx);
    }

    fn refresh_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let handle = ctx.run_later(delay, |actor, ctx| actor.refresh_credentials(ctx));
        if let Some(active) = self.credentials.active.as_mut() {
            active.refresh = Some(handle);
        }
    }

    /// Runs the provider while the connection stays open; a failure is
    /// retried on the reconnect policy's delays. Not open: the next connect runs it.
    fn refresh_credentials(&mut self, ctx: &mut Context<Self>) {
        if self.link.is_none() {
            return;
        }
        let Some(active) = self.credentials.active.as_mut() else { return };
        let run = active.provider.run();
        tracing::debug!(feed = %self.name, provider = active.provider.describe(), "refreshing credentials");
        let handle = ctx.spawn(run.into_actor(self).map(|output, actor, ctx| {
            if let Some(active) = actor.credentials.active.as_mut() {
                active.refresh = None;
            }
            match actor.accept_credentials(output, ctx) {
                Ok(()) => {
                    if let Some(active) = actor.credentials.active.as_mut() {
                        active.refresh_backoff = Backoff::new(*active.refresh_backoff.policy());
                    }
                    actor.schedule_refresh(ctx);
                }
                Err(_) => {
                    let Some(active) = actor.credentials.active.as_mut() else { return };
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "the caller picks the random source that backoff.rs takes as an argument"
                    )]
                    let delay = active.refresh_backoff.next_delay(&mut rand::rng(), None);
                    if let Some(delay) = delay {
                        actor.refresh_after(delay.max(MIN_REFRESH), ctx);
                    }
                }
            }
        }));
        if let Some(active) = self.credentials.active.as_mut() {
            active.refresh = Some(handle);
        }
    }

    /// Records that the upstream refused the credentials the connection was
    /// dialed with, if `rejection` is one the feed names: they are forgotten
    /// (their digest kept), so that the next attempt runs the provider and
    /// never dials with them again. Returns whether it was.
    ///
    /// Called for every data message (with [`Rejection::Reply`]): inlined, it
    /// is one test on a feed without a provider.
    #[inline]
    pub(super) fn credentials_rejected(&mut self, rejection: Rejection, payload: &[u8]) -> bool {
        self.credentials.rejects(rejection, payload) && self.forget_rejected(rejection)
    }

    #[cold]
    fn forget_rejected(&mut self, rejection: Rejection) -> bool {
        let Some(active) = self.credentials.active.as_mut() else { return false };
        // What the connection was dialed with is refused; a refresh since then is not.
        if let Some(dialed) = active.dialed.take() {
            if active.current.as_ref().is_some_and(|current| current.fingerprint() == dialed) {
                active.current = None;
            }
            active.rejected = Some(dialed);
        }
        let index = Rejection::REASONS.iter().position(|reason| *reason == rejection.reason());
        if let Some(counter) = index.and_then(|index| active.rejections.get(index)) {
            counter.increment(1);
        }
        let described = rejection.describe();
        tracing::warn!(feed = %self.name, rejection = %described, "credentials rejected by the upstream: refreshing before the next attempt");
        active.status.rejections += 1;
        active.status.last_rejection = Some(described);
        self.shared.set_credentials(active.status.clone());
        true
    }

    /// A failed connect attempt: a handshake status the feed names as a rejection.
    pub(super) fn credentials_refused_handshake(&mut self, error: &TransportError) {
        if let TransportError::HandshakeStatus { status, .. } = error {
            self.credentials_rejected(Rejection::Status(*status), &[]);
        }
    }
}

#[cfg(test)]
impl FeedConnection {
    /// The actor with `provider` in place of the one its config names.
    pub(super) fn with_credential_provider(mut self, provider: Rc<dyn Provider>) -> Self {
        self.credentials.set_provider(provider);
        self
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
