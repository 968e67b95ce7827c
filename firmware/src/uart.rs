//! The console: CMSDK APB UART0 (0x4000_4000), which QEMU's `-nographic` shows (`text_log`
//! writes the log to it).

use core::fmt::{self, Write};

use crate::regs::Reg;

const DATA: Reg = Reg(0x4000_4000);
const STATE: Reg = Reg(0x4000_4004);
const CTRL: Reg = Reg(0x4000_4008);
const BAUDDIV: Reg = Reg(0x4000_4010);
/// STATE: the transmit buffer is full.
const TX_FULL: u32 = 1;
/// CTRL: transmitter on.
const TX_ENABLE: u32 = 1;

/// Turns the transmitter on (115200 baud at the board's 25 MHz, for real hardware's sake).
pub fn init() {
    BAUDDIV.write(25_000_000 / 115_200);
    CTRL.write(TX_ENABLE);
}

/// Writes to UART0, waiting while its buffer is full.
pub struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes raw bytes (text, or defmt's binary frames) to UART0.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        while STATE.read() & TX_FULL != 0 {}
        DATA.write(u32::from(b));
    }
}
