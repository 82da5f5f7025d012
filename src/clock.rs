//! Time, injected: the one place in the crate that reads the system clock.

use azure_core::time::{Duration, OffsetDateTime};
use parking_lot::Mutex;
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

/// A source of the current time.
///
/// Everything in this crate that needs "now" asks a `Clock`, so tests and simulations can move
/// time by hand with [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// The current time as milliseconds since the Unix epoch: what the token cache's hit path
    /// reads on every call. Defaults to [`Clock::now`] converted; [`SystemClock`] answers from a
    /// coarse clock (a few ms resolution) for a fraction of the cost.
    fn unix_millis(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place that reads system time")]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// The coarse monotonic clock (~6 ns, resolution a few ms) plus an offset to wall time that
    /// is re-read every minute, so NTP corrections reach it within a minute.
    /// Reading the wall clock through `OffsetDateTime::now_utc` costs ~45 ns: more than the
    /// rest of a cache hit.
    fn unix_millis(&self) -> i64 {
        let mono = coarsetime::Duration::from_ticks(coarsetime::Instant::now_without_cache_update().as_ticks())
            .as_millis() as i64;
        let offset = WALL_MINUS_MONO_MS.load(Ordering::Relaxed);
        if offset != UNANCHORED && mono - ANCHORED_AT_MS.load(Ordering::Relaxed) < REANCHOR_AFTER_MS {
            return mono + offset;
        }
        #[allow(clippy::disallowed_methods, reason = "the one place that reads system time")]
        let wall = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        // Two separate stores: a reader between them at worst re-anchors once more.
        WALL_MINUS_MONO_MS.store(wall - mono, Ordering::Relaxed);
        ANCHORED_AT_MS.store(mono, Ordering::Relaxed);
        wall
    }
}

const UNANCHORED: i64 = i64::MIN;
/// How often the coarse clock is re-anchored to the wall clock.
const REANCHOR_AFTER_MS: i64 = 60_000;
static WALL_MINUS_MONO_MS: AtomicI64 = AtomicI64::new(UNANCHORED);
static ANCHORED_AT_MS: AtomicI64 = AtomicI64::new(0);

/// A clock that moves only when told to. For tests and simulations.
///
/// Clones share the same time.
///
/// # Examples
/// ```
/// use azure_passwordless::{Clock, ManualClock};
/// use azure_core::time::{Duration, OffsetDateTime};
///
/// let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
/// clock.advance(Duration::hours(1));
/// assert_eq!(clock.now(), OffsetDateTime::UNIX_EPOCH + Duration::hours(1));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward (or back, for a negative duration).
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: OffsetDateTime) {
        *self.now.lock() = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock()
    }
}

/// A shared clock handle.
pub(crate) type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_fast_path_tracks_wall_time() {
        let clock = SystemClock;
        let fast = clock.unix_millis();
        let exact = (clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
        // The coarse clock lags by at most its resolution (a few ms on Linux).
        assert!((exact - fast).abs() < 50, "fast {fast} vs exact {exact}");
    }

    #[test]
    fn manual_clock_millis_follow_advance() {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH);
        clock.advance(Duration::milliseconds(1500));
        assert_eq!(clock.unix_millis(), 1500);
    }
}
