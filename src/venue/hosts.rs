//! The host registry: one per process, built from the config's `[[hosts]]`
//! and reloaded with it, consulted by every connection actor before each
//! connect attempt.
//!
//! Each entry holds its host's connect budget (a [`RollingWindow`] that
//! hands out places ahead, so a feed that must wait knows exactly until
//! when, plus a jitter so that waiting feeds do not all wake at once) and
//! its cool-down: a handshake status or close code the entry lists puts the
//! whole host on hold, for the server's `Retry-After` or the entry's
//! `cooldown`, at most `max_cooldown` (or the refused feed's
//! `reconnect.max_retry_after`). Every feed to the host then waits for the
//! cool-down's end before its next attempt.
//!
//! Pure but for its lock: callers pass the time and the random source.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use actix_rt::time::Instant;
use rand::Rng;
use serde::Serialize;
use url::Url;

use super::window::RollingWindow;
use crate::config::{
    Config, ConnectBudget, FeedConfig, HostLimits, OutboundRate, MAX_LIMIT_DURATION,
};
use crate::metrics::venue::{remove_host, HostMetrics};
use crate::status::{HostWait, HostWaitReason};

/// Tells a waiting feed that its host changed (a cool-down began, or the
/// config was reloaded): its place was given back and it should ask again.
pub(crate) type Notify = Arc<dyn Fn() + Send + Sync>;

/// Jitter on a place handed out ahead is at most this, whatever the budget's spacing.
const MAX_JITTER: Duration = Duration::from_secs(1);

/// Why a connect attempt was refused in a way that may cool its host down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The handshake was answered with this HTTP status.
    Status(u16),
    /// The open connection was closed by the peer with this code.
    Close(u16),
}

impl Refusal {
    fn label(self) -> String {
        match self {
            Refusal::Status(status) => format!("status_{status}"),
            Refusal::Close(code) => format!("close_{code}"),
        }
    }
}

/// A place handed out ahead: the feed connects at `at`, if nothing changed meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The entry it was handed out by.
    entry: u64,
    /// The entry's epoch then: a cool-down or a reload since voids it.
    epoch: u64,
    /// The place.
    pub at: Instant,
}

/// The registry's answer to a feed about to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Connect now.
    Go,
    /// Wait until the ticket's time, then ask again with it.
    Wait {
        /// The place held.
        ticket: Ticket,
        /// What is shown meanwhile.
        shown: HostWait,
    },
}

#[derive(Debug, Clone)]
struct Cooldown {
    until: Instant,
    reason: String,
}

struct Waiting {
    until: Instant,
    reason: HostWaitReason,
    notify: Option<Notify>,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("until", &self.until).field("reason", &self.reason).finish()
    }
}

#[derive(Debug)]
struct HostEntry {
    /// Unique in the process, kept across reloads while the entry is unchanged.
    id: u64,
    /// Changes when places handed out ahead are given back.
    epoch: u64,
    limits: HostLimits,
    window: Option<RollingWindow>,
    cooldown: Option<Cooldown>,
    /// Feeds waiting: until when, what for, and how to tell them of a change.
    waiting: BTreeMap<String, Waiting>,
    metrics: HostMetrics,
}

impl HostEntry {
    fn new(id: u64, limits: HostLimits) -> Self {
        HostEntry {
            id,
            epoch: 0,
            window: limits
                .connect_budget
                .map(|budget| RollingWindow::new(budget.connects, budget.per)),
            cooldown: None,
            waiting: BTreeMap::new(),
            metrics: HostMetrics::new(&limits.matches),
            limits,
        }
    }

    fn cooling(&self, now: Instant) -> Option<&Cooldown> {
        self.cooldown.as_ref().filter(|cooldown| cooldown.until > now)
    }

