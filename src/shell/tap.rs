//! The TAP device (std shell): a `smoltcp::phy::Device` over a Linux TAP interface,
//! non-blocking, without packet info, with or without offloads.
//!
//! One frame per read; `WouldBlock` means no frame. The owner waits for readiness with
//! `smoltcp::phy::wait` on [`TapDevice::fd`].
//!
//! # Offload (`TapDevice::open_offload`)
//!
//! At MTU 1500 every frame crosses the tap as its own `write`, and a download costs one system
//! call, one skb and one trip through the host's stack per 1460 bytes. A tap opened with
//! `IFF_VNET_HDR` takes a virtio-net header in front of each frame, as a virtio-net guest's
//! frames carry one, and with it two jobs move to the kernel:
//!
//! - checksum offload: the frame is marked `NEEDS_CSUM` and its TCP checksum field holds only
//!   the pseudo-header sum; the kernel (or the final receiver) finishes it. smoltcp is told not
//!   to compute TCP checksums on transmit, and still verifies them on receive.
//! - segmentation offload (GSO, `TCPV4`): a TCP segment of up to 64 KB is written at once, with
//!   `gso_size` set to the peer's real MSS; the kernel cuts it into wire-sized segments, or hands
//!   it whole to a local socket.
//!
//! smoltcp builds a segment no larger than the interface MTU allows and the peer's MSS option
//! says. So this device (1) presents an IP MTU of [`OFFLOAD_MTU`] to smoltcp, and (2) raises
//! the MSS option of each TCP SYN it passes up to the largest segment that MTU holds, keeping
//! the real value per connection in an [`MssTable`] to put in `gso_size`. smoltcp then builds
//! large segments while every segment on the wire keeps the size the peer asked for. The
//! table's rules:
//!
//! - **Checksums verified.** A frame whose IPv4 header checksum or TCP checksum (over the
//!   pseudo-header and the segment) does not verify is passed on unchanged and nothing is
//!   learned from it, so smoltcp drops it as it would anyway. After the rewrite the TCP
//!   checksum is computed again in full, so the MSS option may sit at any offset (`NOP, MSS`
//!   puts its value at an odd one); smoltcp still checks every checksum.
//! - **A floor.** A peer's MSS is kept as at least [`DEFAULT_MSS`] (536, RFC 9293's default),
//!   or the tap's MTU − 40 when that is smaller; a SYN without the option is kept as 536. So a
//!   SYN announcing MSS 0 or 1 cannot make the kernel cut 64 KB into one-byte segments.
//!   `gso_size` is the kept MSS less the TCP option bytes of the segment (RFC 6691), and never
//!   more than the tap's MTU allows.
//! - **Per connection.** The key is the peer's address and port and our port ([`ConnKey`]). A
//!   SYN never overwrites the MSS of a connection that has not ended, so a spoofed SYN with a
//!   live connection's address and port changes nothing; a SYN may replace a connection whose
//!   FINs both went.
//! - **Pruned with the connection.** An entry goes at a RST either way (a peer's RST only
//!   when its sequence number lies in the window this device last acknowledged, the way
//!   smoltcp accepts one) and once both sides sent FIN and the peer acknowledged ours (nothing
//!   of ours is left to resend). When the table is full ([`MSS_TABLE`] connections) the least
//!   recently used entries make room, a 16th of the table at a time: those whose FINs both
//!   went first, then handshakes never completed, then established connections; every segment
//!   sent to a peer refreshes its entry's last-used time. Live connections are never wiped
//!   wholesale. A connection the table does not hold gets segments of the tap's MTU.
//!
//! Received frames are otherwise unchanged: the tap offers the kernel no receive offloads, so
//! the kernel segments and checksums what it sends us.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, Ipv4Address, TcpControl, TcpPacket, TcpRepr};
use tun_tap::{Iface, Mode};

/// The IP MTU presented to smoltcp with offload: the largest IPv4 packet whose Ethernet frame
/// still fits 65535 bytes (a pcap's snap length, and the kernel's 64 KiB GSO limit).
pub const OFFLOAD_MTU: usize = 65535 - 14;

/// The length of the virtio-net header (`struct virtio_net_hdr`, legacy layout, native byte
/// order) in front of each frame with offload; [`MssTable::transmit`] fills one.
pub const VNET_HDR: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;

/// The connections whose real MSS the device's [`MssTable`] keeps at most.
pub const MSS_TABLE: usize = 4096;

/// RFC 9293's default MSS: what a peer without an MSS option accepts, and the floor of the
/// MSS an [`MssTable`] keeps (unless the tap's MTU allows less).
pub const DEFAULT_MSS: u16 = 536;

/// The MSS option a SYN is raised to: the largest segment [`OFFLOAD_MTU`] holds.
const RAISED_MSS: u16 = (OFFLOAD_MTU - 40) as u16;

/// How far past the window this device last advertised a peer's RST or FIN may start and
/// still count (smoltcp may have taken data since, and opened its window further).
const WINDOW_SLACK: u32 = 65535;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// A TAP interface as a smoltcp device.
pub struct TapDevice {
    fd: Fd,
    /// The tap's own IP MTU (what the wire carries).
    mtu: usize,
    /// With offload: the SYN rewrite and each connection's real MSS.
    offload: Option<MssTable>,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

enum Fd {
    Plain(Iface),
    Vnet(File),
}

impl TapDevice {
    /// Opens the existing TAP interface `name` without offloads; `mtu` is the IP MTU (the frame
    /// adds 14 bytes).
    pub fn open(name: &str, mtu: usize) -> io::Result<TapDevice> {
        let iface = Iface::without_packet_info(name, Mode::Tap)?;
        iface.set_non_blocking()?;
        Ok(TapDevice::new(Fd::Plain(iface), mtu, false))
    }

