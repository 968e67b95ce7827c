//! `log` as text lines on the board's console, `[   1.234] INFO  message` (the default build;
//! the defmt build forwards the lines to defmt instead, in `defmt_log`).

use core::fmt::Write as _;

use crate::bsp::console::Uart;

/// The firmware's logger.
pub struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let ms = crate::clock::millis();
            let _ = writeln!(
                Uart,
                "[{:4}.{:03}] {:<5} {}",
                ms / 1000,
                ms % 1000,
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
