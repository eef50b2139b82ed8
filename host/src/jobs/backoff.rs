//! Retry timing: exponential backoff with jitter as a pure function of the
//! attempt, and the retry decision for a failed attempt. No clock, no
//! randomness of its own: the caller passes the jitter, so the properties
//! (monotone up to the cap, never above it, jitter within bounds) are
//! checked by proptest.

use std::time::Duration;

/// Backoff settings (`[jobs] backoff_base_ms`, `backoff_cap_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry, before jitter.
    pub base: Duration,
    /// No delay is longer than this, jitter included.
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry):
    /// `base * 2^(attempt-1)` capped at `cap`, then scaled by a jitter
    /// `jitter` in [0, 1] to between half and all of it ("equal jitter"), so
    /// retries of many jobs that failed together spread out but none comes
    /// sooner than half its nominal delay.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let nominal = self.nominal(attempt);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        nominal.mul_f64(0.5 + 0.5 * jitter).min(self.cap)
    }

    /// The delay before retry `attempt` without jitter: doubling from
    /// `base`, never above `cap`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base_ms.saturating_mul(factor)).min(self.cap)
    }
}

/// How a job attempt failed, as its handler classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Worth retrying (a timeout, a busy resource).
    Transient,
    /// Retrying cannot help (bad parameters, a panic).
    Terminal,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Queue it again, due after this delay.
    After(Duration),
    /// Fail it for good.
    GiveUp,
}

/// The retry decision after attempt `attempts` (1 = the first) of at most
/// `max_attempts` failed as `class`.
pub fn next_attempt(
    attempts: u32,
    max_attempts: u32,
    class: FailureClass,
    backoff: &Backoff,
    jitter: f64,
) -> Retry {
    if class == FailureClass::Terminal || attempts >= max_attempts {
        return Retry::GiveUp;
    }
    Retry::After(backoff.delay(attempts, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(3600),
    };

    #[test]
    fn the_retry_decision_follows_the_class_and_the_attempts_left() {
        let table = [
            (
                1,
                5,
                FailureClass::Transient,
                0.0,
                Retry::After(Duration::from_millis(100)),
            ),
            (
                1,
                5,
                FailureClass::Transient,
                1.0,
                Retry::After(Duration::from_millis(200)),
            ),
            (
                2,
                5,
                FailureClass::Transient,
                1.0,
                Retry::After(Duration::from_millis(400)),
            ),
            (
                4,
                5,
                FailureClass::Transient,
                1.0,
                Retry::After(Duration::from_millis(1600)),
            ),
            (5, 5, FailureClass::Transient, 1.0, Retry::GiveUp),
            (9, 5, FailureClass::Transient, 1.0, Retry::GiveUp),
            (1, 5, FailureClass::Terminal, 1.0, Retry::GiveUp),
            (
                40,
                100,
                FailureClass::Transient,
                1.0,
                Retry::After(Duration::from_secs(3600)),
            ),
        ];
        for (attempts, max, class, jitter, expected) in table {
            assert_eq!(
                next_attempt(attempts, max, class, &DEFAULT, jitter),
                expected,
                "attempt {attempts} of {max}, {class:?}, jitter {jitter}"
            );
        }
    }

    proptest! {
        #[test]
        fn backoff_is_monotone_up_to_the_cap(base_ms in 1u64..10_000, cap_ms in 1u64..10_000_000, attempt in 1u32..200) {
            let backoff = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            prop_assert!(backoff.nominal(attempt) <= backoff.nominal(attempt + 1));
            let next = backoff.nominal(attempt + 1);
            prop_assert!(next == backoff.cap || next == backoff.nominal(attempt) * 2);
        }

        #[test]
        fn backoff_never_exceeds_the_cap(base_ms in 0u64..u64::MAX / 2, cap_ms in 0u64..u64::MAX / 2, attempt in 0u32..u32::MAX, jitter in proptest::num::f64::ANY) {
            let backoff = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            prop_assert!(backoff.delay(attempt, jitter) <= backoff.cap);
        }

        #[test]
        fn jitter_stays_within_half_and_all_of_the_nominal_delay(base_ms in 1u64..100_000, attempt in 1u32..64, jitter in 0.0f64..=1.0) {
            let backoff = Backoff { base: Duration::from_millis(base_ms), cap: DEFAULT.cap };
            let nominal = backoff.nominal(attempt);
            let delay = backoff.delay(attempt, jitter);
            prop_assert!(delay <= nominal, "{delay:?} > {nominal:?}");
            prop_assert!(delay >= (nominal / 2).saturating_sub(Duration::from_millis(1)), "{delay:?} < half of {nominal:?}");
        }
    }
}