    /// How long `refusal` cools the host down, if its entry lists it: the
    /// server's `retry_after` or the entry's `cooldown`, at most the entry's
    /// `max_cooldown`, else `cap`.
    fn cooldown_for(
        &self,
        refusal: Refusal,
        retry_after: Option<Duration>,
        cap: Duration,
    ) -> Option<Duration> {
        let listed = match refusal {
            Refusal::Status(status) => self.limits.cooldown_statuses.contains(&status),
            Refusal::Close(code) => self.limits.cooldown_close_codes.contains(&code),
        };
        let cap = self.limits.max_cooldown.unwrap_or(cap);
        let cap = cap.min(MAX_LIMIT_DURATION);
        listed.then(|| retry_after.unwrap_or(self.limits.cooldown).min(cap))
    }

    /// Cools the host down for `length` from `now` (a longer one under way
    /// stays): every place handed out ahead is given back.
    fn cool_down(&mut self, reason: String, length: Duration, now: Instant) {
        let until = now + length;
        self.metrics.cooldown(&reason);
        if self.cooling(now).is_none_or(|cooldown| cooldown.until < until) {
            self.cooldown = Some(Cooldown { until, reason });
        }
        // Places handed out ahead fall inside the cool-down: their feeds ask again.
        self.epoch += 1;
        if let Some(window) = self.window.as_mut() {
            window.cancel_reserved(now);
        }
        self.publish_gauges(now);
    }

    /// `feed` connects now: it waits no more, and the attempt is counted.
    fn admitted(&mut self, feed: &str, now: Instant) -> Admission {
        self.waiting.remove(feed);
        self.metrics.connects.increment(1);
        self.publish_gauges(now);
        Admission::Go
    }

    /// Takes the waiting feeds' notifications: they are all to ask again.
    fn take_notifications(&mut self) -> Vec<Notify> {
        self.waiting.values_mut().filter_map(|waiting| waiting.notify.take()).collect()
    }

    fn publish_gauges(&self, now: Instant) {
        self.metrics.waiting.set(self.waiting.len() as f64);
        let remaining = self.cooling(now).map_or(0.0, |c| (c.until - now).as_secs_f64());
        self.metrics.cooldown_remaining.set(remaining);
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<HostEntry>,
    default_rate: Option<OutboundRate>,
    next_id: u64,
}

/// The `[[hosts]]` entries and their live state, shared by every feed.
#[derive(Debug, Default)]
pub(crate) struct HostRegistry {
    inner: Mutex<Inner>,
}

/// One host entry, as `GET /hosts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The entry's `match`.
    #[serde(rename = "match")]
    pub host: String,
    /// The connect budget, if the entry sets one.
    pub connect_budget: Option<ConnectBudget>,
    /// Connect attempts in the current window (places handed out ahead included).
    pub connects_in_window: usize,
    /// The cool-down under way, if any.
    pub cooldown: Option<CooldownStatus>,
    /// Feeds waiting to connect, with what for and until when.
    pub waiting: Vec<WaitingFeed>,
}

/// A host's cool-down under way.
#[derive(Debug, Clone, Serialize)]
pub struct CooldownStatus {
    /// Its end (RFC 3339).
    pub until: String,
    /// Seconds left.
    pub remaining_secs: f64,
    /// What started it (`status_429`, `close_1008`, ...).
    pub reason: String,
}

/// A feed waiting for its host.
#[derive(Debug, Clone, Serialize)]
pub struct WaitingFeed {
    /// The feed's name.
    pub feed: String,
    /// What it waits for.
    pub reason: HostWaitReason,
    /// When it may connect (RFC 3339).
    pub until: String,
}

/// `at` in wall-clock time, as RFC 3339 with milliseconds.
fn wall_time(at: Instant, now: Instant) -> String {
    let wall = SystemTime::now() + at.saturating_duration_since(now);
    humantime::format_rfc3339_millis(wall).to_string()
}

/// The host and port a feed connects to.
fn destination(url: &Url) -> Option<(&str, u16)> {
    Some((url.host_str()?, url.port_or_known_default().unwrap_or(0)))
}

impl HostRegistry {
    /// A registry for `config`'s `[[hosts]]`.
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        let registry = Arc::new(HostRegistry::default());
        registry.reload(config);
        registry
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the entries of a new config. An entry whose limits did not
    /// change keeps its window and cool-down; places it handed out ahead are
    /// given back (their feeds ask again when they wake).
    pub(crate) fn reload(&self, config: &Config) {
        let notifications = self.reload_entries(config);
        for notify in notifications {
            notify();
        }
    }

