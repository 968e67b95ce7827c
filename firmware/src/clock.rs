//! A millisecond clock from SysTick at the board's 25 MHz core clock.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use smoltcp::time::Instant;

/// Core clock of the mps2 boards.
const CORE_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick: one exception a millisecond.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since boot (wraps after 49 days).
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// Now, for smoltcp and the server.
pub fn now() -> Instant {
    Instant::from_millis(i64::from(millis()))
}
