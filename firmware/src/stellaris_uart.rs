//! The console on the LM3S6965: UART0 (0x4000_C000, a PL011), which QEMU's `-nographic`
//! shows for `lm3s6965evb`. The same surface as `uart.rs` (`init`, `Uart`, `write_bytes`), so
//! the board module can pick either.

use core::fmt::{self, Write};

use crate::regs::Reg;

const BASE: usize = 0x4000_c000;
const DR: Reg = Reg(BASE);
/// Flags: bit 5 (TXFF) says the transmit FIFO is full.
const FR: Reg = Reg(BASE + 0x018);
const IBRD: Reg = Reg(BASE + 0x024);
const FBRD: Reg = Reg(BASE + 0x028);
const LCRH: Reg = Reg(BASE + 0x02c);
const CR: Reg = Reg(BASE + 0x030);
const FR_TXFF: u32 = 1 << 5;
/// LCRH: 8 data bits, FIFOs on.
const LCRH_WLEN8_FEN: u32 = 0b11 << 5 | 1 << 4;
/// CR: UART on, transmitter on, receiver on.
const CR_ON: u32 = 1 << 0 | 1 << 8 | 1 << 9;

/// System control: clock gates, and GPIO port A, whose pins 0 and 1 carry UART0.
const RCGC1: Reg = Reg(0x400f_e104);
const RCGC2: Reg = Reg(0x400f_e108);
const RCGC1_UART0: u32 = 1 << 0;
const RCGC2_GPIOA: u32 = 1 << 0;
const GPIOA_AFSEL: Reg = Reg(0x4000_4420);
const GPIOA_DEN: Reg = Reg(0x4000_451c);
const PA0_PA1: u32 = 0b11;

/// Core clock after `stellaris::sysclk_25mhz`.
const CORE_HZ: u32 = 25_000_000;
const BAUD: u32 = 115_200;
/// Bound on the wait for room in the transmit FIFO (about a character's time at 115200).
const SPINS: u32 = 20_000;

/// Clocks UART0 and its pins, and turns it on: 115200 8N1 at 25 MHz (for real hardware's
/// sake; QEMU ignores the rate).
pub fn init() {
    RCGC1.write(RCGC1.read() | RCGC1_UART0);
    RCGC2.write(RCGC2.read() | RCGC2_GPIOA);
    // A gated-on module wants 3 clocks before its registers are touched.
    for _ in 0..3 {
        let _ = RCGC2.read();
    }
    GPIOA_AFSEL.write(GPIOA_AFSEL.read() | PA0_PA1);
    GPIOA_DEN.write(GPIOA_DEN.read() | PA0_PA1);
    CR.write(0);
    // Divisor = clock / (16 * baud), in 1/64ths, rounded.
    let div64 = (CORE_HZ * 4 + BAUD / 2) / BAUD;
    IBRD.write(div64 / 64);
    FBRD.write(div64 % 64);
    LCRH.write(LCRH_WLEN8_FEN);
    CR.write(CR_ON);
}

/// Writes to UART0, waiting (bounded) while its FIFO is full.
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
        for _ in 0..SPINS {
            if FR.read() & FR_TXFF == 0 {
                break;
            }
        }
        DR.write(u32::from(b));
    }
}
