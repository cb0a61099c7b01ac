//! The reconnect policy of a feed, and the reconnect state it drives.
//!
//! [`ReconnectPolicy`] is what the config says (`reconnect = { ... }`);
//! [`Backoff`] is one feed's state under it: how many attempts failed in a
//! row, and the previous delay for decorrelated jitter. Both are pure: the
//! random source is passed in, so tests pin every delay with a seeded
//! generator, and the caller owns the clock.
//!
//! Jitter matters when many feeds drop together (an upstream restart): with
//! `full` jitter their first retries spread over the whole window instead of
//! arriving in lockstep and knocking the upstream over again.
//!
//! `clippy.toml` keeps it pure: no random source or clock of its own.

#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the delay ceiling evolves from one failed attempt to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// `initial * multiplier^n`, capped at `max`.
    #[default]
    Exponential,
    /// Always `initial`; `max` and `multiplier` are not used.
    Fixed,
    /// Never reconnect: the first failure is final.
    None,
}

impl PolicyKind {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exponential => "exponential",
            Self::Fixed => "fixed",
            Self::None => "none",
        }
    }
}

/// How a delay is drawn below (or around) its ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Exactly the ceiling: feeds that dropped together retry together.
    None,
    /// Uniform in `[0, ceiling]`: the widest spread.
    #[default]
    Full,
    /// `ceiling / 2` plus uniform in `[0, ceiling / 2]`: never shorter than half.
    Equal,
    /// AWS "decorrelated jitter": uniform in `[initial, previous * 3]`, capped;
    /// grows from the previous delay rather than from the attempt number, so
    /// `multiplier` is not used.
    Decorrelated,
}

impl Jitter {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
            Self::Equal => "equal",
            Self::Decorrelated => "decorrelated",
        }
    }
}

/// `reconnect = { ... }` of a feed, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// How the ceiling grows.
    pub kind: PolicyKind,
    /// The ceiling of the first delay (and the floor of decorrelated delays).
    pub initial: Duration,
    /// The largest ceiling, however many attempts failed (exponential and decorrelated).
    pub max: Duration,
    /// How much the ceiling grows per failed attempt (exponential).
    pub multiplier: f64,
    /// How a delay is drawn from its ceiling.
    pub jitter: Jitter,
    /// Consecutive retries before giving up; 0 retries forever.
    pub max_attempts: u32,
    /// How long a connection must stay open for the attempts to start over:
    /// a connection that drops right after opening still counts as a failure.
    pub reset_after: Duration,
    /// The longest wait a server's `Retry-After` may impose: a longer one is
    /// cut to this (a `Retry-After` of years would park the feed silently).
    pub max_retry_after: Duration,
}

/// The default [`ReconnectPolicy::max_retry_after`].
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Exponential,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: Jitter::Full,
            max_attempts: 0,
            reset_after: Duration::from_secs(60),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl ReconnectPolicy {
    /// The ceiling of retry number `attempt` (0 for the first retry), before jitter.
    ///
    /// Exponential: `min(max, initial * multiplier^attempt)`, without
    /// overflow however large `attempt` is. Fixed: `initial`. None: zero.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        match self.kind {
            PolicyKind::Exponential => {
                let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
                // `max(1.0)` also turns a NaN multiplier into 1.0: the ceiling never shrinks.
                let seconds = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
                match Duration::try_from_secs_f64(seconds) {
                    Ok(ceiling) if ceiling < self.max => ceiling,
                    _ => self.max,
                }
            }
            PolicyKind::Fixed => self.initial,
            PolicyKind::None => Duration::ZERO,
        }
    }

    /// The cap of decorrelated delays: `max`, or `initial` for a fixed policy.
    fn cap(&self) -> Duration {
        match self.kind {
            PolicyKind::Exponential => self.max,
            PolicyKind::Fixed | PolicyKind::None => self.initial,
        }
    }
}

/// The reconnect state of one feed.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// What the config asks for.
    policy: ReconnectPolicy,
    /// Retries handed out since the last reset: the exponent of the next
    /// ceiling, and what `max_attempts` is counted against.
    attempts: u32,
    /// The previous delay before any `retry_after` floor: decorrelated jitter
    /// draws the next one from it. `initial` after a reset.
    previous: Duration,
}