    fn reload_entries(&self, config: &Config) -> Vec<Notify> {
        let mut notifications = Vec::new();
        let mut inner = self.lock();
        inner.default_rate = config.defaults.outbound_rate;
        let mut old: Vec<HostEntry> = std::mem::take(&mut inner.entries);
        let now = Instant::now();
        for limits in &config.hosts {
            let kept = old.iter().position(|entry| entry.limits == *limits);
            let entry = match kept {
                Some(index) => {
                    let mut entry = old.swap_remove(index);
                    entry.epoch += 1;
                    notifications.extend(entry.take_notifications());
                    if let Some(window) = entry.window.as_mut() {
                        window.cancel_reserved(now);
                    }
                    entry
                }
                None => {
                    inner.next_id += 1;
                    HostEntry::new(inner.next_id, limits.clone())
                }
            };
            inner.entries.push(entry);
        }
        for mut gone in old {
            notifications.extend(gone.take_notifications());
            if !inner.entries.iter().any(|entry| entry.limits.matches == gone.limits.matches) {
                remove_host(&gone.limits.matches);
            }
        }
        for entry in &inner.entries {
            entry.publish_gauges(now);
        }
        notifications
    }

    /// The pacing of `feed`'s messages: its own `outbound_rate`, else its
    /// host entry's, else `[defaults]`'s.
    pub(crate) fn outbound_rate(&self, feed: &FeedConfig) -> Option<OutboundRate> {
        let inner = self.lock();
        let host = destination(&feed.url).and_then(|(host, port)| {
            inner.entries.iter().find(|entry| entry.limits.matches(host, port))
        });
        feed.outbound_rate
            .or_else(|| host.and_then(|entry| entry.limits.outbound_rate))
            .or(inner.default_rate)
    }

