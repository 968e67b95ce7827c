//! QEMU `lm3s6965evb`: Stellaris LM3S6965, Cortex-M3, 64 KB of SRAM for everything: ten slots
//! with 768-byte request and 384-byte head buffers, 1 KiB socket buffers each way (the
//! smallest the server takes), an 8-message chat ring. The Stellaris MAC on IRQ 42, the PL011
//! UART0. The core clock is set to 25 MHz from the PLL at boot (QEMU starts it at 12.5 MHz).

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
