//! QEMU `mps2-an386`: Cortex-M4 at 25 MHz, LAN9118 on IRQ 13, CMSDK UART0; RAM is roomy
//! (4 MiB), so the sizes favour speed. IPv6 (default feature `ipv6`) measured by
//! firmware-test.sh: data + bss 74,568 + stack peak 7,944 bytes (without it 73,304 + 7,472).

pub use crate::lan9118::{pending, Lan9118 as Nic, IRQ};
pub(crate) use crate::uart as console;

pub const NAME: &str = "mps2-an386";
pub const CPU: &str = "cortex-m4";
/// Core clock (SysTick counts it).
pub const CORE_HZ: u32 = 25_000_000;

/// Request buffer, response head buffer, socket receive and transmit buffers per slot, and the
/// chat ring.
pub const REQ: usize = 1024;
pub const HEAD: usize = 384;
pub const RX: usize = 1024;
pub const TX: usize = 2048;
pub const MESSAGES: usize = 32;
/// The mDNS responder's receive and send buffers.
pub type MdnsBuffers = smolhttpd::mdns::Buffers<1536, 512>;

/// Nothing to set up: the board starts at 25 MHz.
pub fn init_clocks() {}
