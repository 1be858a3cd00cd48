//! Reconnect delays: exponential growth with full jitter, capped.
//!
//! "Full jitter" (each delay drawn uniformly between zero and the current ceiling) spreads the
//! reconnects of many clients after a server restart instead of making them arrive in waves;
//! see <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>.

use rand::{Rng, RngExt};
use std::time::Duration;

/// How long to wait between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub initial: Duration,
    /// No delay is ever longer than this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The longest delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// never more than `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry number `attempt` (1-based): uniform in `0..=ceiling(attempt)`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceilings_double_then_stop_at_max() {
        let b = Backoff::default();
        let ms = |a| b.ceiling(a).as_millis();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 8].map(ms),
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000]
        );
        assert_eq!(b.ceiling(1000), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        assert_eq!(b.ceiling(0), b.initial, "attempt 0 is treated as the first");
    }

    #[test]
    fn delays_stay_under_the_ceiling_and_grow_on_average() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut previous_mean = Duration::ZERO;
        for attempt in 1..=12 {
            let samples: Vec<Duration> = (0..400).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(
                samples
                    .iter()
                    .all(|d| *d <= b.ceiling(attempt) && *d <= b.max)
            );
            let mean = samples.iter().sum::<Duration>() / 400;
            // Full jitter: the mean is about half the ceiling.
            let half = b.ceiling(attempt) / 2;
            assert!(
                mean > half * 8 / 10 && mean < half * 12 / 10,
                "attempt {attempt}: mean {mean:?}, ceiling {:?}",
                b.ceiling(attempt)
            );
            if b.ceiling(attempt) < b.max {
                assert!(mean > previous_mean, "attempt {attempt}: {mean:?}");
            }
            previous_mean = mean;
        }
    }

    #[test]
    fn a_seeded_rng_gives_the_same_delays() {
        let b = Backoff::default();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=6).map(|a| b.delay(a, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn zero_max_means_no_wait() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::ZERO,
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.delay(5, &mut rng), Duration::ZERO);
    }
}