    /// Opens the existing TAP interface `name` with checksum and segmentation offload (see the
    /// module docs); `mtu` is the tap's IP MTU, the size of every segment on the wire. Fails
    /// with `InvalidInput` when the kernel does not support virtio-net headers on taps.
    pub fn open_offload(name: &str, mtu: usize) -> io::Result<TapDevice> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        sys::attach_vnet(&file, name, VNET_HDR)?;
        Ok(TapDevice::new(Fd::Vnet(file), mtu, true))
    }

    fn new(fd: Fd, mtu: usize, offload: bool) -> TapDevice {
        let (hdr, max) = if offload {
            (VNET_HDR, OFFLOAD_MTU)
        } else {
            (0, mtu)
        };
        TapDevice {
            fd,
            mtu,
            offload: offload.then(|| MssTable::new(mtu)),
            // Received frames are never larger than the tap's MTU; sent ones up to `max`.
            rx: vec![0; hdr + mtu + 14],
            tx: vec![0; hdr + max + 14],
        }
    }

    /// Whether checksum and segmentation offload are on.
    pub fn offload(&self) -> bool {
        self.offload.is_some()
    }

    /// The tap's own IP MTU (with offload, smoltcp sees [`OFFLOAD_MTU`] instead).
    pub fn wire_mtu(&self) -> usize {
        self.mtu
    }

    /// The file descriptor to wait on.
    pub fn fd(&self) -> RawFd {
        match &self.fd {
            Fd::Plain(i) => i.as_raw_fd(),
            Fd::Vnet(f) => f.as_raw_fd(),
        }
    }

    /// Reads one frame into the device's buffer; the frame's range, or None when none is queued.
    fn read(&mut self, now: Instant) -> Option<(usize, usize)> {
        let r = match &mut self.fd {
            Fd::Plain(i) => i.recv(&mut self.rx),
            Fd::Vnet(f) => f.read(&mut self.rx),
        };
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                log::warn!("tap read: {e}");
                return None;
            }
        };
        let Some(table) = &mut self.offload else {
            return Some((0, n));
        };
        if n < VNET_HDR {
            return None;
        }
        table.receive(&mut self.rx[VNET_HDR..n], now);
        Some((VNET_HDR, n))
    }
}

/// A frame read from the tap.
pub struct TapRx<'a>(&'a [u8]);

/// Room to write one frame to the tap.
pub struct TapTx<'a> {
    fd: &'a mut Fd,
    buf: &'a mut [u8],
    /// With offload: the connections' MSS, and the time for their last-used stamps.
    offload: Option<(&'a mut MssTable, Instant)>,
}

impl phy::RxToken for TapRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TapTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let hdr = if self.offload.is_some() { VNET_HDR } else { 0 };
        let (head, frame) = self.buf[..hdr + len].split_at_mut(hdr);
        let r = f(frame);
        if let Some((table, now)) = self.offload {
            head.copy_from_slice(&table.transmit(frame, now));
        }
        let out = &self.buf[..hdr + len];
        let sent = match self.fd {
            Fd::Plain(i) => i.send(out),
            Fd::Vnet(f) => f.write(out),
        };
        if let Err(e) = sent {
            // A full tap queue drops the frame, like a busy wire; TCP retransmits.
            log::debug!("tap write: {e}");
        }
        r
    }
}

impl Device for TapDevice {
    type RxToken<'a> = TapRx<'a>;
    type TxToken<'a> = TapTx<'a>;

    fn receive(&mut self, now: Instant) -> Option<(TapRx<'_>, TapTx<'_>)> {
        let (start, end) = self.read(now)?;
        let tx = TapTx {
            fd: &mut self.fd,
            buf: &mut self.tx,
            offload: self.offload.as_mut().map(|t| (t, now)),
        };
        Some((TapRx(&self.rx[start..end]), tx))
    }

    fn transmit(&mut self, now: Instant) -> Option<TapTx<'_>> {
        Some(TapTx {
            fd: &mut self.fd,
            buf: &mut self.tx,
            offload: self.offload.as_mut().map(|t| (t, now)),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        if self.offload.is_some() {
            caps.max_transmission_unit = OFFLOAD_MTU + 14;
            // Verify on receive; on transmit the kernel finishes the sum (NEEDS_CSUM).
            caps.checksum.tcp = Checksum::Rx;
        } else {
            caps.max_transmission_unit = self.mtu + 14;
        }
        caps
    }
}

/// One TCP connection as an [`MssTable`] keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The peer's IPv4 address.
    pub peer: [u8; 4],
    /// The peer's TCP port.
    pub peer_port: u16,
    /// Our TCP port.
    pub port: u16,
}

/// What [`MssTable::receive`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not an unfragmented IPv4 TCP segment with sane lengths, or one smoltcp drops as
    /// malformed (a zero port, SYN with FIN, a bad option): left alone.
    Other,
    /// An IPv4 TCP segment whose IP header or TCP checksum does not verify: unchanged, nothing
    /// learned; smoltcp drops it.
    BadChecksum,
    /// A valid TCP segment without SYN, unchanged (it may have ended its connection).
    Segment,
    /// A valid SYN (or SYN-ACK).
    Syn {
        /// Its MSS option, if it had one.
        announced: Option<u16>,
        /// The option was raised to the largest segment smoltcp may build, and the TCP
        /// checksum computed again.
        raised: bool,
        /// The table now keeps its MSS for the connection (false: a live connection's MSS
        /// was kept).
        learned: bool,
    },
}

