//! A millisecond clock from SysTick at the board's core clock, in 64 bits: it never wraps
//! (a `u32` of milliseconds wraps after 49.7 days, which put every TCP timer and deadline weeks
//! in the future). SysTick fires each millisecond; each tick also wakes the core from `wfi`.
//!
//! Test aid: a build with `SMOLHTTPD_FW_CLOCK_START_MS=N` in the environment starts the clock at
//! `N` ms instead of 0 (firmware-test.sh starts it 10 s before 2^32 ms to cross the old wrap).

use core::cell::Cell;

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use smoltcp::time::Instant;

use crate::bsp::CORE_HZ;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(start_ms()));

/// Where the clock starts: 0, or the build's `SMOLHTTPD_FW_CLOCK_START_MS`.
const fn start_ms() -> u64 {
    let Some(s) = option_env!("SMOLHTTPD_FW_CLOCK_START_MS") else {
        return 0;
    };
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u64 = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "SMOLHTTPD_FW_CLOCK_START_MS: digits only"
        );
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}

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
    interrupt::free(|cs| {
        let m = MILLIS.borrow(cs);
        m.set(m.get() + 1);
    });
}

/// Milliseconds since boot (plus the test start), in 64 bits.
pub fn millis() -> u64 {
    interrupt::free(|cs| MILLIS.borrow(cs).get())
}

/// Now, for smoltcp and the server.
pub fn now() -> Instant {
    // Cannot overflow: i64 microseconds last 292,000 years.
    Instant::from_millis(millis() as i64)
}
