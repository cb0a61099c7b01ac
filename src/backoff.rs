//! Reconnect delays: exponential backoff with full jitter.
//!
//! The delay is a pure function of the attempt number and a random source, so
//! tests pin it with a seeded generator. Full jitter (a uniform draw between
//! zero and the exponential ceiling) spreads feeds that dropped together over
//! the whole window instead of retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The largest ceiling, however many attempts failed.
    pub max: Duration,
    /// How much the ceiling grows per failed attempt.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The ceiling for attempt `attempt` (0 for the first retry): `initial * multiplier^attempt`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let seconds = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        if seconds.is_finite() && seconds < self.max.as_secs_f64() {
            Duration::from_secs_f64(seconds)
        } else {
            self.max
        }
    }

    /// The delay before retry number `attempt`: uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(rng.random_range(0.0..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn ceiling_grows_by_the_multiplier_and_stops_at_max() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(500));
        assert_eq!(backoff.ceiling(1), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(3), Duration::from_secs(4));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_spread_out() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.delay(4, &mut rng)).collect();
        assert!(delays.iter().all(|delay| *delay <= backoff.ceiling(4)));
        // A thousand feeds retrying together land in every tenth of the window.
        let mut deciles = [0usize; 10];
        for delay in &delays {
            let index = (delay.as_secs_f64() / backoff.ceiling(4).as_secs_f64() * 10.0) as usize;
            deciles[index.min(9)] += 1;
        }
        assert!(deciles.iter().all(|count| *count > 50), "{deciles:?}");
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let backoff = Backoff::default();
        let mut first = StdRng::seed_from_u64(42);
        let mut second = StdRng::seed_from_u64(42);
        for attempt in 0..10 {
            assert_eq!(backoff.delay(attempt, &mut first), backoff.delay(attempt, &mut second));
        }
    }
}
