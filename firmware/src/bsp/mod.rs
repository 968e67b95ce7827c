//! Board support: everything that differs between boards, chosen by a cargo feature, so
//! `main.rs` is one program for both. A board is data (name, core clock, memory sizes) plus one
//! driver (its NIC as a `smoltcp::phy::Device`, with its interrupt line) and its console.
//!
//! - `mps2-an386` (default): QEMU's MPS2 AN386, Cortex-M4, 4 MiB of code and data RAM, SMSC
//!   LAN9118 Ethernet, CMSDK UART0.
//! - `lm3s6965`: QEMU's `lm3s6965evb`, TI Stellaris LM3S6965, Cortex-M3, 256 KB flash and
//!   64 KB SRAM, the on-chip Stellaris Ethernet MAC, PL011 UART0. Build with
//!   `--no-default-features --features lm3s6965,ipv6 --target thumbv7m-none-eabi` (without
//!   `,ipv6` for IPv4 alone: the default features, which this drops, hold `ipv6`).

#[cfg(all(feature = "mps2-an386", feature = "lm3s6965"))]
compile_error!("choose one board: --no-default-features --features lm3s6965");

#[cfg(feature = "lm3s6965")]
mod lm3s6965;
#[cfg(feature = "lm3s6965")]
pub use lm3s6965::*;

#[cfg(not(feature = "lm3s6965"))]
mod mps2;
#[cfg(not(feature = "lm3s6965"))]
pub use mps2::*;