    fn entry_for<'a>(inner: &'a mut Inner, url: &Url) -> Option<&'a mut HostEntry> {
        let (host, port) = destination(url)?;
        inner.entries.iter_mut().find(|entry| entry.limits.matches(host, port))
    }

    /// Asks for a connect attempt of `feed` to `url` at `now`, with the
    /// `ticket` of its wait if it waited: the place held is taken, unless a
    /// cool-down or a reload voided it (then a new one is handed out).
    /// `notify` is called if the feed must wait and its host changes meanwhile.
    pub(crate) fn admit(
        &self,
        feed: &str,
        url: &Url,
        ticket: Option<Ticket>,
        now: Instant,
        (rng, notify): (&mut impl Rng, Option<Notify>),
    ) -> Admission {
        let mut inner = self.lock();
        let Some(entry) = Self::entry_for(&mut inner, url) else { return Admission::Go };
        let held = ticket.filter(|ticket| ticket.entry == entry.id && ticket.epoch == entry.epoch);
        if held.is_some_and(|ticket| ticket.at <= now) {
            return entry.admitted(feed, now);
        }
        let not_before = entry.cooling(now).map_or(now, |cooldown| cooldown.until);
        let reason =
            if not_before > now { HostWaitReason::Cooldown } else { HostWaitReason::ConnectBudget };
        let at = match entry.window.as_mut() {
            None => not_before,
            Some(window) => {
                let free = window.next_free(now).max(not_before);
                let jitter = if free > now { jitter(window, rng) } else { Duration::ZERO };
                window.reserve(now, not_before, jitter)
            }
        };
        if at <= now {
            return entry.admitted(feed, now);
        }
        entry.waiting.insert(feed.to_owned(), Waiting { until: at, reason, notify });
        entry.publish_gauges(now);
        let shown =
            HostWait { host: entry.limits.matches.clone(), reason, until: wall_time(at, now) };
        Admission::Wait { ticket: Ticket { entry: entry.id, epoch: entry.epoch, at }, shown }
    }

    /// `feed` no longer waits (stopped, replaced, or told to connect now):
    /// its place held ahead, if any, is given back.
    pub(crate) fn leave(&self, feed: &str, url: &Url, ticket: Option<Ticket>) {
        let mut inner = self.lock();
        let Some(entry) = Self::entry_for(&mut inner, url) else { return };
        let now = Instant::now();
        if entry.waiting.remove(feed).is_some() {
            if let (Some(ticket), Some(window)) = (ticket, entry.window.as_mut()) {
                if ticket.entry == entry.id && ticket.epoch == entry.epoch {
                    window.give_back(ticket.at, now);
                }
            }
        }
        entry.publish_gauges(now);
    }

    /// A connect attempt to `url` was refused: if the host's entry lists
    /// the refusal, the host cools down for `retry_after` (or the entry's
    /// `cooldown`), at most the entry's `max_cooldown`, else `cap`. Returns
    /// the cool-down's length when one started.
    pub(crate) fn refused(
        &self,
        url: &Url,
        refusal: Refusal,
        retry_after: Option<Duration>,
        cap: Duration,
        now: Instant,
    ) -> Option<(String, Duration)> {
        let (cooled, notifications) = {
            let mut inner = self.lock();
            let entry = Self::entry_for(&mut inner, url)?;
            let length = entry.cooldown_for(refusal, retry_after, cap)?;
            entry.cool_down(refusal.label(), length, now);
            ((entry.limits.matches.clone(), length), entry.take_notifications())
        };
        for notify in notifications {
            notify();
        }
        Some(cooled)
    }

    /// Every entry's state at `now` (and its gauges brought up to date).
    pub(crate) fn status(&self, now: Instant) -> Vec<HostStatus> {
        let mut inner = self.lock();
        inner
            .entries
            .iter_mut()
            .map(|entry| {
                entry.publish_gauges(now);
                let cooldown = entry.cooling(now).map(|cooldown| CooldownStatus {
                    until: wall_time(cooldown.until, now),
                    remaining_secs: (cooldown.until - now).as_secs_f64(),
                    reason: cooldown.reason.clone(),
                });
                let waiting = entry
                    .waiting
                    .iter()
                    .map(|(feed, waiting)| WaitingFeed {
                        feed: feed.clone(),
                        reason: waiting.reason,
                        until: wall_time(waiting.until, now),
                    })
                    .collect();
                HostStatus {
                    host: entry.limits.matches.clone(),
                    connect_budget: entry.limits.connect_budget,
                    connects_in_window: entry.window.as_mut().map_or(0, |window| window.used(now)),
                    cooldown,
                    waiting,
                }
            })
            .collect()
    }

    /// Brings the entries' gauges (cool-down left, feeds waiting) up to date.
    pub(crate) fn publish_gauges(&self) {
        let inner = self.lock();
        let now = Instant::now();
        for entry in &inner.entries {
            entry.publish_gauges(now);
        }
    }
}