/// What the table knows of one connection.
#[derive(Debug, Clone)]
struct Entry {
    /// The peer's MSS, at least the floor; None while our own SYN waits for the SYN-ACK.
    mss: Option<u16>,
    /// When a segment last went to the peer (or the entry was made), with a counter that
    /// orders entries of the same instant.
    last_used: Instant,
    order: u64,
    /// The peer acknowledged our SYN.
    established: bool,
    /// The sequence number of our SYN (or SYN-ACK).
    isn: Option<u32>,
    /// The acknowledgment number of the last segment we sent, and the window (bytes) it gave.
    ack_out: Option<u32>,
    window_out: u32,
    /// Our window scale shift, from our SYN.
    shift: u8,
    /// The peer sent FIN.
    fin_in: bool,
    /// The sequence number of our FIN, and whether the peer acknowledged it.
    fin_out: Option<u32>,
    fin_acked: bool,
}

impl Entry {
    fn new(mss: Option<u16>) -> Entry {
        Entry {
            mss,
            last_used: Instant::ZERO,
            order: 0,
            established: false,
            isn: None,
            ack_out: None,
            window_out: 0,
            shift: 0,
            fin_in: false,
            fin_out: None,
            fin_acked: false,
        }
    }

    /// Both sides sent FIN: a new SYN may replace the entry.
    fn ended(&self) -> bool {
        self.fin_in && self.fin_out.is_some()
    }

    /// Whether a peer's RST or FIN starting at `seq` is one smoltcp may accept: in the window
    /// we last advertised (with slack), or anything before we acknowledged a byte.
    fn in_window(&self, seq: u32) -> bool {
        self.ack_out
            .is_none_or(|ack| seq.wrapping_sub(ack) <= self.window_out.saturating_add(WINDOW_SLACK))
    }

    /// Eviction order: ended connections first, then handshakes never completed, then
    /// established ones; least recently used first within each.
    fn rank(&self) -> (u8, Instant, u64) {
        let class = if self.ended() {
            0
        } else if !self.established {
            1
        } else {
            2
        };
        (class, self.last_used, self.order)
    }
}

/// The offload path's SYN rewrite and per-connection MSS (see the module docs for the rules).
///
/// The device calls [`MssTable::receive`] on each frame it reads, before smoltcp sees it, and
/// [`MssTable::transmit`] on each frame smoltcp built, for the virtio-net header to write in
/// front of it. Both take plain Ethernet frames, so the table works without a tap.
#[derive(Debug, Clone)]
pub struct MssTable {
    wire_mtu: usize,
    floor: u16,
    capacity: usize,
    /// Counts insertions and transmissions: the tie-break of the last-used order.
    clock: u64,
    entries: HashMap<ConnKey, Entry>,
}

impl MssTable {
    /// A table for a tap whose IP MTU is `wire_mtu`, holding at most [`MSS_TABLE`] connections.
    pub fn new(wire_mtu: usize) -> MssTable {
        MssTable::with_capacity(wire_mtu, MSS_TABLE)
    }

