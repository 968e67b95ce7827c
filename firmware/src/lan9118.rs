//! A driver for the board's SMSC LAN9118 Ethernet controller (0x4020_0000), as a
//! `smoltcp::phy::Device`: frames up to 1514 bytes, one at a time through the chip's FIFOs,
//! polled by the main loop; the chip raises its interrupt line (IRQ 13 on mps2-an386, active
//! high) when a received frame waits, which only wakes the core from `wfi`. No checksum
//! offload (the chip has none): smoltcp computes checksums.
//!
//! A frame longer than 1514 bytes (a VLAN-tagged full-size frame is 1518) is read and thrown
//! away word by word: the chip's RX fast-forward (`RX_DP_CTRL`) would do it in one write, but
//! QEMU's model moves its read pointer without its count of used words, and every later frame
//! would be read from the wrong place. Reading the words works on both. The TX status FIFO is
//! never read, so `TXSAO` lets it overrun (a real LAN9118 stops sending once it fills).

use smoltcp::wire::EthernetAddress;

use crate::fifo_nic::{FifoNic, Fifos, MAX_FRAME};
use crate::regs::Reg;

const BASE: usize = 0x4020_0000;
const RX_DATA_FIFO: Reg = Reg(BASE);
const TX_DATA_FIFO: Reg = Reg(BASE + 0x20);
const RX_STATUS_FIFO: Reg = Reg(BASE + 0x40);
const ID_REV: Reg = Reg(BASE + 0x50);
const IRQ_CFG: Reg = Reg(BASE + 0x54);
const INT_STS: Reg = Reg(BASE + 0x58);
const INT_EN: Reg = Reg(BASE + 0x5c);
const TX_CFG: Reg = Reg(BASE + 0x70);
const HW_CFG: Reg = Reg(BASE + 0x74);
const RX_FIFO_INF: Reg = Reg(BASE + 0x7c);
const TX_FIFO_INF: Reg = Reg(BASE + 0x80);
const PMT_CTRL: Reg = Reg(BASE + 0x84);
const MAC_CSR_CMD: Reg = Reg(BASE + 0xa4);
const MAC_CSR_DATA: Reg = Reg(BASE + 0xa8);

/// MAC registers, reached through MAC_CSR_CMD/DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
/// Pass all multicast frames. Without it the chip (and QEMU's model, `lan9118_filter`)
/// matches multicast exactly against the MAC, i.e. drops it all: mDNS queries to
/// 224.0.0.251 never arrived (python-zeroconf resolved the name only from an announcement it
/// happened to hear), nor would IPv6's all-nodes and solicited-node groups (no neighbour
/// discovery, no IPv6 at all). The hash filter could pass just those groups; passing all is
/// what the stack needs with nothing to keep in step.
const MAC_CR_MCPAS: u32 = 1 << 19;
/// TX_CFG: transmitter on, and the TX status FIFO may overrun (it is never read).
const TX_ON: u32 = 1 << 1;
const TXSAO: u32 = 1 << 2;
/// IRQ_CFG: the line on, active high, push-pull.
const IRQ_EN: u32 = 1 << 8;
const IRQ_POL: u32 = 1 << 4;
const IRQ_TYPE: u32 = 1;
/// INT_STS/INT_EN: the RX status FIFO holds a frame's status.
const RSFL_INT: u32 = 1 << 3;
/// The chip's interrupt on QEMU's mps2-an386 (`hw/arm/mps2.c`).
pub const IRQ: u16 = 13;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;

/// The controller (its registers are fixed addresses: no state of its own).
pub struct Chip;

/// The controller as a smoltcp device, with a frame buffer each way.
pub type Lan9118 = FifoNic<Chip>;

/// Why the controller could not be set up.
#[derive(Debug)]
pub struct NotFound(pub u32);

impl Lan9118 {
    /// Resets the chip, sets `mac`, and turns the transmitter and receiver on.
    pub fn new(mac: EthernetAddress) -> Result<Self, NotFound> {
        let id = ID_REV.read();
        if id >> 16 != 0x0118 {
            return Err(NotFound(id));
        }
        HW_CFG.write(1); // soft reset
        for _ in 0..100_000 {
            if HW_CFG.read() & 1 == 0 && PMT_CTRL.read() & 1 != 0 {
                break;
            }
        }
        let m = mac.0;
        mac_write(MAC_ADDRH, u32::from(m[4]) | u32::from(m[5]) << 8);
        mac_write(MAC_ADDRL, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        mac_write(
            MAC_CR,
            MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX | MAC_CR_MCPAS,
        );
        TX_CFG.write(TX_ON | TXSAO);
        // Interrupt when a frame's status is in the RX status FIFO (the default level: one).
        IRQ_CFG.write(IRQ_EN | IRQ_POL | IRQ_TYPE);
        INT_EN.write(RSFL_INT);
        Ok(FifoNic::with_buffers())
    }
}

fn mac_write(reg: u32, value: u32) {
    MAC_CSR_DATA.write(value);
    MAC_CSR_CMD.write(CSR_BUSY | reg);
    while MAC_CSR_CMD.read() & CSR_BUSY != 0 {}
}

#[allow(dead_code)]
fn mac_read(reg: u32) -> u32 {
    MAC_CSR_CMD.write(CSR_BUSY | CSR_READ | reg);
    while MAC_CSR_CMD.read() & CSR_BUSY != 0 {}
    MAC_CSR_DATA.read()
}

/// Whether a received frame waits in the RX FIFOs.
pub fn pending() -> bool {
    (RX_FIFO_INF.read() >> 16) & 0xff != 0
}

/// Reads one frame from the RX FIFOs into `buf`; its length, or None when none waits (or it
/// was too long, too short or bad, and was read and thrown away).
fn receive_frame(buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
    // Clear the interrupt first: a frame that arrives after this raises it again.
    INT_STS.write(RSFL_INT);
    if !pending() {
        return None;
    }
    let status = RX_STATUS_FIFO.read();
    // The length counts the 4-byte FCS the chip leaves at the end (at most 0x3fff bytes, so
    // every loop below is bounded).
    let len = ((status >> 16) & 0x3fff) as usize;
    let words = len.div_ceil(4);
    if len < 4 + 14 || len - 4 > MAX_FRAME || status & (1 << 15) != 0 {
        for _ in 0..words {
            let _ = RX_DATA_FIFO.read();
        }
        return None;
    }
    let frame = len - 4;
    for i in 0..words {
        let bytes = RX_DATA_FIFO.read().to_le_bytes();
        for (j, b) in bytes.iter().enumerate() {
            let at = i * 4 + j;
            if at < frame {
                buf[at] = *b;
            }
        }
    }
    Some(frame)
}

/// Writes `frame` to the TX FIFO as one first-and-last segment.
fn send_frame(frame: &[u8]) {
    let len = frame.len() as u32;
    // Wait for room: the frame's words and its two command words.
    let need = frame.len().div_ceil(4) * 4 + 8;
    for _ in 0..1_000_000 {
        if (TX_FIFO_INF.read() & 0xffff) as usize >= need {
            break;
        }
    }
    TX_DATA_FIFO.write(1 << 13 | 1 << 12 | len); // command A: first + last segment, size
    TX_DATA_FIFO.write(len << 16 | len); // command B: tag, packet length
    for chunk in frame.chunks(4) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        TX_DATA_FIFO.write(u32::from_le_bytes(w));
    }
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
