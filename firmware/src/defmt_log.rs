//! The `defmt` build's logging (feature `defmt`): defmt's global logger writes its binary
//! frames to the board's UART0, and the firmware's own `log` lines are forwarded to defmt. Read
//! the log on the host with `defmt-print -e ELF` (QEMU: `-serial file:uart.defmt`, or `-serial
//! stdio | defmt-print -e ELF`). defmt's `Logger` trait is `unsafe` (its caller promises the
//! acquire/release pairing), so this module allows `unsafe_code` for that impl and the
//! critical section it holds across a frame; everything else here is safe code.
#![allow(unsafe_code)]

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};

use critical_section::{CriticalSection, Mutex, RestoreState};

use crate::bsp::console;

#[defmt::global_logger]
struct UartLogger;

static TAKEN: AtomicBool = AtomicBool::new(false);
static RESTORE: Mutex<RefCell<Option<RestoreState>>> = Mutex::new(RefCell::new(None));
static ENCODER: Mutex<RefCell<defmt::Encoder>> = Mutex::new(RefCell::new(defmt::Encoder::new()));

/// Runs `f` with the encoder; only called between `acquire` and `release`, inside the critical
/// section `acquire` entered.
fn with_encoder(f: impl FnOnce(&mut defmt::Encoder)) {
    // SAFETY: interrupts are masked from `acquire` to `release` (critical_section::acquire).
    let cs = unsafe { CriticalSection::new() };
    f(&mut ENCODER.borrow_ref_mut(cs));
}

// SAFETY: a frame is written with interrupts masked from acquire to release, so frames never
// interleave; re-entry (a log line from inside a log line) is refused with a panic, as defmt
// requires.
unsafe impl defmt::Logger for UartLogger {
    fn acquire() {
        // SAFETY: released in `release`, which defmt always calls after `acquire`.
        let restore = unsafe { critical_section::acquire() };
        if TAKEN.swap(true, Ordering::Relaxed) {
            panic!("defmt logger taken reentrantly");
        }
        // SAFETY: as in with_encoder.
        let cs = unsafe { CriticalSection::new() };
        RESTORE.borrow_ref_mut(cs).replace(restore);
        with_encoder(|e| e.start_frame(console::write_bytes));
    }

    unsafe fn flush() {}

    unsafe fn release() {
        with_encoder(|e| e.end_frame(console::write_bytes));
        TAKEN.store(false, Ordering::Relaxed);
        // SAFETY: as in with_encoder.
        let cs = unsafe { CriticalSection::new() };
        if let Some(restore) = RESTORE.borrow_ref_mut(cs).take() {
            // SAFETY: the state `acquire` saved, restored once.
            unsafe { critical_section::release(restore) };
        }
    }

    unsafe fn write(bytes: &[u8]) {
        with_encoder(|e| e.write(bytes, console::write_bytes));
    }
}

defmt::timestamp!("{=u64:ms}", crate::clock::millis());

/// The firmware's own `log` lines, as defmt lines (formatted here; the library logs through
/// defmt directly).
pub struct LogToDefmt;

impl log::Log for LogToDefmt {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        use core::fmt::Write as _;
        let mut line = heapless::String::<160>::new();
        let _ = write!(line, "{}", record.args());
        match record.level() {
            log::Level::Error => defmt::error!("{=str}", line.as_str()),
            log::Level::Warn => defmt::warn!("{=str}", line.as_str()),
            log::Level::Info => defmt::info!("{=str}", line.as_str()),
            log::Level::Debug => defmt::debug!("{=str}", line.as_str()),
            log::Level::Trace => defmt::trace!("{=str}", line.as_str()),
        }
    }

    fn flush(&self) {}
}