    /// A table for a tap whose IP MTU is `wire_mtu`, holding at most `capacity` connections
    /// (at least one).
    pub fn with_capacity(wire_mtu: usize, capacity: usize) -> MssTable {
        let room = wire_mtu
            .saturating_sub(40)
            .clamp(1, usize::from(DEFAULT_MSS));
        MssTable {
            wire_mtu,
            floor: room as u16,
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The least MSS the table keeps: 536, or the tap's MTU − 40 when that is smaller.
    pub fn floor(&self) -> u16 {
        self.floor
    }

    /// The tap's IP MTU.
    pub fn wire_mtu(&self) -> usize {
        self.wire_mtu
    }

    /// The most connections the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The connections the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no connection.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The MSS kept for connection `key` (at least [`MssTable::floor`]), if the table holds one.
    pub fn mss(&self, key: &ConnKey) -> Option<u16> {
        self.entries.get(key).and_then(|e| e.mss)
    }

    /// A frame read from the tap, before smoltcp sees it (`frame`: Ethernet header onwards,
    /// padding allowed). A TCP segment whose checksums verify is read for its connection's
    /// state (SYN, FIN, RST, acknowledgments); a SYN's MSS option below the largest segment
    /// smoltcp may build is raised to it, with the TCP checksum computed again, and the real
    /// value is kept (at least the floor) unless its connection is live. Any other frame is
    /// left as it is.
    pub fn receive(&mut self, frame: &mut [u8], now: Instant) -> Received {
        let Some((ihl, thl, total)) = tcp_in(frame) else {
            return Received::Other;
        };
        let (ip, rest) = frame[14..].split_at_mut(ihl);
        let tcp = &mut rest[..total - ihl];
        if fold(sum16(ip, 0)) != 0xffff || fold(tcp_sum(ip, tcp)) != 0xffff {
            return Received::BadChecksum;
        }
        let Some(seg) = Seg::parse(ip, tcp) else {
            return Received::Other;
        };
        let key = ConnKey {
            peer: [ip[12], ip[13], ip[14], ip[15]],
            peer_port: be16(&tcp[0..2]),
            port: be16(&tcp[2..4]),
        };
        let acks = |n: Option<u32>| {
            seg.ack
                .is_some_and(|a| n.is_some_and(|n| a == n.wrapping_add(1)))
        };
        match seg.control {
            TcpControl::Rst => {
                if self.entries.get(&key).is_some_and(|e| e.in_window(seg.seq)) {
                    self.entries.remove(&key);
                }
                return Received::Segment;
            }
            TcpControl::Syn => {}
            control => {
                let Some(e) = self.entries.get_mut(&key) else {
                    return Received::Segment;
                };
                e.established |= acks(e.isn);
                e.fin_acked |= acks(e.fin_out);
                e.fin_in |= control == TcpControl::Fin && e.in_window(seg.seq);
                if e.fin_in && e.fin_acked {
                    self.entries.remove(&key);
                }
                return Received::Segment;
            }
        }
        // A SYN: raise every MSS option (smoltcp reads the last one), then sum again.
        let mut raised = false;
        let mut at = 20;
        while let Some((kind, i, len)) = next_option(tcp, thl, &mut at) {
            if kind == 2 && len == 4 && be16(&tcp[i..i + 2]) < RAISED_MSS {
                tcp[i..i + 2].copy_from_slice(&RAISED_MSS.to_be_bytes());
                raised = true;
            }
        }
        if raised {
            tcp[16..18].fill(0);
            let c = !fold(tcp_sum(ip, tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
        }
        let kept = seg.mss.unwrap_or(DEFAULT_MSS).max(self.floor);
        let learned = match self.entries.get_mut(&key) {
            // Our own SYN waits: learn from the SYN-ACK that acknowledges it.
            Some(e) if e.mss.is_none() && !e.ended() => {
                let ok = acks(e.isn);
                if ok {
                    e.mss = Some(kept);
                    e.established = true;
                }
                ok
            }
            // A live connection keeps its MSS (a retransmitted SYN, or a spoofed one).
            Some(e) if !e.ended() => false,
            _ => {
                self.insert(key, Entry::new(Some(kept)), now);
                true
            }
        };
        Received::Syn {
            announced: seg.mss,
            raised,
            learned,
        }
    }

    /// A frame smoltcp built, about to be written to the tap (Ethernet header onwards): returns
    /// the virtio-net header to write in front of it. A TCP segment gets its pseudo-header sum
    /// in its checksum field and `NEEDS_CSUM`, and when its payload is larger than its
    /// connection's MSS (or, for a connection the table does not hold, than the tap's MTU
    /// allows), GSO `TCPV4` with that MSS, less the segment's option bytes, as `gso_size`.
    /// The segment refreshes its connection's last-used time and state; a RST ends it. Any
    /// other frame gets an all-zero header.
    pub fn transmit(&mut self, frame: &mut [u8], now: Instant) -> [u8; VNET_HDR] {
        let mut head = [0u8; VNET_HDR];
        head[1] = VNET_GSO_NONE;
        let Some((ihl, thl, total)) = tcp_in(frame) else {
            return head;
        };
        let (ip, rest) = frame[14..].split_at_mut(ihl);
        let tcp = &mut rest[..total - ihl];
        let payload = tcp.len() - thl;
        // The pseudo-header: source, destination, protocol, TCP length.
        let pseudo = fold(sum16(&ip[12..20], 6 + tcp.len() as u64));
        tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
        let key = ConnKey {
            peer: [ip[16], ip[17], ip[18], ip[19]],
            peer_port: be16(&tcp[2..4]),
            port: be16(&tcp[0..2]),
        };
        let mss = self.sent(&key, tcp, thl, payload, now);
        // The peer's MSS counts no options (RFC 6691); the segments must also fit the wire.
        let wire = self.wire_mtu.saturating_sub(40).max(1);
        let limit = mss.map_or(wire, |m| usize::from(m).min(wire));
        let seg = limit.saturating_sub(thl - 20).max(1);
        head[0] = VNET_F_NEEDS_CSUM;
        if payload > seg {
            head[1] = VNET_GSO_TCPV4;
            head[2..4].copy_from_slice(&((14 + ihl + thl) as u16).to_ne_bytes());
            head[4..6].copy_from_slice(&(seg as u16).to_ne_bytes());
        }
        head[6..8].copy_from_slice(&((14 + ihl) as u16).to_ne_bytes());
        head[8..10].copy_from_slice(&16u16.to_ne_bytes());
        head
    }

    /// Notes a segment we send on connection `key`; returns the connection's MSS.
    fn sent(
        &mut self,
        key: &ConnKey,
        tcp: &[u8],
        thl: usize,
        payload: usize,
        now: Instant,
    ) -> Option<u16> {
        let (seq, ack, flags) = (be32(&tcp[4..8]), be32(&tcp[8..12]), tcp[13]);
        if flags & RST != 0 {
            return self.entries.remove(key).and_then(|e| e.mss);
        }
        if !self.entries.contains_key(key) {
            if flags & (SYN | ACK) != SYN {
                return None;
            }
            // Our own SYN (an active open): the peer's SYN-ACK will bring its MSS.
            self.insert(*key, Entry::new(None), now);
        }
        self.clock += 1;
        let e = self.entries.get_mut(key)?;
        e.last_used = now;
        e.order = self.clock;
        if flags & SYN != 0 {
            e.isn = Some(seq);
            e.shift = option(tcp, thl, 3, 3).map_or(0, |i| tcp[i].min(14));
        }
        if flags & ACK != 0 {
            let window = u32::from(be16(&tcp[14..16]));
            e.ack_out = Some(ack);
            // The window of a SYN is never scaled.
            e.window_out = if flags & SYN != 0 {
                window
            } else {
                window << e.shift
            };
        }
        if flags & FIN != 0 {
            let syn = u32::from(flags & SYN != 0);
            e.fin_out = Some(seq.wrapping_add(payload as u32).wrapping_add(syn));
        }
        e.mss
    }

    /// Adds connection `key`, making room first when the table is full.
    fn insert(&mut self, key: ConnKey, mut e: Entry, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.evict();
        }
        self.clock += 1;
        e.last_used = now;
        e.order = self.clock;
        self.entries.insert(key, e);
    }

    /// Removes a 16th of the table (at least one entry), first in [`Entry::rank`] order.
    fn evict(&mut self) {
        let mut all: Vec<_> = self.entries.iter().map(|(k, e)| (e.rank(), *k)).collect();
        let n = (self.capacity / 16).clamp(1, all.len().max(1));
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |x| x.0);
        }
        for (_, k) in all.iter().take(n) {
            self.entries.remove(k);
        }
    }
}

/// The TCP segment in an Ethernet frame: (IP header length, TCP header length, IP total
/// length), or None when the frame is not an unfragmented IPv4 TCP segment with sane lengths.
fn tcp_in(frame: &[u8]) -> Option<(usize, usize, usize)> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(&ip[2..4]));
    let fragmented = be16(&ip[6..8]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragmented || total > ip.len() {
        return None;
    }
    if total < ihl + 20 {
        return None;
    }
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    (thl >= 20 && ihl + thl <= total).then_some((ihl, thl, total))
}

