//! A driver for the Ethernet MAC of the TI Stellaris LM3S6965 (0x4004_8000), QEMU's
//! `lm3s6965evb` board (NIC model `stellaris`), as a `smoltcp::phy::Device`: frames up to
//! 1514 bytes, one at a time through the MAC's RX and TX FIFOs. No checksum offload.
//!
//! Also the little board set-up the MAC needs: its clock gates, and the system clock at
//! 25 MHz (`sysclk_25mhz`), the rate the firmware's clock assumes on mps2 too.
//!
//! Interrupts: `new` unmasks only the MAC's "frame received" interrupt (IM.RXINT), so the
//! MAC holds NVIC line [`IRQ`] high from a frame's arrival until that flag is acknowledged.
//! The line is a level: while it is high the NVIC pends the interrupt again as soon as its
//! handler returns, so the handler must either mask the line in the NVIC (and the main loop
//! unmask it before it sleeps) or call [`acknowledge`]. The driver acknowledges the flag
//! itself before it looks for a frame, and [`pending`] (the MAC's count of whole frames in
//! the FIFO, not the flag) clears a flag left over from frames already read, so "check
//! `pending()`, unmask, `wfi`" with PRIMASK set neither misses a frame nor wakes for nothing.

use smoltcp::wire::EthernetAddress;

use crate::fifo_nic::{FifoNic, Fifos, MAX_FRAME};
use crate::regs::Reg;

/// The Ethernet controller's interrupt: NVIC line 42 (QEMU's stellaris.c wires the MAC's
/// interrupt to input 42 of the NVIC; the LM3S6965 datasheet numbers it the same).
pub const IRQ: u16 = 42;

const BASE: usize = 0x4004_8000;
/// Raw interrupt status (read) / acknowledge, write 1s to clear (write).
const RIS_IACK: Reg = Reg(BASE);
/// Interrupt mask: a set bit lets that status raise the interrupt line.
const IM: Reg = Reg(BASE + 0x04);
const RCTL: Reg = Reg(BASE + 0x08);
const TCTL: Reg = Reg(BASE + 0x0c);
/// The FIFOs: reads pop the RX FIFO, writes push the TX FIFO.
const DATA: Reg = Reg(BASE + 0x10);
/// Individual address: bytes 0..4 of the MAC address (byte 0 in bits 7:0).
const IA0: Reg = Reg(BASE + 0x14);
/// Individual address: bytes 4 and 5 in bits 15:0.
const IA1: Reg = Reg(BASE + 0x18);
/// Transmit threshold: 0x3f (its reset value) sends only on TR.NEWTX.
const THR: Reg = Reg(BASE + 0x1c);
/// Number of whole frames in the RX FIFO (bits 5:0).
const NP: Reg = Reg(BASE + 0x34);
/// Transmission request: write NEWTX to send the frame in the TX FIFO; reads 1 until sent.
const TR: Reg = Reg(BASE + 0x38);

/// Interrupt bits (RIS, IACK, IM).
const INT_RX: u32 = 1 << 0;
const INT_TXER: u32 = 1 << 1;
const INT_TXEMP: u32 = 1 << 2;
const INT_FOV: u32 = 1 << 3;
const INT_RXER: u32 = 1 << 4;
const INT_ALL: u32 = 0x7f;

const RCTL_RXEN: u32 = 1 << 0;
/// Accept all multicast frames: the MAC has no multicast filter but this, and mDNS
/// (224.0.0.251, ff02::fb) and IPv6 (all-nodes, solicited-node groups) need multicast.
const RCTL_AMUL: u32 = 1 << 1;
/// Promiscuous: accept frames for any address (left off).
#[allow(dead_code)]
const RCTL_PRMS: u32 = 1 << 2;
/// Reject frames with a bad FCS.
const RCTL_BADCRC: u32 = 1 << 3;
/// Empties the RX FIFO (with the receiver off).
const RCTL_RSTFIFO: u32 = 1 << 4;

const TCTL_TXEN: u32 = 1 << 0;
/// Pad short frames to 60 bytes.
const TCTL_PADEN: u32 = 1 << 1;
/// Append the FCS.
const TCTL_CRC: u32 = 1 << 2;
const TCTL_DUPLEX: u32 = 1 << 3;

const TR_NEWTX: u32 = 1 << 0;

