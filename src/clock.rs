//! Time, injected: the one place in the crate that reads the system clock.

use azure_core::time::{Duration, OffsetDateTime};
use parking_lot::Mutex;
use std::{fmt, sync::Arc};

/// A source of the current time.
///
/// Everything in this crate that needs "now" asks a `Clock`, so tests and simulations can move
/// time by hand with [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place that reads system time")]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

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
