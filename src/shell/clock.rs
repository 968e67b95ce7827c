//! The host's clock for the server (feature `std`): monotonic time for smoltcp and every
//! deadline, the wall clock only for `Date` and `Last-Modified`.
//!
//! `smoltcp::time::Instant::now()` reads the wall clock (`SystemTime`): an NTP step or a
//! `date -s` backwards would put every TCP timer and every deadline of the server that far in
//! the future. [`Clock::now`] counts from the clock's creation on `std::time::Instant`
//! (`CLOCK_MONOTONIC`), which never steps back.

use smoltcp::time::Instant;

/// Monotonic time since the clock was made, as smoltcp's `Instant`.
///
/// ```
/// let clock = smolhttpd::clock::Clock::new();
/// let (a, b) = (clock.now(), clock.now());
/// assert!(b >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
}

impl Clock {
    /// A clock that reads 0 now.
    pub fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// The time at the monotonic instant `t` (0 before the clock was made).
    pub fn at(&self, t: std::time::Instant) -> Instant {
        let since = t.saturating_duration_since(self.start);
        Instant::from_micros(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// Seconds since 1970 by the wall clock (None before 1970), for
    /// [`crate::Server::set_wall_clock`]. Call it again from time to time: the wall clock may
    /// be stepped, the server's own time is not.
    pub fn unix_secs() -> Option<u64> {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_from_its_start_on_the_monotonic_clock() {
        let clock = Clock::new();
        let t0 = std::time::Instant::now();
        // Not the wall clock: smoltcp's own now() is ~1.7e9 s since 1970.
        assert!(clock.now() < Instant::from_secs(60), "{}", clock.now());
        assert!(smoltcp::time::Instant::now() > Instant::from_secs(1_000_000_000));
        // It follows std::time::Instant exactly, whatever the wall clock does meanwhile.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            clock.at(later) - clock.at(t0),
            smoltcp::time::Duration::from_secs(3600)
        );
        // Before its start it reads 0, never a negative time.
        let before = t0.checked_sub(Duration::from_millis(1));
        if let Some(before) = before {
            assert!(clock.at(before) >= Instant::ZERO);
        }
        let (a, b) = (clock.now(), clock.now());
        assert!(b >= a);
        assert!(Clock::unix_secs().unwrap() > 1_700_000_000);
    }
}