/// System control (0x400F_E000): device capabilities and clock gating.
const SYSCTL: usize = 0x400f_e000;
/// DC4: bit 28 says the part has the Ethernet MAC, bit 30 the PHY.
const DC4: Reg = Reg(SYSCTL + 0x01c);
const DC4_EMAC0: u32 = 1 << 28;
/// Raw interrupt status of system control; bit 6 (PLLLRIS) says the PLL locked.
const SYS_RIS: Reg = Reg(SYSCTL + 0x050);
/// Masked interrupt status / clear (write 1s).
const SYS_MISC: Reg = Reg(SYSCTL + 0x058);
const PLLLRIS: u32 = 1 << 6;
/// Run-mode clock configuration.
const RCC: Reg = Reg(SYSCTL + 0x060);
/// Run-mode clock gating 2: bit 28 the MAC, bit 30 the PHY.
const RCGC2: Reg = Reg(SYSCTL + 0x108);
const RCGC2_EMAC0: u32 = 1 << 28;
const RCGC2_EPHY0: u32 = 1 << 30;

const RCC_SYSDIV_MASK: u32 = 0xf << 23;
const RCC_USESYSDIV: u32 = 1 << 22;
const RCC_PWRDN: u32 = 1 << 13;
const RCC_OEN: u32 = 1 << 12;
const RCC_BYPASS: u32 = 1 << 11;
const RCC_XTAL_MASK: u32 = 0xf << 6;
/// XTAL = 8 MHz, the EVB's crystal.
const RCC_XTAL_8MHZ: u32 = 0xe << 6;
const RCC_OSCSRC_MASK: u32 = 0x3 << 4;

/// Largest Ethernet frame without FCS.
/// Largest length word the RX FIFO can hold (its 2 KB); a bigger one means the FIFO is out
/// of step, and it is reset.
const MAX_FIFO_LEN: usize = 2048;
/// Bytes the RX length word counts besides the frame: itself (2) and the FCS (4).
const RX_OVERHEAD: usize = 6;
/// Destination, source and type: the part of a frame the TX length word does not count.
const HEADER: usize = 14;
/// Bound on register polls (the wait for the previous frame to go out, the PLL lock).
const SPINS: u32 = 200_000;

/// Runs the core at 25 MHz (as on mps2, so SysTick counts the same): the PLL's 200 MHz (from
/// the EVB's 8 MHz crystal) divided by 8 (SYSDIV = 7). QEMU's model only reads SYSDIV (80 ns
/// a cycle at reset, i.e. 12.5 MHz; 40 ns after this), but the sequence is the datasheet's
/// for real parts: bypass, set crystal and power the PLL, set the divider, wait for lock,
/// use the PLL. Call it before SysTick is started.
/// Returns whether the PLL reported lock (if not, the core runs from the crystal bypass).
pub fn sysclk_25mhz() -> bool {
    let mut rcc = RCC.read();
    rcc |= RCC_BYPASS;
    rcc &= !RCC_USESYSDIV;
    RCC.write(rcc);
    SYS_MISC.write(PLLLRIS);
    rcc &= !(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_OEN);
    rcc |= RCC_XTAL_8MHZ;
    RCC.write(rcc);
    rcc &= !RCC_SYSDIV_MASK;
    rcc |= (7 << 23) | RCC_USESYSDIV;
    RCC.write(rcc);
    let mut locked = false;
    for _ in 0..SPINS {
        if SYS_RIS.read() & PLLLRIS != 0 {
            locked = true;
            break;
        }
    }
    if locked {
        RCC.write(rcc & !RCC_BYPASS);
    }
    SYS_MISC.write(PLLLRIS);
    locked
}

/// The controller (its registers are fixed addresses: no state of its own).
pub struct Chip;

/// The controller as a smoltcp device, with a frame buffer each way.
pub type Stellaris = FifoNic<Chip>;

/// Why the controller could not be set up: the part's DC4 register, which does not list
/// an Ethernet MAC.
#[derive(Debug)]
pub struct NotFound(pub u32);