/// The option at `*at` among the options of a TCP header of `thl` bytes: its kind, the offset
/// of its value and its length; `*at` moves past it. None at the end of the options or at a
/// malformed one.
fn next_option(tcp: &[u8], thl: usize, at: &mut usize) -> Option<(u8, usize, usize)> {
    while *at < thl {
        let i = *at;
        match tcp[i] {
            0 => return None,
            1 => *at += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1)?);
                if len < 2 || i + len > thl {
                    return None;
                }
                *at = i + len;
                return Some((kind, i + 2, len));
            }
        }
    }
    None
}

/// The offset of the value of the first option of `kind` and length `len` in a TCP header of
/// `thl` bytes.
fn option(tcp: &[u8], thl: usize, kind: u8, len: usize) -> Option<usize> {
    let mut at = 20;
    while let Some((k, i, l)) = next_option(tcp, thl, &mut at) {
        if k == kind && l == len {
            return Some(i);
        }
    }
    None
}

/// What smoltcp reads of a received TCP segment.
struct Seg {
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    /// The last MSS option, the one smoltcp uses.
    mss: Option<u16>,
}

impl Seg {
    /// Parses `tcp` (the checksums already verified) as smoltcp does; None when smoltcp would
    /// drop it as malformed (zero port, SYN with FIN, a bad option...).
    fn parse(ip: &[u8], tcp: &[u8]) -> Option<Seg> {
        let packet = TcpPacket::new_checked(tcp).ok()?;
        let addr = |b: &[u8]| IpAddress::Ipv4(Ipv4Address::new(b[0], b[1], b[2], b[3]));
        let caps = ChecksumCapabilities::ignored();
        let repr = TcpRepr::parse(&packet, &addr(&ip[12..16]), &addr(&ip[16..20]), &caps).ok()?;
        Some(Seg {
            control: repr.control,
            seq: repr.seq_number.0 as u32,
            ack: repr.ack_number.map(|a| a.0 as u32),
            mss: repr.max_seg_size,
        })
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Adds `b` as big-endian 16-bit words (an odd last byte padded with zero) to `sum`.
fn sum16(b: &[u8], mut sum: u64) -> u64 {
    let mut words = b.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(be16(w));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// The one's-complement sum of the TCP pseudo-header (addresses from the IPv4 header `ip`)
/// and the segment `tcp`: folds to 0xffff when the checksum field is right.
fn tcp_sum(ip: &[u8], tcp: &[u8]) -> u64 {
    sum16(tcp, sum16(&ip[12..20], 6 + tcp.len() as u64))
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The two ioctls that attach a tap with virtio-net headers.
#[allow(unsafe_code)]
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::unix::io::AsRawFd;

    /// `TUNSETIFF` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` for the existing tap `name`, then
    /// `TUNSETVNETHDRSZ` to `hdr` bytes.
    pub fn attach_vnet(file: &File, name: &str, hdr: usize) -> io::Result<()> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        // SAFETY: ifreq is plain old data; all zeros is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: the fd is open for the call's duration and `req` is a valid ifreq that
        // outlives it; TUNSETIFF reads and writes only that struct.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let size = hdr as libc::c_int;
        // SAFETY: as above; TUNSETVNETHDRSZ reads one c_int.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: [u8; 4] = [10, 0, 0, 2];
    const US: [u8; 4] = [10, 0, 0, 1];
    const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

    // The test's own checksum arithmetic, independent of the module's.
    fn ones_sum(b: &[u8], mut sum: u32) -> u32 {
        for w in b.chunks(2) {
            sum += (u32::from(w[0]) << 8) | u32::from(*w.get(1).unwrap_or(&0));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum
    }

    /// An Ethernet frame holding an IPv4 TCP segment from `src` to `dst`, with valid IP and TCP
    /// checksums.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let thl = 20 + options.len();
        let total = 20 + thl + payload.len();
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src.0);
        ip.extend_from_slice(&dst.0);
        let c = !(ones_sum(&ip, 0) as u16);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&src.1.to_be_bytes());
        tcp.extend_from_slice(&dst.1.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[((thl / 4) as u8) << 4, flags]);
        tcp.extend_from_slice(&window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(payload);
        let pseudo = ones_sum(&ip[12..20], 6 + tcp.len() as u32);
        let c = !(ones_sum(&tcp, pseudo) as u16);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    }

    /// From the peer's `port` to our port 80.
    fn from_peer(port: u16, flags: u8, seq: u32, ack: u32, options: &[u8]) -> Vec<u8> {
        frame((PEER, port), (US, 80), flags, seq, ack, 64240, options, &[])
    }

    /// From our port 80 to the peer's `port`.
    fn to_peer(port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        frame((US, 80), (PEER, port), flags, seq, ack, 4096, &[], payload)
    }

    fn syn(port: u16, mss: u16) -> Vec<u8> {
        let [a, b] = mss.to_be_bytes();
        from_peer(port, SYN, 100, 0, &[2, 4, a, b])
    }

    fn key(port: u16) -> ConnKey {
        ConnKey {
            peer: PEER,
            peer_port: port,
            port: 80,
        }
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n as i64)
    }

    /// The IPv4 header and TCP checksums of `f` verify, by the test's own sums and by smoltcp's.
    fn checksums_ok(f: &[u8]) -> bool {
        let ip = &f[14..34];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &f[34..14 + total];
        let ours = ones_sum(ip, 0) == 0xffff
            && ones_sum(tcp, ones_sum(&ip[12..20], 6 + tcp.len() as u32)) == 0xffff;
        let addr = |b: &[u8]| IpAddress::Ipv4(Ipv4Address::new(b[0], b[1], b[2], b[3]));
        let smoltcp = TcpPacket::new_checked(tcp)
            .unwrap()
            .verify_checksum(&addr(&ip[12..16]), &addr(&ip[16..20]));
        assert_eq!(ours, smoltcp, "the two checksum computations disagree");
        ours
    }

    /// gso_size of a virtio-net header (0 without GSO).
    fn gso_size(head: &[u8; VNET_HDR]) -> u16 {
        if head[1] == VNET_GSO_TCPV4 {
            u16::from_ne_bytes([head[4], head[5]])
        } else {
            0
        }
    }

    #[test]
    fn a_syn_mss_is_raised_with_a_valid_checksum_and_remembered() {
        let mut t = MssTable::new(1500);
        let opts = [1, 1, 4, 2, 2, 4, 0x05, 0xb4]; // NOP NOP SACK-permitted MSS 1460
        let mut f = from_peer(4000, SYN, 100, 0, &opts);
        assert!(checksums_ok(&f));
        let got = t.receive(&mut f, ms(0));
        assert_eq!(
            got,
            Received::Syn {
                announced: Some(1460),
                raised: true,
                learned: true
            }
        );
        assert_eq!(&f[34 + 24..34 + 28], &[2, 4, 0xff, 0xc9]); // 65481
        assert!(checksums_ok(&f), "checksum after the rewrite");
        assert_eq!(t.mss(&key(4000)), Some(1460));
    }

    #[test]
    fn an_mss_option_at_an_odd_offset_gets_a_valid_checksum() {
        // NOP, MSS (value at offset 23), and NOP NOP NOP MSS (value at 25); each with values
        // whose incremental update needs a carry, and a SYN with an odd-length payload.
        for layout in [[1, 2, 4, 0, 0, 1, 1, 0], [1, 1, 1, 2, 4, 0, 0, 0]] {
            let at = layout.iter().position(|&b| b == 2).unwrap();
            for real in [0u16, 1, 536, 1400, 1460, 8960, 0x8001, 0xff00] {
                for payload in [&b""[..], b"abc"] {
                    let mut opts = layout;
                    opts[at + 2..at + 4].copy_from_slice(&real.to_be_bytes());
                    let mut f = frame((PEER, 4000), (US, 80), SYN, 7, 0, 1000, &opts, payload);
                    assert!(checksums_ok(&f));
                    let mut t = MssTable::new(1500);
                    assert!(matches!(
                        t.receive(&mut f, ms(0)),
                        Received::Syn { raised: true, .. }
                    ));
                    let v = 34 + 20 + at + 2;
                    assert_eq!(&f[v..v + 2], &RAISED_MSS.to_be_bytes());
                    assert!(
                        checksums_ok(&f),
                        "layout {layout:?}, mss {real}: bad checksum"
                    );
                }
            }
        }
    }

    #[test]
    fn an_mss_of_0_or_1_is_kept_as_the_floor() {
        let mut t = MssTable::new(1500);
        assert_eq!(t.floor(), 536);
        for (port, real) in [(4000, 0), (4001, 1), (4002, 535)] {
            t.receive(&mut syn(port, real), ms(0));
            assert_eq!(t.mss(&key(port)), Some(536), "MSS {real}");
            let head = t.transmit(&mut to_peer(port, ACK, 1, 101, &[7; 60000]), ms(1));
            assert_eq!(gso_size(&head), 536, "MSS {real}");
        }
        // A SYN without the option: RFC 9293's 536.
        t.receive(&mut from_peer(4003, SYN, 100, 0, &[]), ms(0));
        assert_eq!(t.mss(&key(4003)), Some(536));
        // A tap whose MTU holds less: MTU - 40.
        let mut small = MssTable::new(300);
        assert_eq!(small.floor(), 260);
        small.receive(&mut syn(4000, 1), ms(0));
        assert_eq!(small.mss(&key(4000)), Some(260));
        let head = small.transmit(&mut to_peer(4000, ACK, 1, 101, &[7; 60000]), ms(1));
        assert_eq!(gso_size(&head), 260);
    }

    #[test]
    fn a_syn_with_a_bad_checksum_is_neither_learned_nor_changed() {
        let mut t = MssTable::new(1500);
        let good = syn(4000, 1400);
        let mut bad_tcp = good.clone();
        bad_tcp[34 + 17] ^= 0x40; // the TCP checksum
        let mut bad_ip = good.clone();
        bad_ip[14 + 11] ^= 0x01; // the IP header checksum
        let mut bad_byte = good.clone();
        bad_byte[34 + 14] ^= 0x01; // the window: the sum no longer matches
        for f in [&mut bad_tcp, &mut bad_ip, &mut bad_byte] {
            let before = f.clone();
            assert_eq!(t.receive(f, ms(0)), Received::BadChecksum);
            assert_eq!(*f, before, "a bad frame is left as it is");
        }
        assert!(t.is_empty());
        assert_eq!(t.mss(&key(4000)), None);
        // The same SYN with its checksums right is learned.
        t.receive(&mut good.clone(), ms(0));
        assert_eq!(t.mss(&key(4000)), Some(1400));
    }

    /// A connection on the peer's `port` through the handshake: the peer's ISN is 100, ours 1000.
    fn handshake(t: &mut MssTable, port: u16) {
        t.receive(&mut syn(port, 1400), ms(0));
        t.transmit(&mut to_peer(port, SYN | ACK, 1000, 101, &[]), ms(1));
        t.receive(&mut from_peer(port, ACK, 101, 1001, &[]), ms(2));
        assert!(t.entries[&key(port)].established);
    }

    #[test]
    fn an_entry_goes_at_a_rst_either_way() {
        let mut t = MssTable::new(1500);
        // The peer's RST, in the window we advertised.
        handshake(&mut t, 4000);
        t.receive(&mut from_peer(4000, RST | ACK, 101, 1001, &[]), ms(3));
        assert_eq!(t.mss(&key(4000)), None);
        // Ours.
        handshake(&mut t, 4001);
        t.transmit(&mut to_peer(4001, RST | ACK, 1001, 101, &[]), ms(3));
        assert_eq!(t.mss(&key(4001)), None);
        // A RST refusing our SYN-ACK before any ACK.
        t.receive(&mut syn(4002, 1400), ms(0));
        t.transmit(&mut to_peer(4002, SYN | ACK, 1000, 101, &[]), ms(1));
        t.receive(&mut from_peer(4002, RST, 101, 0, &[]), ms(2));
        assert_eq!(t.mss(&key(4002)), None);
        // A blind RST far outside the window does not end a connection (smoltcp ignores it).
        handshake(&mut t, 4003);
        t.receive(&mut from_peer(4003, RST, 0x8000_0000, 0, &[]), ms(3));
        assert_eq!(t.mss(&key(4003)), Some(1400));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_entry_goes_after_both_fins() {
        let mut t = MssTable::new(1500);
        // We close first: our FIN after 10 bytes, the peer's FIN-ACK acknowledges it.
        handshake(&mut t, 4000);
        t.transmit(&mut to_peer(4000, FIN | ACK, 1001, 101, &[1; 10]), ms(3));
        assert_eq!(t.mss(&key(4000)), Some(1400), "only our FIN");
        t.receive(&mut from_peer(4000, FIN | ACK, 101, 1012, &[]), ms(4));
        assert_eq!(t.mss(&key(4000)), None);
        // The peer closes first; then ours, then its ACK of ours.
        handshake(&mut t, 4001);
        t.receive(&mut from_peer(4001, FIN | ACK, 101, 1001, &[]), ms(3));
        assert_eq!(t.mss(&key(4001)), Some(1400), "only the peer's FIN");
        t.transmit(&mut to_peer(4001, FIN | ACK, 1001, 102, &[]), ms(4));
        assert_eq!(
            t.mss(&key(4001)),
            Some(1400),
            "our FIN not yet acknowledged"
        );
        t.receive(&mut from_peer(4001, ACK, 102, 1002, &[]), ms(5));
        assert_eq!(t.mss(&key(4001)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_spoofed_syn_cannot_overwrite_a_live_connection() {
        let mut t = MssTable::new(1500);
        handshake(&mut t, 4000);
        let mut spoofed = syn(4000, 1);
        assert_eq!(
            t.receive(&mut spoofed, ms(3)),
            Received::Syn {
                announced: Some(1),
                raised: true,
                learned: false
            }
        );
        assert!(checksums_ok(&spoofed));
        assert_eq!(t.mss(&key(4000)), Some(1400));
        let head = t.transmit(&mut to_peer(4000, ACK, 1001, 101, &[7; 60000]), ms(4));
        assert_eq!(gso_size(&head), 1400);
        // Before the handshake completes too.
        t.receive(&mut syn(4001, 1300), ms(0));
        t.receive(&mut syn(4001, 600), ms(1));
        assert_eq!(t.mss(&key(4001)), Some(1300));
        // Once both FINs went, a new connection on the same ports learns its own.
        t.transmit(&mut to_peer(4000, FIN | ACK, 1001, 101, &[]), ms(5));
        t.receive(&mut from_peer(4000, FIN | ACK, 101, 1001, &[]), ms(6));
        t.receive(&mut syn(4000, 1200), ms(7));
        assert_eq!(t.mss(&key(4000)), Some(1200));
    }

    #[test]
    fn lru_eviction_keeps_a_recently_used_connection() {
        let mut t = MssTable::new(1500);
        assert_eq!(t.capacity(), MSS_TABLE);
        let n = MSS_TABLE as u16;
        t.receive(&mut syn(1, 1400), ms(0));
        for port in 2..=n {
            t.receive(&mut syn(port, 1300), ms(u64::from(port)));
        }
        assert_eq!(t.len(), MSS_TABLE);
        // Port 1's connection sends; the others stay quiet.
        t.transmit(&mut to_peer(1, ACK, 1001, 101, &[1; 100]), ms(10_000));
        for port in n + 1..n + 600 {
            t.receive(&mut syn(port, 1200), ms(20_000 + u64::from(port)));
            assert!(t.len() <= MSS_TABLE);
        }
        assert_eq!(t.mss(&key(1)), Some(1400), "the recently used connection");
        assert_eq!(t.mss(&key(2)), None, "the least recently used went");
        assert_eq!(t.mss(&key(n + 599)), Some(1200));
        assert!(t.len() > MSS_TABLE - MSS_TABLE / 16 - 1, "{}", t.len());
    }

    #[test]
    fn eviction_takes_unfinished_handshakes_before_established_connections() {
        let mut t = MssTable::with_capacity(1500, 4);
        handshake(&mut t, 1); // established, used at 1 ms
        for port in 2..=4 {
            t.receive(&mut syn(port, 1300), ms(100 + u64::from(port)));
        }
        t.receive(&mut syn(5, 1300), ms(200));
        assert_eq!(t.len(), 4);
        assert_eq!(t.mss(&key(1)), Some(1400));
        assert_eq!(t.mss(&key(2)), None);
    }

    #[test]
    fn our_own_syn_learns_from_the_syn_ack_that_acknowledges_it() {
        let mut t = MssTable::new(1500);
        let server = |flags, ack, mss: u16| {
            let [a, b] = mss.to_be_bytes();
            frame(
                (PEER, 443),
                (US, 50000),
                flags,
                9000,
                ack,
                1000,
                &[2, 4, a, b],
                &[],
            )
        };
        let k = ConnKey {
            peer: PEER,
            peer_port: 443,
            port: 50000,
        };
        t.transmit(
            &mut frame((US, 50000), (PEER, 443), SYN, 5000, 0, 1000, &[], &[]),
            ms(0),
        );
        assert_eq!(t.mss(&k), None);
        t.receive(&mut server(SYN | ACK, 7, 1), ms(1)); // not for our SYN
        assert_eq!(t.mss(&k), None);
        t.receive(&mut server(SYN | ACK, 5001, 1380), ms(2));
        assert_eq!(t.mss(&k), Some(1380));
    }

    #[test]
    fn segments_other_than_syn_are_left_alone() {
        let mut t = MssTable::new(1500);
        let mut ack = frame((PEER, 4000), (US, 80), ACK, 1, 1, 100, &MSS_1460, b"data");
        let before = ack.clone();
        assert_eq!(t.receive(&mut ack, ms(0)), Received::Segment);
        assert_eq!(ack, before);
        let mut no_mss = from_peer(4000, SYN, 1, 0, &[1, 1, 1, 0]);
        let before = no_mss.clone();
        assert!(matches!(
            t.receive(&mut no_mss, ms(0)),
            Received::Syn { raised: false, .. }
        ));
        assert_eq!(no_mss, before);
        // Malformed options, SYN with FIN: smoltcp drops them, the table too.
        let mut t = MssTable::new(1500);
        let mut bad_len = from_peer(4000, SYN, 1, 0, &[2, 9, 0, 0]);
        let before = bad_len.clone();
        assert_eq!(t.receive(&mut bad_len, ms(0)), Received::Other);
        assert_eq!(bad_len, before);
        let mut syn_fin = from_peer(4000, SYN | FIN, 1, 0, &MSS_1460);
        assert_eq!(t.receive(&mut syn_fin, ms(0)), Received::Other);
        assert!(t.is_empty());
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(t.receive(&mut arp, ms(0)), Received::Other);
        assert_eq!(arp[14..], [0u8; 46]);
    }

    #[test]
    fn a_large_segment_gets_gso_with_the_peers_mss_and_a_pseudo_header_sum() {
        let mut t = MssTable::new(1500);
        t.receive(&mut syn(4000, 1400), ms(0));
        let mut f = to_peer(4000, ACK | 0x08, 1, 101, &[7u8; 5000]);
        let head = t.transmit(&mut f, ms(1));
        assert_eq!(head[0], VNET_F_NEEDS_CSUM);
        assert_eq!(head[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([head[2], head[3]]), 54); // header length
        assert_eq!(u16::from_ne_bytes([head[4], head[5]]), 1400); // gso_size
        assert_eq!(u16::from_ne_bytes([head[6], head[7]]), 34); // csum_start
        assert_eq!(u16::from_ne_bytes([head[8], head[9]]), 16); // csum_offset
                                                                // The kernel finishes the sum: the segment summed from the partial value verifies.
        let partial = u32::from(u16::from_be_bytes([f[50], f[51]]));
        let mut copy = f[34..].to_vec();
        copy[16..18].fill(0);
        let full = !(ones_sum(&copy, partial) as u16);
        f[50..52].copy_from_slice(&full.to_be_bytes());
        assert!(checksums_ok(&f));

        // An unknown peer: the tap's MTU decides; a small segment: checksum only.
        let mut other = frame((US, 80), (PEER, 4999), ACK, 1, 1, 1, &[], &[7u8; 5000]);
        let head = MssTable::new(3000).transmit(&mut other, ms(1));
        assert_eq!(head[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([head[4], head[5]]), 2960);
        let head = MssTable::new(9000).transmit(&mut other, ms(1));
        assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
        let head = t.transmit(&mut to_peer(4000, ACK, 1, 101, &[1u8; 100]), ms(1));
        assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(t.transmit(&mut arp, ms(1)), [0u8; VNET_HDR]);
    }
}
