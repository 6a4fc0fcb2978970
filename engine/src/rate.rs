//! A rate limit on rows moved, shared by every part and the change stream of a job.
//!
//! Scheduling is by virtual time: each `take(n)` books `n / rate` seconds on a shared clock
//! that never runs ahead of now by more than one second's worth of bursts, and waits until
//! its booking starts. Over any long stretch the rate holds exactly, whatever the batch
//! sizes; a batch larger than a second's worth simply books more than a second. The rate can
//! change while a job runs; bookings made under the old rate stand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How far back an idle limiter lets bookings start: up to this much of the rate may go at
/// once after a pause.
const BURST: Duration = Duration::from_secs(1);

/// Rows per second for a whole job; `0` means no limit.
#[derive(Debug)]
pub struct RateLimit {
    per_second: AtomicU64,
    /// How far back an idle limiter lets bookings start.
    burst: Duration,
    /// When the next booking starts.
    next: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// A limit of `per_second` units a second (`0`: none).
    pub fn new(per_second: u64) -> RateLimit {
        RateLimit {
            per_second: AtomicU64::new(per_second),
            burst: BURST,
            next: Mutex::new(None),
        }
    }

    /// The same limit with bursts of at most `burst`'s worth after a pause (one second by
    /// default): a bandwidth limit holds closer over a short transfer with a short burst.
    pub fn with_burst(mut self, burst: Duration) -> RateLimit {
        self.burst = burst;
        self
    }

    /// The current limit (`0`: none).
    pub fn per_second(&self) -> u64 {
        self.per_second.load(Ordering::Relaxed)
    }

    /// Changes the limit for bookings made from now on.
    pub fn set_per_second(&self, per_second: u64) {
        self.per_second.store(per_second, Ordering::Relaxed);
    }

    /// Books `units` and returns when their turn starts (at once when there is no limit).
    pub async fn take(&self, units: u64) {
        if let Some(start) = self.book(units, Instant::now()) {
            tokio::time::sleep_until(start).await;
        }
    }

    /// Books `units` at time `now`; the instant their turn starts, or `None` when that is
    /// now.
    fn book(&self, units: u64, now: Instant) -> Option<Instant> {
        let rate = self.per_second();
        if rate == 0 || units == 0 {
            return None;
        }
        let length = Duration::from_secs_f64(units as f64 / rate as f64);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let start = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(start + length);
        (start > now).then_some(start)
    }
}

/// A job's limits while it runs: rows and source bytes a second, shared by every snapshot part
/// and the change stream, changed in place (`ferry limit`, the service's limits action).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Rows (Redis: keys, then commands) a second; 0: none.
    pub rows: Arc<RateLimit>,
    /// Bytes read from the source a second; 0: none.
    pub bytes: Arc<RateLimit>,
}

/// Bursts of a bandwidth limit: a tenth of a second's worth, so it holds closely over a short
/// transfer as well.
const BYTES_BURST: Duration = Duration::from_millis(100);

impl Limits {
    /// Limits of `rows_per_second` rows and `bytes_per_second` source bytes (0: none).
    pub fn new(rows_per_second: u64, bytes_per_second: u64) -> Limits {
        Limits {
            rows: Arc::new(RateLimit::new(rows_per_second)),
            bytes: Arc::new(RateLimit::new(bytes_per_second).with_burst(BYTES_BURST)),
        }
    }

    /// No limits.
    pub fn none() -> Limits {
        Limits::new(0, 0)
    }

    /// Books `rows` rows of `bytes` source bytes on both limits; returns when both allow them.
    pub async fn take(&self, rows: u64, bytes: u64) {
        tokio::join!(self.rows.take(rows), self.bytes.take(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_waits() {
        let limit = RateLimit::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limit.book(1_000_000, now), None);
        }
    }

    #[test]
    fn bookings_follow_the_rate_after_one_burst() {
        let limit = RateLimit::new(1000);
        let now = Instant::now();
        // A second's worth of bookings may start in the past (the burst), one more now, then
        // each 500 rows waits 0.5 s more than the last.
        assert_eq!(limit.book(500, now), None);
        assert_eq!(limit.book(500, now), None);
        assert_eq!(limit.book(500, now), None);
        let later = limit.book(500, now).expect("booked ahead");
        assert_eq!(later - now, Duration::from_millis(500));
        let later = limit.book(2000, now).expect("booked ahead");
        assert_eq!(later - now, Duration::from_secs(1));
        let later = limit.book(1, now).expect("booked ahead");
        assert_eq!(later - now, Duration::from_secs(3));
    }

    #[test]
    fn an_idle_limiter_does_not_bank_more_than_the_burst() {
        let limit = RateLimit::new(100);
        let start = Instant::now();
        assert_eq!(limit.book(100, start), None);
        // A long pause banks only one second's worth.
        let later = start + Duration::from_secs(60);
        assert_eq!(limit.book(100, later), None);
        assert_eq!(limit.book(100, later), None);
        assert_eq!(limit.book(1, later), Some(later + Duration::from_secs(1)));
    }

    #[test]
    fn a_shorter_burst_banks_less() {
        let limit = RateLimit::new(1000).with_burst(Duration::from_millis(100));
        let now = Instant::now();
        // 0.1 s may start in the past, the next 0.1 s now; the one after waits.
        assert_eq!(limit.book(100, now), None);
        assert_eq!(limit.book(100, now), None);
        assert_eq!(limit.book(100, now), Some(now + Duration::from_millis(100)));
    }

    #[test]
    fn a_changed_rate_applies_to_new_bookings() {
        let limit = RateLimit::new(10);
        let now = Instant::now();
        assert_eq!(limit.book(10, now), None);
        limit.set_per_second(100);
        assert_eq!(limit.book(100, now), None);
        let later = limit.book(1, now).expect("booked ahead");
        assert_eq!(later - now, Duration::from_secs(1));
        limit.set_per_second(0);
        assert_eq!(limit.book(1_000_000, now), None);
    }
}
