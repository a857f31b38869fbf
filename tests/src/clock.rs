//! The settable wall clock shared by every component's `wasi:clocks/wall-clock` and by cron
//! event timestamps. The monotonic clock is not affected.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A handle to the app's wall clock: system time plus an adjustable offset. Clones share the
/// same offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Offset from system time in nanoseconds; negative values move the clock back.
    offset_nanos: Arc<Mutex<i128>>,
}

impl Clock {
    /// Returns the current time as components see it.
    pub fn now(&self) -> SystemTime {
        let offset = *self.offset_nanos.lock().unwrap_or_else(PoisonError::into_inner);
        shift(SystemTime::now(), offset)
    }

    /// Seconds since the Unix epoch as components see it (0 before the epoch).
    pub fn unix_seconds(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Moves the clock forward by `by`, on top of any earlier change.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset_nanos.lock().unwrap_or_else(PoisonError::into_inner);
        *offset += by.as_nanos() as i128;
    }

    /// Sets the clock so that it reads `now` at this moment and keeps ticking from there.
    pub fn set(&self, now: SystemTime) {
        let system = SystemTime::now();
        let offset = match now.duration_since(system) {
            Ok(ahead) => ahead.as_nanos() as i128,
            Err(behind) => -(behind.duration().as_nanos() as i128),
        };
        *self.offset_nanos.lock().unwrap_or_else(PoisonError::into_inner) = offset;
    }

    /// Returns the clock to system time.
    pub fn reset(&self) {
        *self.offset_nanos.lock().unwrap_or_else(PoisonError::into_inner) = 0;
    }
}

fn shift(time: SystemTime, offset_nanos: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(offset_nanos.unsigned_abs().min(u64::MAX as u128) as u64);
    if offset_nanos >= 0 {
        time.checked_add(magnitude).unwrap_or(time)
    } else {
        time.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

/// The adapter that gives a component instance this clock as `wasi:clocks/wall-clock`.
pub(crate) struct WasiWallClock(pub(crate) Clock);

impl wasmtime_wasi::HostWallClock for WasiWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advance_moves_forward() {
        let clock = Clock::default();
        let before = clock.unix_seconds();
        clock.advance(Duration::from_secs(2 * 86_400));
        let after = clock.unix_seconds();
        assert!(after >= before + 2 * 86_400);
        assert!(after < before + 2 * 86_400 + 5);
    }

    #[test]
    fn clock_set_and_reset() {
        let clock = Clock::default();
        let target = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        clock.set(target);
        let seconds = clock.unix_seconds();
        assert!((1_000_000_000..1_000_000_005).contains(&seconds), "{seconds}");
        clock.reset();
        assert!(clock.unix_seconds() > 1_700_000_000);
    }

    #[test]
    fn clock_clones_share_offset() {
        let clock = Clock::default();
        let other = clock.clone();
        clock.advance(Duration::from_secs(3600));
        assert!(other.unix_seconds() >= SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3599);
    }
}
