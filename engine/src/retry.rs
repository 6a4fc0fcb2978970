//! One retry policy for every kind of job: after an external failure (a server restarting,
//! the network), a job tries again from its checkpoint after a pause that doubles with each
//! failed try, up to a bound; the count starts again whenever the job's point moves.

use std::time::Duration;

/// Tries after a failure before a bounded job gives up (the count starts again whenever the
/// checkpoint moves): enough to ride out a server restart or a fail-over.
pub const RETRY_TRIES: u32 = 8;
/// Pause before the first try again; it doubles with each failed try.
pub const RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between tries.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(15);

/// How a job tries again after an external failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after failures in a row before giving up; `None`: as long as it takes.
    pub tries: Option<u32>,
    /// The first pause.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// [`RETRY_TRIES`] tries.
    pub const BOUNDED: RetryPolicy = RetryPolicy {
        tries: Some(RETRY_TRIES),
        first_delay: RETRY_FIRST_DELAY,
        max_delay: RETRY_MAX_DELAY,
    };
    /// As long as it takes.
    pub const UNBOUNDED: RetryPolicy = RetryPolicy {
        tries: None,
        ..RetryPolicy::BOUNDED
    };
    /// Never: the first failure ends the run (the next run continues from the checkpoint).
    pub const NEVER: RetryPolicy = RetryPolicy {
        tries: Some(0),
        ..RetryPolicy::BOUNDED
    };

    /// The pause before try number `failures` (counted from 1 since the point last moved);
    /// `None` when the policy gives up.
    pub fn delay(&self, failures: u32) -> Option<Duration> {
        if failures == 0 || self.tries.is_some_and(|tries| failures > tries) {
            return None;
        }
        Some(
            self.first_delay
                .saturating_mul(1 << (failures - 1).min(5))
                .min(self.max_delay),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_bound_and_tries_end() {
        let policy = RetryPolicy::BOUNDED;
        assert_eq!(policy.delay(1), Some(RETRY_FIRST_DELAY));
        assert_eq!(policy.delay(2), Some(RETRY_FIRST_DELAY * 2));
        assert_eq!(policy.delay(RETRY_TRIES), Some(RETRY_MAX_DELAY));
        assert_eq!(policy.delay(RETRY_TRIES + 1), None);
        assert_eq!(RetryPolicy::UNBOUNDED.delay(1000), Some(RETRY_MAX_DELAY));
        assert_eq!(RetryPolicy::NEVER.delay(1), None);
    }
}