impl Stellaris {
    /// Checks the part has the MAC, clocks it, empties its FIFOs, sets `mac` (the address
    /// filter: frames to `mac`, broadcast, and all multicast; promiscuous off; QEMU's model
    /// filters nothing, a real part needs `AMUL` for multicast),
    /// turns the transmitter (padding, FCS, full duplex) and receiver on, and unmasks only
    /// the receive interrupt.
    pub fn new(mac: EthernetAddress) -> Result<Self, NotFound> {
        let dc4 = DC4.read();
        if dc4 & DC4_EMAC0 == 0 {
            return Err(NotFound(dc4));
        }
        RCGC2.write(RCGC2.read() | RCGC2_EMAC0 | RCGC2_EPHY0);
        // A gated-on module wants 3 clocks before its registers are touched.
        for _ in 0..3 {
            let _ = RCGC2.read();
        }

        RCTL.write(0);
        TCTL.write(0);
        RCTL.write(RCTL_RSTFIFO);
        IM.write(0);
        // Acknowledging TXER also empties the TX FIFO.
        RIS_IACK.write(INT_ALL);

        let m = mac.0;
        IA0.write(u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        IA1.write(u32::from(m[4]) | u32::from(m[5]) << 8);
        THR.write(0x3f);
        TCTL.write(TCTL_TXEN | TCTL_PADEN | TCTL_CRC | TCTL_DUPLEX);
        RCTL.write(RCTL_BADCRC | RCTL_AMUL | RCTL_RSTFIFO);
        RCTL.write(RCTL_BADCRC | RCTL_AMUL | RCTL_RXEN);
        IM.write(INT_RX);
        Ok(FifoNic::with_buffers())
    }
}

/// Whether a received frame waits in the RX FIFO. When none does, also clears the receive
/// flag (a frame that arrived and was read since it was set), so the line is low while the
/// core sleeps; a frame arriving after that sets it again.
pub fn pending() -> bool {
    if NP.read() & 0x3f != 0 {
        return true;
    }
    acknowledge();
    // One may have come between the count and the acknowledgement.
    NP.read() & 0x3f != 0
}

/// Lowers the MAC's interrupt line (clears the receive, overrun and receive-error flags);
/// for the interrupt handler. Frames stay in the FIFO: [`pending`] still sees them.
pub fn acknowledge() {
    RIS_IACK.write(INT_RX | INT_FOV | INT_RXER);
}

/// Empties the RX FIFO: the receiver goes off while it is reset, as the datasheet asks.
fn reset_rx_fifo() {
    RCTL.write(RCTL_BADCRC | RCTL_AMUL);
    RCTL.write(RCTL_BADCRC | RCTL_AMUL | RCTL_RSTFIFO);
    RCTL.write(RCTL_BADCRC | RCTL_AMUL | RCTL_RXEN);
}

/// Reads the next good frame from the RX FIFO into `buf`: its length, or None when none
/// waits. Runts and frames too long for `buf` are read and dropped on the way (at most a
/// FIFO's worth, 31 frames, in one call).
fn receive_frame(buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
    for _ in 0..31 {
        // Acknowledge before looking: a frame arriving from here on raises the line again.
        acknowledge();
        if NP.read() & 0x3f == 0 {
            return None;
        }
        if let Some(n) = read_one(buf) {
            return Some(n);
        }
    }
    None
}

/// Reads one frame from the RX FIFO (which holds one); None if it was dropped.
///
/// In the FIFO a frame is its length (16 bits: the frame plus these 2 bytes plus the 4-byte
/// FCS), the frame, the FCS, then zero padding to a whole word; the frame's first 2 bytes
/// share the first word with the length.
fn read_one(buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
    let first = DATA.read();
    let len = (first & 0xffff) as usize;
    let words = len.div_ceil(4);
    if !(RX_OVERHEAD..=MAX_FIFO_LEN).contains(&len) {
        // Not a length the FIFO can hold: we lost its framing.
        reset_rx_fifo();
        return None;
    }
    if len < RX_OVERHEAD + HEADER || len - RX_OVERHEAD > MAX_FRAME {
        // Runt or too long: drop its remaining words so the next frame starts in step.
        for _ in 1..words {
            let _ = DATA.read();
        }
        return None;
    }
    let frame = len - RX_OVERHEAD;
    let [_, _, b0, b1] = first.to_le_bytes();
    buf[0] = b0;
    buf[1] = b1;
    // Word i holds the frame's bytes 4i-2 .. 4i+2.
    for i in 1..words {
        let bytes = DATA.read().to_le_bytes();
        for (j, b) in bytes.iter().enumerate() {
            let at = 4 * i + j - 2;
            if at < frame {
                buf[at] = *b;
            }
        }
    }
    Some(frame)
}

/// Writes `frame` to the TX FIFO and asks for it to be sent: the length of its payload (the
/// frame less its 14-byte header) in the first 2 bytes, the frame after them. Waits (bounded)
/// for the previous frame to have gone; if it has not, drops this one (TCP will resend).
fn send_frame(frame: &[u8]) {
    if frame.len() < HEADER || frame.len() > MAX_FRAME {
        return;
    }
    let mut idle = false;
    for _ in 0..SPINS {
        if TR.read() & TR_NEWTX == 0 {
            idle = true;
            break;
        }
    }
    if !idle {
        return;
    }
    if RIS_IACK.read() & INT_TXER != 0 {
        // An earlier frame was refused: clearing TXER also empties the TX FIFO.
        RIS_IACK.write(INT_TXER);
    }
    RIS_IACK.write(INT_TXEMP);
    let payload = (frame.len() - HEADER) as u32;
    DATA.write(payload | u32::from(frame[0]) << 16 | u32::from(frame[1]) << 24);
    for chunk in frame[2..].chunks(4) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        DATA.write(u32::from_le_bytes(w));
    }
    TR.write(TR_NEWTX);
}

/// The chip's FIFOs, for the shared device.
impl Fifos for Chip {
    fn receive_frame(buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        receive_frame(buf)
    }
    fn send_frame(frame: &[u8]) {
        send_frame(frame)
    }
}
