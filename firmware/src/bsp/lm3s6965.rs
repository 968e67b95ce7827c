//! QEMU `lm3s6965evb`: Stellaris LM3S6965, Cortex-M3, 64 KB of SRAM for everything: ten slots
//! with 768-byte request and 384-byte head buffers, 1 KiB socket buffers each way (the
//! smallest the server takes), an 8-message chat ring. The Stellaris MAC on IRQ 42, the PL011
//! UART0. The core clock is set to 25 MHz from the PLL at boot (QEMU starts it at 12.5 MHz).
//!
//! IPv6 fits (`--features lm3s6965,ipv6`), measured by firmware-test.sh (data + bss, and the
//! stack peak `/board` reports after 30 clients, chat, ranges and the IPv6 checks): 53,384 +
//! 7,888 = 61,272 of 65,536 bytes; without IPv6 52,120 + 7,464 = 59,584. IPv6 costs 1,264
//! bytes of data + bss (socket storage and UDP packet metadata hold IPv6 endpoints, the gate's
//! held SYNs and the slots IPv6 peers) and ~430 bytes of stack (the interface's address list,
//! neighbour cache and routes, and smoltcp's IPv6 paths); 44.7 KB of flash (241,436 of
//! 262,144 bytes with the site). What made the room: set-up no longer stays in the main
//! loop's stack frame (see `main.rs`): the peak was 12,624 bytes before, without IPv6.

pub use crate::stellaris::{pending, Stellaris as Nic, IRQ};
pub(crate) use crate::stellaris_uart as console;

pub const NAME: &str = "lm3s6965evb";
pub const CPU: &str = "cortex-m3";
pub const CORE_HZ: u32 = 25_000_000;

pub const REQ: usize = 768;
pub const HEAD: usize = 384;
pub const RX: usize = 1024;
pub const TX: usize = 1024;
pub const MESSAGES: usize = 8;
/// The mDNS responder's receive and send buffers: a few queries' worth.
pub type MdnsBuffers = smolhttpd::mdns::Buffers<640, 320>;

/// The system clock at 25 MHz from the PLL (SysTick and the UART's divisor assume it).
pub fn init_clocks() {
    // False only when the PLL does not lock: the clock then runs at the reset rate and the
    // firmware's milliseconds are slow, which the log says once the console is up.
    let _ = crate::stellaris::sysclk_25mhz();
}