impl Backoff {
    /// A fresh state: no attempt made yet.
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempts: 0, previous: policy.initial }
    }

    /// The policy this state follows.
    pub(crate) fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Attempts made since the last reset (the number of the next retry, 0-based).
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, and counts that attempt; `None`
    /// when the policy gives up: at once for kind `None`, and for
    /// `max_attempts = n > 0` after `n` delays were handed out since the last
    /// reset (the `n + 1`-th call, and every later one, returns `None` and
    /// counts nothing).
    ///
    /// `retry_after` (from an HTTP 429 or 503 answer), cut to
    /// `max_retry_after`, is a floor: the delay is at least that long, even
    /// past `max`. It does not feed the
    /// decorrelated state, so one long server-imposed wait does not inflate
    /// the delays after it.
    pub(crate) fn next_delay(
        &mut self,
        rng: &mut impl Rng,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let policy = &self.policy;
        if policy.kind == PolicyKind::None
            || (policy.max_attempts > 0 && self.attempts >= policy.max_attempts)
        {
            return None;
        }
        let delay = match policy.jitter {
            Jitter::None => policy.ceiling(self.attempts),
            Jitter::Full => rng.random_range(Duration::ZERO..=policy.ceiling(self.attempts)),
            Jitter::Equal => {
                let ceiling = policy.ceiling(self.attempts);
                let half = ceiling / 2;
                half + rng.random_range(Duration::ZERO..=ceiling - half)
            }
            Jitter::Decorrelated => {
                let low = policy.initial;
                let high = self.previous.saturating_mul(3).max(low);
                let delay = rng.random_range(low..=high).min(policy.cap());
                self.previous = delay;
                delay
            }
        };
        self.attempts = self.attempts.saturating_add(1);
        let floor = retry_after.map(|floor| floor.min(policy.max_retry_after));
        Some(floor.map_or(delay, |floor| delay.max(floor)))
    }

    /// A connection that was open for `open_for` has ended: when `open_for`
    /// reaches `reset_after`, the attempts and the decorrelated state start
    /// over; a shorter connection leaves them as they are, so a feed that
    /// opens and drops at once keeps backing off.
    pub(crate) fn connection_ended(&mut self, open_for: Duration) {
        if open_for >= self.policy.reset_after {
            self.attempts = 0;
            self.previous = self.policy.initial;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn policy(kind: PolicyKind, jitter: Jitter) -> ReconnectPolicy {
        ReconnectPolicy { kind, jitter, ..ReconnectPolicy::default() }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    /// The next `count` delays, every one expected to be handed out.
    fn delays(backoff: &mut Backoff, rng: &mut StdRng, count: usize) -> Vec<Duration> {
        (0..count)
            .map(|index| {
                backoff
                    .next_delay(rng, None)
                    .unwrap_or_else(|| panic!("delay {index} should be handed out"))
            })
            .collect()
    }

    const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn default_policy_is_exponential_with_full_jitter() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.kind, PolicyKind::Exponential);
        assert_eq!((policy.initial, policy.max), (ms(500), Duration::from_secs(30)));
        assert_eq!(policy.multiplier, 2.0);
        assert_eq!(policy.jitter, Jitter::Full);
        assert_eq!(policy.max_attempts, 0);
        assert_eq!(policy.reset_after, Duration::from_secs(60));
    }

    #[test]
    fn names_match_the_config() {
        let kinds = [PolicyKind::Exponential, PolicyKind::Fixed, PolicyKind::None];
        assert_eq!(kinds.map(PolicyKind::as_str), ["exponential", "fixed", "none"]);
        let jitters = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated];
        assert_eq!(jitters.map(Jitter::as_str), ["none", "full", "equal", "decorrelated"]);
        for jitter in jitters {
            let json = serde_json::to_string(&jitter).expect("serialize");
            assert_eq!(json, format!("\"{}\"", jitter.as_str()));
        }
        for kind in kinds {
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn exponential_ceiling_grows_by_the_multiplier_and_stops_at_max() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.ceiling(0), ms(500));
        assert_eq!(policy.ceiling(1), ms(1000));
        assert_eq!(policy.ceiling(3), ms(4000));
        assert_eq!(policy.ceiling(6), Duration::from_secs(30));
        assert_eq!(policy.ceiling(1_000_000), Duration::from_secs(30));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(30));
        let huge = ReconnectPolicy { multiplier: f64::MAX, max: Duration::MAX, ..policy };
        assert_eq!(huge.ceiling(2), Duration::MAX);
    }

    #[test]
    fn exponential_without_jitter_doubles_then_holds_at_max() {
        let mut backoff = Backoff::new(policy(PolicyKind::Exponential, Jitter::None));
        let got = delays(&mut backoff, &mut rng(), 9);
        let expected =
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000].map(Duration::from_millis);
        assert_eq!(got, expected);
        assert_eq!(backoff.attempts(), 9);
    }

    #[test]
    fn full_jitter_stays_within_the_growing_ceiling() {
        let policy = policy(PolicyKind::Exponential, Jitter::Full);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        for attempt in 0..20 {
            let delay = backoff.next_delay(&mut rng, None).expect("retries forever");
            assert!(delay <= policy.ceiling(attempt), "attempt {attempt}: {delay:?}");
        }
        // Late attempts draw from the whole capped window, not just its start.
        let late = delays(&mut backoff, &mut rng, 200);
        assert!(late.iter().any(|delay| *delay > Duration::from_secs(20)), "{late:?}");
        assert!(late.iter().all(|delay| *delay <= policy.max));
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let policy = policy(PolicyKind::Exponential, Jitter::Equal);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        for attempt in 0..30 {
            let delay = backoff.next_delay(&mut rng, None).expect("retries forever");
            let ceiling = policy.ceiling(attempt);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt}: {delay:?}");
        }
    }

    #[test]
    fn decorrelated_jitter_stays_between_initial_and_three_times_the_previous() {
        let policy = policy(PolicyKind::Exponential, Jitter::Decorrelated);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        let mut previous = policy.initial;
        let mut reached_max = false;
        for _ in 0..200 {
            let delay = backoff.next_delay(&mut rng, None).expect("retries forever");
            assert!(delay >= policy.initial, "{delay:?}");
            assert!(delay <= (previous * 3).min(policy.max), "{delay:?} after {previous:?}");
            reached_max |= delay == policy.max;
            previous = delay;
        }
        assert!(reached_max, "decorrelated delays grow until the cap");
    }

    #[test]
    fn fixed_policy_never_grows() {
        let fixed = ReconnectPolicy {
            initial: Duration::from_secs(2),
            ..policy(PolicyKind::Fixed, Jitter::None)
        };
        let mut backoff = Backoff::new(fixed);
        assert_eq!(delays(&mut backoff, &mut rng(), 50), vec![Duration::from_secs(2); 50]);

        // With jitter, every draw comes from the same window.
        let mut backoff = Backoff::new(ReconnectPolicy { jitter: Jitter::Full, ..fixed });
        let got = delays(&mut backoff, &mut rng(), 50);
        assert!(got.iter().all(|delay| *delay <= Duration::from_secs(2)), "{got:?}");

        // Decorrelated jitter under a fixed policy is capped at `initial`.
        let mut backoff = Backoff::new(ReconnectPolicy { jitter: Jitter::Decorrelated, ..fixed });
        assert_eq!(delays(&mut backoff, &mut rng(), 20), vec![Duration::from_secs(2); 20]);
    }

    #[test]
    fn none_policy_gives_up_at_once() {
        let mut backoff = Backoff::new(policy(PolicyKind::None, Jitter::Full));
        let mut rng = rng();
        assert_eq!(backoff.next_delay(&mut rng, None), None);
        assert_eq!(backoff.next_delay(&mut rng, Some(ms(100))), None);
        assert_eq!(backoff.attempts(), 0);
    }

    #[test]
    fn max_attempts_schedules_that_many_retries_then_gives_up() {
        let limited = ReconnectPolicy { max_attempts: 3, ..ReconnectPolicy::default() };
        let mut backoff = Backoff::new(limited);
        let mut rng = rng();
        delays(&mut backoff, &mut rng, 3);
        assert_eq!(backoff.attempts(), 3);
        assert_eq!(backoff.next_delay(&mut rng, None), None);
        assert_eq!(backoff.next_delay(&mut rng, Some(ms(10))), None);
        assert_eq!(backoff.attempts(), 3, "giving up counts nothing");

        // A connection that stayed up long enough earns a fresh set of retries.
        backoff.connection_ended(limited.reset_after);
        assert_eq!(backoff.attempts(), 0);
        delays(&mut backoff, &mut rng, 3);
        assert_eq!(backoff.next_delay(&mut rng, None), None);
    }

    #[test]
    fn attempts_reset_only_after_a_stable_period() {
        let policy = policy(PolicyKind::Exponential, Jitter::None);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        delays(&mut backoff, &mut rng, 4);

        // Open, then dropped before `reset_after`: still backing off.
        backoff.connection_ended(policy.reset_after - ms(1));
        assert_eq!(backoff.attempts(), 4);
        assert_eq!(backoff.next_delay(&mut rng, None), Some(ms(8000)));

        // Open for `reset_after`: the next delay is the first again.
        backoff.connection_ended(policy.reset_after);
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(&mut rng, None), Some(ms(500)));
    }

    #[test]
    fn reset_restarts_decorrelated_delays_from_initial() {
        let policy = policy(PolicyKind::Exponential, Jitter::Decorrelated);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        delays(&mut backoff, &mut rng, 30);
        backoff.connection_ended(Duration::from_secs(3600));
        let first = backoff.next_delay(&mut rng, None).expect("delay");
        assert!(first >= policy.initial && first <= policy.initial * 3, "{first:?}");
    }

    #[test]
    fn a_retry_after_of_years_is_cut_to_max_retry_after() {
        // Found by trying: Retry-After: 99999999999 parked a feed for millennia.
        let policy = ReconnectPolicy {
            max_retry_after: Duration::from_secs(90),
            ..policy(PolicyKind::Exponential, Jitter::None)
        };
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        let years = Duration::from_secs(99_999_999_999);
        assert_eq!(backoff.next_delay(&mut rng, Some(years)), Some(Duration::from_secs(90)));
        assert_eq!(
            backoff.next_delay(&mut rng, Some(Duration::MAX)),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn retry_after_is_a_floor_even_beyond_max() {
        let policy = policy(PolicyKind::Exponential, Jitter::Full);
        let mut backoff = Backoff::new(policy);
        let mut rng = rng();
        let floor = Duration::from_secs(120);
        assert_eq!(backoff.next_delay(&mut rng, Some(floor)), Some(floor));
        assert_eq!(backoff.attempts(), 1, "a floored delay still counts");
        // A floor below the drawn delay changes nothing.
        let mut unfloored = Backoff::new(ReconnectPolicy { jitter: Jitter::None, ..policy });
        assert_eq!(unfloored.next_delay(&mut rng, Some(ms(1))), Some(ms(500)));
        assert_eq!(unfloored.next_delay(&mut rng, Some(ms(3000))), Some(ms(3000)));
        assert_eq!(unfloored.next_delay(&mut rng, None), Some(ms(2000)));
    }

    #[test]
    fn same_seed_gives_same_delays() {
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let policy = policy(PolicyKind::Exponential, jitter);
            let (mut first, mut second) = (Backoff::new(policy), Backoff::new(policy));
            let first = delays(&mut first, &mut StdRng::seed_from_u64(42), 20);
            let second = delays(&mut second, &mut StdRng::seed_from_u64(42), 20);
            assert_eq!(first, second, "{jitter:?}");
        }
    }

    #[test]
    fn feeds_that_dropped_together_spread_over_the_window() {
        let full = policy(PolicyKind::Exponential, Jitter::Full);
        let window = full.ceiling(0);
        let mut rng = rng();
        let first: Vec<Duration> = (0..1000)
            .map(|_| Backoff::new(full).next_delay(&mut rng, None).expect("delay"))
            .collect();
        // A thousand feeds retrying together land in every tenth of the window.
        let mut tenths = [0usize; 10];
        for delay in &first {
            assert!(*delay <= window);
            let index = (delay.as_secs_f64() / window.as_secs_f64() * 10.0) as usize;
            tenths[index.min(9)] += 1;
        }
        assert!(tenths.iter().all(|count| *count > 50), "{tenths:?}");

        // Without jitter they all come back at the same instant.
        let lockstep = ReconnectPolicy { jitter: Jitter::None, ..full };
        let first: Vec<Duration> = (0..1000)
            .map(|_| Backoff::new(lockstep).next_delay(&mut rng, None).expect("delay"))
            .collect();
        assert!(first.iter().all(|delay| *delay == window), "{:?}", &first[..5]);
    }

    mod properties {
        use proptest::prelude::*;
        use rand::rngs::StdRng;
        use rand::SeedableRng;

        use super::super::*;

        fn kind() -> impl Strategy<Value = PolicyKind> {
            prop_oneof![
                Just(PolicyKind::Exponential),
                Just(PolicyKind::Fixed),
                Just(PolicyKind::None)
            ]
        }

        fn jitter() -> impl Strategy<Value = Jitter> {
            prop_oneof![
                Just(Jitter::None),
                Just(Jitter::Full),
                Just(Jitter::Equal),
                Just(Jitter::Decorrelated)
            ]
        }

        /// Durations from nothing to far beyond any sane config (u64::MAX seconds included).
        fn duration() -> impl Strategy<Value = Duration> {
            prop_oneof![
                (0u64..100_000).prop_map(Duration::from_millis),
                any::<u64>().prop_map(Duration::from_nanos),
                any::<u64>().prop_map(Duration::from_secs),
                Just(Duration::MAX),
            ]
        }

        /// Multipliers including the ones a config check refuses: below 1, NaN, infinite.
        fn multiplier() -> impl Strategy<Value = f64> {
            prop_oneof![1.0f64..10.0, any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)]
        }

        fn policy() -> impl Strategy<Value = ReconnectPolicy> {
            let shape = (kind(), duration(), duration(), multiplier(), jitter());
            let limits = (0u32..20, duration(), duration());
            (shape, limits).prop_map(
                |(
                    (kind, initial, max, multiplier, jitter),
                    (max_attempts, reset_after, max_retry_after),
                )| {
                    ReconnectPolicy {
                        kind,
                        initial,
                        max,
                        multiplier,
                        jitter,
                        max_attempts,
                        reset_after,
                        max_retry_after,
                    }
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Every delay lies within its policy's bounds, whatever the
            /// policy, the attempt number (up to u32::MAX) or the
            /// Retry-After floor, and nothing overflows or panics.
            #[test]
            fn delays_stay_within_the_policy_bounds(
                policy in policy(),
                start in prop_oneof![0u32..64, any::<u32>()],
                floor in proptest::option::of(duration()),
                seed in any::<u64>(),
            ) {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut backoff = Backoff::new(policy);
                backoff.attempts = start;
                let limit = if policy.max_attempts == 0 { u32::MAX } else { policy.max_attempts };
                for _ in 0..40 {
                    let attempt = backoff.attempts;
                    let ceiling = policy.ceiling(attempt);
                    let delay = backoff.next_delay(&mut rng, floor);
                    if policy.kind == PolicyKind::None || attempt >= limit {
                        prop_assert_eq!(delay, None);
                        prop_assert_eq!(backoff.attempts, attempt, "a refusal counts nothing");
                        continue;
                    }
                    let delay = delay.expect("a delay below max_attempts");
                    prop_assert_eq!(backoff.attempts, attempt.saturating_add(1));
                    if policy.kind == PolicyKind::Exponential {
                        prop_assert!(ceiling <= policy.max, "ceiling {ceiling:?} over max");
                    } else {
                        prop_assert_eq!(ceiling, policy.initial);
                    }
                    let (low, high) = match policy.jitter {
                        Jitter::None => (ceiling, ceiling),
                        Jitter::Full => (Duration::ZERO, ceiling),
                        Jitter::Equal => (ceiling / 2, ceiling),
                        Jitter::Decorrelated => (policy.initial.min(policy.cap()), policy.cap()),
                    };
                    // A server's Retry-After is a floor, cut to max_retry_after.
                    let (low, high) = match floor.map(|floor| floor.min(policy.max_retry_after)) {
                        Some(floor) => (low.max(floor), high.max(floor)),
                        None => (low, high),
                    };
                    prop_assert!(
                        low <= delay && delay <= high,
                        "{delay:?} outside {low:?}..={high:?} for attempt {attempt} of {policy:?}"
                    );
                }
            }
        }
    }
}