/// A random delay below the budget's spacing (`per / connects`), at most
/// [`MAX_JITTER`], so that feeds handed places in the same wave spread out.
fn jitter(window: &RollingWindow, rng: &mut impl Rng) -> Duration {
    let limit = u32::try_from(window.limit()).unwrap_or(u32::MAX);
    let spacing = (window.per() / limit).min(MAX_JITTER);
    if spacing.is_zero() {
        return Duration::ZERO;
    }
    spacing.mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::transports::TransportRegistry;

    fn config(hosts: &str) -> Config {
        let text = format!("[defaults]\noutbound_rate = {{ messages = 9, per = \"9s\" }}\n{hosts}");
        Config::from_toml_str(&text, Path::new("hosts.toml"), &TransportRegistry::with_memory())
            .expect("valid")
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    const ENTRY: &str = "[[hosts]]\nmatch = \"venue.test\"\nconnects = 1\nper = \"10s\"\n\
                         outbound_rate = { messages = 5, per = \"1s\" }\n";

    #[test]
    fn a_feed_gets_its_own_rate_else_its_hosts_else_the_defaults() {
        let registry = HostRegistry::new(&config(ENTRY));
        let mut feed = FeedConfig::new("f", url("wss://venue.test/ws"));
        assert_eq!(registry.outbound_rate(&feed).map(|rate| rate.messages), Some(5));
        feed.outbound_rate =
            Some(OutboundRate { messages: 1, per: Duration::from_secs(1), count_pings: false });
        assert_eq!(registry.outbound_rate(&feed).map(|rate| rate.messages), Some(1));
        let other = FeedConfig::new("g", url("wss://elsewhere.test/ws"));
        assert_eq!(registry.outbound_rate(&other).map(|rate| rate.messages), Some(9));
    }

    #[test]
    fn a_reload_keeps_an_unchanged_budget_and_tells_waiting_feeds_to_ask_again() {
        let registry = HostRegistry::new(&config(ENTRY));
        let (now, feed_url) = (Instant::now(), url("ws://venue.test/a"));
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(registry.admit("a", &feed_url, None, now, (&mut rng, None)), Admission::Go);
        let told = Arc::new(AtomicUsize::new(0));
        let counter = told.clone();
        let notify: Notify = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let Admission::Wait { ticket, shown } =
            registry.admit("b", &feed_url, None, now, (&mut rng, Some(notify)))
        else {
            panic!("the budget allows one connect per 10 s");
        };
        assert!(ticket.at >= now + Duration::from_secs(10));
        assert_eq!(shown.reason, HostWaitReason::ConnectBudget);

        // Same entry: the window stays (the first connect still counts), the waiting feed is told.
        registry.reload(&config(ENTRY));
        assert_eq!(told.load(Ordering::SeqCst), 1);
        let status = registry.status(now);
        assert_eq!(status[0].connects_in_window, 1, "the place held ahead was given back");
        // Its old ticket is void: asking with it hands out a new place, not the old one.
        let again = registry.admit("b", &feed_url, Some(ticket), ticket.at, (&mut rng, None));
        assert_eq!(again, Admission::Go, "the old place was free again at its time");

        // Entry gone: no budget any more.
        registry.reload(&config(""));
        assert!(registry.status(now).is_empty());
        assert_eq!(registry.admit("c", &feed_url, None, now, (&mut rng, None)), Admission::Go);
    }

    #[test]
    fn only_listed_refusals_cool_a_host_down_within_its_cap() {
        let entry = "[[hosts]]\nmatch = \"venue.test\"\ncooldown = \"3s\"\nmax_cooldown = \"1m\"\n\
                     cooldown_close_codes = [1008]\n";
        let registry = HostRegistry::new(&config(entry));
        let (now, feed_url) = (Instant::now(), url("ws://venue.test/a"));
        let cap = Duration::from_secs(300);
        assert_eq!(registry.refused(&feed_url, Refusal::Close(1011), None, cap, now), None);
        assert_eq!(registry.refused(&feed_url, Refusal::Status(500), None, cap, now), None);
        let cooled = registry.refused(&feed_url, Refusal::Close(1008), None, cap, now);
        assert_eq!(cooled, Some(("venue.test".to_owned(), Duration::from_secs(3))));
        let hour = Some(Duration::from_secs(3600));
        let cooled = registry.refused(&feed_url, Refusal::Status(429), hour, cap, now);
        assert_eq!(cooled, Some(("venue.test".to_owned(), Duration::from_secs(60))));
        let status = registry.status(now);
        let cooldown = status[0].cooldown.as_ref().expect("cooling down");
        assert_eq!(cooldown.reason, "status_429");
        assert_eq!(cooldown.remaining_secs, 60.0);
        let mut rng = StdRng::seed_from_u64(7);
        let Admission::Wait { ticket, shown } =
            registry.admit("a", &feed_url, None, now, (&mut rng, None))
        else {
            panic!("the host cools down");
        };
        assert_eq!(
            (ticket.at, shown.reason),
            (now + Duration::from_secs(60), HostWaitReason::Cooldown)
        );
        // Another host is not held.
        assert_eq!(
            registry.admit("x", &url("ws://other.test/"), None, now, (&mut rng, None)),
            Admission::Go
        );
    }
}
