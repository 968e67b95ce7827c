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
//!   the pseudo-header sum (IPv4: addresses, protocol 6, TCP length; IPv6, RFC 8200 8.1:
//!   addresses, the upper-layer length as 32 bits, next header 6); the kernel (or the final
//!   receiver) finishes it. smoltcp is told not to compute TCP checksums on transmit, and still
//!   verifies them on receive.
//! - segmentation offload (GSO `TCPV4`, or `TCPV6` over IPv6): a TCP segment of up to 64 KB is
//!   written at once, with `gso_size` set to the peer's real MSS; the kernel cuts it into
//!   wire-sized segments, or hands it whole to a local socket.
//!
//! The kernel takes GSO frames written to a tap without any `TUNSETOFFLOAD` call: its flags
//! (`TUN_F_CSUM`, `TUN_F_TSO4`, `TUN_F_TSO6`) say what the reader can take, i.e. which
//! offloads the kernel may use on frames it sends *us*, and this device offers none (see the
//! end of these docs).
//!
//! smoltcp builds a segment no larger than the interface MTU allows and the peer's MSS option
//! says. So this device (1) presents an IP MTU of [`OFFLOAD_MTU`] to smoltcp, and (2) raises
//! the MSS option of each TCP SYN it passes up to the largest segment that MTU holds
//! ([`OFFLOAD_MTU`] − 40 over IPv4, − 60 over IPv6: IP and TCP headers without options),
//! keeping the real value per connection in an [`MssTable`] to put in `gso_size`. smoltcp then
//! builds large segments (IP header, TCP header with options and payload within
//! [`OFFLOAD_MTU`]) while every segment on the wire keeps the size the peer asked for. The
//! table's rules, the same for both families:
//!
//! - **Checksums verified.** A frame whose IPv4 header checksum (IPv6 has none) or TCP
//!   checksum (over the pseudo-header and the segment) does not verify is passed on unchanged
//!   and nothing is learned from it, so smoltcp drops it as it would anyway. After the rewrite
//!   the TCP checksum is computed again in full, so the MSS option may sit at any offset
//!   (`NOP, MSS` puts its value at an odd one); smoltcp still checks every checksum.
//! - **A floor.** A peer's MSS is kept as at least [`DEFAULT_MSS`] (536, RFC 9293's default
//!   for IPv4), or the largest the tap's MTU carries (MTU − 40 over IPv4, MTU − 60 over IPv6)
//!   when that is smaller. The floor is 536 over IPv6 too, not 1220 (1280 − 60, RFC 8200's
//!   least link MTU): a peer may announce less than its link carries (a route's `advmss`), and
//!   it gets what it asked for down to 536. A SYN without the option is kept as RFC 9293's
//!   default, 536 over IPv4 and [`DEFAULT_MSS_V6`] (1220) over IPv6. So a SYN announcing MSS 0
//!   or 1 cannot make the kernel cut 64 KB into one-byte segments. `gso_size` is the kept MSS
//!   less the TCP option bytes of the segment (RFC 6691), and never more than the tap's MTU
//!   allows.
//! - **Per connection.** The key is the peer's address (IPv4 or IPv6) and port and our port
//!   ([`ConnKey`]). A SYN never overwrites the MSS of a connection that has not ended, so a
//!   spoofed SYN with a live connection's address and port changes nothing; a SYN may replace a
//!   connection whose FINs both went.
//! - **Pruned with the connection.** An entry goes at a RST either way (a peer's RST only
//!   when its sequence number lies in the window this device last acknowledged, the way
//!   smoltcp accepts one) and once both sides sent FIN and the peer acknowledged ours (nothing
//!   of ours is left to resend). When the table is full ([`MSS_TABLE`] connections) the least
//!   recently used entries make room, a 16th of the table at a time: those whose FINs both
//!   went first, then handshakes never completed, then established connections; every segment
//!   sent to a peer refreshes its entry's last-used time. Live connections are never wiped
//!   wholesale. A connection the table does not hold gets segments of the tap's MTU.
//!
//! IPv6 (feature `ipv6`) is handled where TCP is the next header of the fixed 40-byte header.
//! A received frame with extension headers is passed up unchanged and teaches the table
//! nothing (its SYN's MSS is not raised, so smoltcp never builds a segment larger than the
//! peer's MSS on that connection). A sent one (smoltcp emits none for TCP over Ethernet) gets
//! its checksum finished through `NEEDS_CSUM` past hop-by-hop and destination options
//! headers, and never GSO; other extension headers (routing, fragment), which smoltcp never
//! emits either, are written as they are.
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
#[cfg(feature = "ipv6")]
use smoltcp::wire::Ipv6Address;
use smoltcp::wire::{IpAddress, IpVersion, Ipv4Address, TcpControl, TcpPacket, TcpRepr};
use tun_tap::{Iface, Mode};

/// The IP MTU presented to smoltcp with offload: the largest IPv4 or IPv6 packet whose
/// Ethernet frame still fits 65535 bytes (a pcap's snap length, and the kernel's 64 KiB GSO
/// limit). An IPv6 packet this long has a payload length of 65481, under the field's 65535.
pub const OFFLOAD_MTU: usize = 65535 - 14;

/// The length of the virtio-net header (`struct virtio_net_hdr`, legacy layout, native byte
/// order) in front of each frame with offload; [`MssTable::transmit`] fills one.
pub const VNET_HDR: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

/// The connections whose real MSS the device's [`MssTable`] keeps at most.
pub const MSS_TABLE: usize = 4096;

/// RFC 9293's default MSS over IPv4 (576 − 40): what an IPv4 peer without an MSS option
/// accepts, and the floor of the MSS an [`MssTable`] keeps for either family (unless the tap's
/// MTU allows less).
pub const DEFAULT_MSS: u16 = 536;

/// RFC 9293's default MSS over IPv6 (1280 − 60, RFC 8200's least link MTU): what an IPv6 peer
/// without an MSS option accepts. Not a floor: see the module docs.
pub const DEFAULT_MSS_V6: u16 = 1220;

/// The IP and TCP headers without options: 40 bytes over IPv4, 60 over IPv6. An IP MTU less
/// this is the largest MSS a link of that MTU carries.
const fn headers(version: IpVersion) -> usize {
    if matches!(version, IpVersion::Ipv4) {
        40
    } else {
        60
    }
}

/// The MSS option a SYN is raised to: the largest segment [`OFFLOAD_MTU`] holds (65481 over
/// IPv4, 65461 over IPv6; smoltcp's own limit for that MTU).
const fn raised_mss(version: IpVersion) -> u16 {
    (OFFLOAD_MTU - headers(version)) as u16
}

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
    /// The peer's address, IPv4 or IPv6.
    pub peer: IpAddress,
    /// The peer's TCP port.
    pub peer_port: u16,
    /// Our TCP port.
    pub port: u16,
}

/// What [`MssTable::receive`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not a TCP segment with sane lengths in an unfragmented IPv4 packet or directly after
    /// the fixed IPv6 header, or one smoltcp drops as malformed (a zero port, SYN with FIN, a
    /// bad option): left alone.
    Other,
    /// A TCP segment whose IPv4 header checksum or TCP checksum does not verify: unchanged,
    /// nothing learned; smoltcp drops it.
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
        MssTable {
            wire_mtu,
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The least MSS the table keeps for a peer of IP version `version`: [`DEFAULT_MSS`]
    /// (536), or the largest segment the tap's MTU carries (MTU − 40 over IPv4, MTU − 60 over
    /// IPv6) when that is smaller.
    pub fn floor(&self, version: IpVersion) -> u16 {
        self.room(version).min(usize::from(DEFAULT_MSS)) as u16
    }

    /// The largest segment the tap's MTU carries for `version` (at least 1 byte).
    fn room(&self, version: IpVersion) -> usize {
        self.wire_mtu.saturating_sub(headers(version)).max(1)
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

    /// The MSS kept for connection `key` (at least [`MssTable::floor`] of its family), if the
    /// table holds one.
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
        let Some(at) = tcp_in(frame, false) else {
            return Received::Other;
        };
        let (ip, rest) = frame[14..].split_at_mut(at.ip_len);
        let tcp = &mut rest[..at.total - at.ip_len];
        let v4 = at.version == IpVersion::Ipv4;
        if (v4 && fold(sum16(ip, 0)) != 0xffff) || fold(at.tcp_sum(ip, tcp)) != 0xffff {
            return Received::BadChecksum;
        }
        let (src, dst) = (at.src(ip), at.dst(ip));
        let Some(seg) = Seg::parse(&src, &dst, tcp) else {
            return Received::Other;
        };
        let key = ConnKey {
            peer: src,
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
        let top = raised_mss(at.version);
        let mut raised = false;
        let mut opt = 20;
        while let Some((kind, i, len)) = next_option(tcp, at.thl, &mut opt) {
            if kind == 2 && len == 4 && be16(&tcp[i..i + 2]) < top {
                tcp[i..i + 2].copy_from_slice(&top.to_be_bytes());
                raised = true;
            }
        }
        if raised {
            tcp[16..18].fill(0);
            let c = !fold(at.tcp_sum(ip, tcp));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
        }
        let default = if v4 { DEFAULT_MSS } else { DEFAULT_MSS_V6 };
        let kept = seg.mss.unwrap_or(default).max(self.floor(at.version));
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
    /// allows), GSO `TCPV4` or `TCPV6` with that MSS, less the segment's option bytes, as
    /// `gso_size` (an IPv6 segment after extension headers: never GSO). The segment refreshes
    /// its connection's last-used time and state; a RST ends it. Any other frame gets an
    /// all-zero header.
    pub fn transmit(&mut self, frame: &mut [u8], now: Instant) -> [u8; VNET_HDR] {
        let mut head = [0u8; VNET_HDR];
        head[1] = VNET_GSO_NONE;
        let Some(at) = tcp_in(frame, true) else {
            return head;
        };
        let (ip, rest) = frame[14..].split_at_mut(at.ip_len);
        let tcp = &mut rest[..at.total - at.ip_len];
        let thl = at.thl;
        let payload = tcp.len() - thl;
        let pseudo = fold(at.pseudo(ip, tcp.len()));
        tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
        let key = ConnKey {
            peer: at.dst(ip),
            peer_port: be16(&tcp[2..4]),
            port: be16(&tcp[0..2]),
        };
        let mss = self.sent(&key, tcp, thl, payload, now);
        // The peer's MSS counts no options (RFC 6691); the segments must also fit the wire.
        let wire = self.room(at.version);
        let limit = mss.map_or(wire, |m| usize::from(m).min(wire));
        let seg = limit.saturating_sub(thl - 20).max(1);
        head[0] = VNET_F_NEEDS_CSUM;
        if payload > seg && !at.extended {
            head[1] = if at.version == IpVersion::Ipv4 {
                VNET_GSO_TCPV4
            } else {
                VNET_GSO_TCPV6
            };
            head[2..4].copy_from_slice(&((14 + at.ip_len + thl) as u16).to_ne_bytes());
            head[4..6].copy_from_slice(&(seg as u16).to_ne_bytes());
        }
        head[6..8].copy_from_slice(&((14 + at.ip_len) as u16).to_ne_bytes());
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

/// Where the TCP segment of an Ethernet frame lies.
#[derive(Debug, Clone, Copy)]
struct TcpAt {
    version: IpVersion,
    /// The bytes before the TCP header, from the IP header's start: the IPv4 header (IHL), or
    /// the fixed IPv6 header and any extension headers.
    ip_len: usize,
    /// An IPv6 packet with extension headers (only [`tcp_in`]'s `extended` finds one).
    extended: bool,
    /// The TCP header length.
    thl: usize,
    /// The IP packet's length: the IPv4 total length, or 40 + the IPv6 payload length.
    total: usize,
}

impl TcpAt {
    /// The offset of the source address in the IP header, and the length of an address.
    fn addr_at(&self) -> (usize, usize) {
        if self.version == IpVersion::Ipv4 {
            (12, 4)
        } else {
            (8, 16)
        }
    }

    /// The address in `b` (4 or 16 bytes, as [`TcpAt::addr_at`] says).
    fn addr(&self, b: &[u8]) -> IpAddress {
        #[cfg(feature = "ipv6")]
        if self.version != IpVersion::Ipv4 {
            let mut a = [0; 16];
            a.copy_from_slice(b);
            return IpAddress::Ipv6(Ipv6Address::from(a));
        }
        IpAddress::Ipv4(Ipv4Address::new(b[0], b[1], b[2], b[3]))
    }

    /// The source address of the IP header `ip`.
    fn src(&self, ip: &[u8]) -> IpAddress {
        let (at, n) = self.addr_at();
        self.addr(&ip[at..at + n])
    }

    /// The destination address of the IP header `ip` (the final one: no routing header).
    fn dst(&self, ip: &[u8]) -> IpAddress {
        let (at, n) = self.addr_at();
        self.addr(&ip[at + n..at + 2 * n])
    }

    /// The unfolded one's-complement sum of the TCP pseudo-header (addresses from the IP
    /// header `ip`) of a segment of `len` bytes: the two addresses, protocol (next header) 6
    /// and the TCP length (16 bits over IPv4, 32 over IPv6: the same sum).
    fn pseudo(&self, ip: &[u8], len: usize) -> u64 {
        let (at, n) = self.addr_at();
        sum16(&ip[at..at + 2 * n], 6 + len as u64)
    }

    /// The sum of the pseudo-header and the segment `tcp`: folds to 0xffff when the checksum
    /// field is right.
    fn tcp_sum(&self, ip: &[u8], tcp: &[u8]) -> u64 {
        sum16(tcp, self.pseudo(ip, tcp.len()))
    }
}

/// The TCP segment in an Ethernet frame, or None when the frame is not a TCP segment with
/// sane lengths in an unfragmented IPv4 packet or (feature `ipv6`) an IPv6 packet whose next
/// header is TCP. With `extended`, the TCP header of an IPv6 packet may also follow
/// hop-by-hop and destination options headers.
#[cfg_attr(not(feature = "ipv6"), allow(unused_variables))]
fn tcp_in(frame: &[u8], extended: bool) -> Option<TcpAt> {
    let ip = frame.get(14..)?;
    let (version, ip_len, total) = match frame.get(12..14)? {
        [0x08, 0x00] if ip.len() >= 20 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(&ip[2..4]));
            let fragmented = be16(&ip[6..8]) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragmented || total > ip.len() {
                return None;
            }
            (IpVersion::Ipv4, ihl, total)
        }
        #[cfg(feature = "ipv6")]
        [0x86, 0xdd] if ip.len() >= 40 => {
            let total = 40 + usize::from(be16(&ip[4..6]));
            if ip[0] >> 4 != 6 || total > ip.len() {
                return None;
            }
            let (mut next, mut len) = (ip[6], 40);
            while next != 6 {
                // Hop-by-hop options (0) and destination options (60): 8 bytes a unit.
                if !extended || !matches!(next, 0 | 60) || len + 2 > total {
                    return None;
                }
                next = ip[len];
                len += (usize::from(ip[len + 1]) + 1) * 8;
            }
            (IpVersion::Ipv6, len, total)
        }
        _ => return None,
    };
    if total < ip_len + 20 {
        return None;
    }
    let thl = usize::from(ip[ip_len + 12] >> 4) * 4;
    (thl >= 20 && ip_len + thl <= total).then_some(TcpAt {
        version,
        ip_len,
        extended: version != IpVersion::Ipv4 && ip_len > 40,
        thl,
        total,
    })
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
    /// Parses `tcp` from `src` to `dst` (the checksums already verified) as smoltcp does; None
    /// when smoltcp would drop it as malformed (zero port, SYN with FIN, a bad option...).
    fn parse(src: &IpAddress, dst: &IpAddress, tcp: &[u8]) -> Option<Seg> {
        let packet = TcpPacket::new_checked(tcp).ok()?;
        let caps = ChecksumCapabilities::ignored();
        let repr = TcpRepr::parse(&packet, src, dst, &caps).ok()?;
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

    /// The two families; every test of the table's rules runs over each.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fam {
        V4,
        #[cfg(feature = "ipv6")]
        V6,
    }

    const FAMS: &[Fam] = &[
        Fam::V4,
        #[cfg(feature = "ipv6")]
        Fam::V6,
    ];

    const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

    impl Fam {
        fn peer(self) -> IpAddress {
            match self {
                Fam::V4 => IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)),
                // On fd69::/64, with words above 0x8000: the pseudo-header sum carries.
                #[cfg(feature = "ipv6")]
                Fam::V6 => IpAddress::Ipv6(Ipv6Address::new(
                    0xfd69, 0, 0, 0, 0xa1b2, 0xffff, 0x8001, 0x100,
                )),
            }
        }

        fn us(self) -> IpAddress {
            match self {
                Fam::V4 => IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)),
                #[cfg(feature = "ipv6")]
                Fam::V6 => IpAddress::Ipv6(Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 1)),
            }
        }

        fn version(self) -> IpVersion {
            match self {
                Fam::V4 => IpVersion::Ipv4,
                #[cfg(feature = "ipv6")]
                Fam::V6 => IpVersion::Ipv6,
            }
        }

        /// The offset of the TCP header in a frame built by [`frame`].
        fn tcp(self) -> usize {
            match self {
                Fam::V4 => 34,
                #[cfg(feature = "ipv6")]
                Fam::V6 => 54,
            }
        }

        /// The IP and TCP headers without options.
        fn headers(self) -> usize {
            self.tcp() - 14 + 20
        }

        /// What a SYN's MSS option is raised to.
        fn raised(self) -> u16 {
            match self {
                Fam::V4 => 65481,
                #[cfg(feature = "ipv6")]
                Fam::V6 => 65461,
            }
        }

        /// The virtio GSO type of a large segment.
        fn gso(self) -> u8 {
            match self {
                Fam::V4 => 1,
                #[cfg(feature = "ipv6")]
                Fam::V6 => 4,
            }
        }

        /// The MSS kept for a SYN without the option (RFC 9293).
        fn default_mss(self) -> u16 {
            match self {
                Fam::V4 => 536,
                #[cfg(feature = "ipv6")]
                Fam::V6 => 1220,
            }
        }

        /// From the peer's `port` to our port 80.
        fn inbound(self, port: u16, flags: u8, seq: u32, ack: u32, options: &[u8]) -> Vec<u8> {
            let (src, dst) = ((self.peer(), port), (self.us(), 80));
            frame(src, dst, flags, seq, ack, 64240, options, &[])
        }

        /// From our port 80 to the peer's `port`.
        fn outbound(self, port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
            let (src, dst) = ((self.us(), 80), (self.peer(), port));
            frame(src, dst, flags, seq, ack, 4096, &[], payload)
        }

        fn syn(self, port: u16, mss: u16) -> Vec<u8> {
            let [a, b] = mss.to_be_bytes();
            self.inbound(port, SYN, 100, 0, &[2, 4, a, b])
        }

        fn key(self, port: u16) -> ConnKey {
            ConnKey {
                peer: self.peer(),
                peer_port: port,
                port: 80,
            }
        }
    }

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

    fn octets(a: IpAddress) -> Vec<u8> {
        match a {
            IpAddress::Ipv4(a) => a.octets().to_vec(),
            #[cfg(feature = "ipv6")]
            IpAddress::Ipv6(a) => a.octets().to_vec(),
        }
    }

    /// An Ethernet frame holding a TCP segment from `src` to `dst` over IPv4 (valid IP header
    /// checksum) or IPv6 (TCP right after the fixed header), as the addresses are, with a
    /// valid TCP checksum.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        src: (IpAddress, u16),
        dst: (IpAddress, u16),
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        frame_ext(src, dst, &[], flags, seq, ack, window, options, payload)
    }

    /// [`frame`] with IPv6 extension headers `ext` between the IPv6 header and TCP, each
    /// `(its type, its bytes)`: a multiple of 8 bytes whose first two (next header, length)
    /// are filled in.
    #[allow(clippy::too_many_arguments)]
    fn frame_ext(
        src: (IpAddress, u16),
        dst: (IpAddress, u16),
        ext: &[(u8, Vec<u8>)],
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let (s, d) = (octets(src.0), octets(dst.0));
        assert_eq!(s.len(), d.len());
        let thl = 20 + options.len();
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
        // The pseudo-header: both addresses, 6, and the TCP length (16 or 32 bits: one sum).
        let mut addrs = s.clone();
        addrs.extend_from_slice(&d);
        let c = !(ones_sum(&tcp, ones_sum(&addrs, 6 + tcp.len() as u32)) as u16);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if s.len() == 4 {
            assert!(ext.is_empty());
            let total = 20 + tcp.len();
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            ip.extend_from_slice(&addrs);
            let c = !(ones_sum(&ip, 0) as u16);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip);
        } else {
            let mut exts = Vec::new();
            for (i, (_, bytes)) in ext.iter().enumerate() {
                assert_eq!(bytes.len() % 8, 0);
                exts.push(ext.get(i + 1).map_or(6, |e| e.0));
                exts.push((bytes.len() / 8 - 1) as u8);
                exts.extend_from_slice(&bytes[2..]);
            }
            let first = ext.first().map_or(6, |e| e.0);
            let len = (exts.len() + tcp.len()) as u16;
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[first, 64]);
            f.extend_from_slice(&addrs);
            f.extend_from_slice(&exts);
        }
        f.extend_from_slice(&tcp);
        f
    }

    /// The addresses and TCP segment of a frame (IPv4, or IPv6 past hop-by-hop and
    /// destination options headers), and whether its IPv4 header checksum verifies.
    fn parts(f: &[u8]) -> (IpAddress, IpAddress, &[u8], bool) {
        if f[12..14] == [0x08, 0x00] {
            let ip = &f[14..34];
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let addr = |b: &[u8]| IpAddress::Ipv4(Ipv4Address::new(b[0], b[1], b[2], b[3]));
            let (s, d) = (addr(&ip[12..16]), addr(&ip[16..20]));
            return (s, d, &f[34..14 + total], ones_sum(ip, 0) == 0xffff);
        }
        #[cfg(feature = "ipv6")]
        if f[12..14] == [0x86, 0xdd] {
            let ip = &f[14..];
            let end = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let addr =
                |b: &[u8]| IpAddress::Ipv6(Ipv6Address::from(<[u8; 16]>::try_from(b).unwrap()));
            let (mut next, mut at) = (ip[6], 40);
            while next != 6 {
                assert!(matches!(next, 0 | 60), "next header {next}");
                next = ip[at];
                at += (usize::from(ip[at + 1]) + 1) * 8;
            }
            return (addr(&ip[8..24]), addr(&ip[24..40]), &ip[at..end], true);
        }
        panic!("not an IP frame");
    }

    /// The checksums of `f` (IPv4 header and TCP, or TCP over IPv6) verify, by the test's own
    /// sums and by smoltcp's.
    fn checksums_ok(f: &[u8]) -> bool {
        let (src, dst, tcp, ip_ok) = parts(f);
        let mut addrs = octets(src);
        addrs.extend_from_slice(&octets(dst));
        let ours = ip_ok && ones_sum(tcp, ones_sum(&addrs, 6 + tcp.len() as u32)) == 0xffff;
        let smoltcp = ip_ok
            && TcpPacket::new_checked(tcp)
                .unwrap()
                .verify_checksum(&src, &dst);
        assert_eq!(ours, smoltcp, "the two checksum computations disagree");
        ours
    }

    /// Finishes the TCP checksum of a frame sent with `NEEDS_CSUM` (the field holding the
    /// pseudo-header sum, `csum_start` from the virtio-net header), as the kernel does.
    fn finish_checksum(f: &mut [u8], head: &[u8; VNET_HDR]) {
        assert_eq!(head[0], VNET_F_NEEDS_CSUM);
        let start = usize::from(u16::from_ne_bytes([head[6], head[7]]));
        let at = start + usize::from(u16::from_ne_bytes([head[8], head[9]]));
        let partial = u32::from(u16::from_be_bytes([f[at], f[at + 1]]));
        f[at..at + 2].fill(0);
        let full = !(ones_sum(&f[start..], partial) as u16);
        f[at..at + 2].copy_from_slice(&full.to_be_bytes());
    }

    /// gso_size of a virtio-net header (0 without GSO).
    fn gso_size(head: &[u8; VNET_HDR]) -> u16 {
        if head[1] == VNET_GSO_NONE {
            0
        } else {
            u16::from_ne_bytes([head[4], head[5]])
        }
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n as i64)
    }

    #[test]
    fn both_families_are_tested() {
        assert_eq!(FAMS.len(), if cfg!(feature = "ipv6") { 2 } else { 1 });
    }

    #[test]
    fn a_syn_mss_is_raised_with_a_valid_checksum_and_remembered() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let opts = [1, 1, 4, 2, 2, 4, 0x05, 0xb4]; // NOP NOP SACK-permitted MSS 1460
            let mut f = fam.inbound(4000, SYN, 100, 0, &opts);
            assert!(checksums_ok(&f));
            let got = t.receive(&mut f, ms(0));
            assert_eq!(
                got,
                Received::Syn {
                    announced: Some(1460),
                    raised: true,
                    learned: true
                },
                "{fam:?}"
            );
            let mss = fam.tcp() + 24;
            assert_eq!(&f[mss..mss + 2], &[2, 4], "{fam:?}");
            assert_eq!(&f[mss + 2..mss + 4], &fam.raised().to_be_bytes(), "{fam:?}");
            assert_eq!(fam.raised(), raised_mss(fam.version()));
            assert!(checksums_ok(&f), "{fam:?}: checksum after the rewrite");
            assert_eq!(t.mss(&fam.key(4000)), Some(1460), "{fam:?}");
        }
    }

    #[test]
    fn an_mss_option_at_an_odd_offset_gets_a_valid_checksum() {
        // NOP, MSS (value at offset 23), and NOP NOP NOP MSS (value at 25); each with values
        // whose incremental update needs a carry, and a SYN with an odd-length payload.
        for &fam in FAMS {
            for layout in [[1, 2, 4, 0, 0, 1, 1, 0], [1, 1, 1, 2, 4, 0, 0, 0]] {
                let at = layout.iter().position(|&b| b == 2).unwrap();
                for real in [0u16, 1, 536, 1400, 1460, 8960, 0x8001, 0xff00] {
                    for payload in [&b""[..], b"abc"] {
                        let mut opts = layout;
                        opts[at + 2..at + 4].copy_from_slice(&real.to_be_bytes());
                        let (src, dst) = ((fam.peer(), 4000), (fam.us(), 80));
                        let mut f = frame(src, dst, SYN, 7, 0, 1000, &opts, payload);
                        assert!(checksums_ok(&f));
                        let mut t = MssTable::new(1500);
                        assert!(matches!(
                            t.receive(&mut f, ms(0)),
                            Received::Syn { raised: true, .. }
                        ));
                        let v = fam.tcp() + 20 + at + 2;
                        assert_eq!(&f[v..v + 2], &fam.raised().to_be_bytes());
                        assert!(
                            checksums_ok(&f),
                            "{fam:?}, layout {layout:?}, mss {real}: bad checksum"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_mss_of_0_or_1_is_kept_as_the_floor() {
        for &fam in FAMS {
            let v = fam.version();
            let mut t = MssTable::new(1500);
            assert_eq!(t.floor(v), 536);
            for (port, real) in [(4000, 0), (4001, 1), (4002, 535)] {
                t.receive(&mut fam.syn(port, real), ms(0));
                assert_eq!(t.mss(&fam.key(port)), Some(536), "{fam:?}: MSS {real}");
                let head = t.transmit(&mut fam.outbound(port, ACK, 1, 101, &[7; 60000]), ms(1));
                assert_eq!(head[1], fam.gso(), "{fam:?}: MSS {real}");
                assert_eq!(gso_size(&head), 536, "{fam:?}: MSS {real}");
            }
            // 536 is kept over IPv6 too (a clamped route's advmss), though under 1220.
            t.receive(&mut fam.syn(4004, 536), ms(0));
            assert_eq!(t.mss(&fam.key(4004)), Some(536), "{fam:?}");
            // A SYN without the option: RFC 9293's default, 536 or 1220.
            t.receive(&mut fam.inbound(4003, SYN, 100, 0, &[]), ms(0));
            assert_eq!(t.mss(&fam.key(4003)), Some(fam.default_mss()), "{fam:?}");
            // A tap whose MTU holds less: MTU - 40 or MTU - 60.
            let mut small = MssTable::new(300);
            let room = (300 - fam.headers()) as u16;
            assert_eq!(small.floor(v), room, "{fam:?}");
            small.receive(&mut fam.syn(4000, 1), ms(0));
            assert_eq!(small.mss(&fam.key(4000)), Some(room), "{fam:?}");
            let head = small.transmit(&mut fam.outbound(4000, ACK, 1, 101, &[7; 60000]), ms(1));
            assert_eq!(gso_size(&head), room, "{fam:?}");
            // RFC 8200's least link MTU still carries 536.
            assert_eq!(MssTable::new(1280).floor(v), 536);
        }
    }

    #[test]
    fn a_syn_with_a_bad_checksum_is_neither_learned_nor_changed() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let good = fam.syn(4000, 1400);
            let tcp = fam.tcp();
            let mut bad_tcp = good.clone();
            bad_tcp[tcp + 17] ^= 0x40; // the TCP checksum
            let mut bad_byte = good.clone();
            bad_byte[tcp + 14] ^= 0x01; // the window: the sum no longer matches
            let mut bad_addr = good.clone();
            bad_addr[tcp - 1] ^= 0x80; // the destination address: the pseudo-header's
            let mut bad = vec![bad_tcp, bad_byte, bad_addr];
            if fam == Fam::V4 {
                let mut bad_ip = good.clone();
                bad_ip[14 + 11] ^= 0x01; // the IPv4 header checksum
                bad.push(bad_ip);
            }
            for f in &mut bad {
                assert!(!checksums_ok(f));
                let before = f.clone();
                assert_eq!(t.receive(f, ms(0)), Received::BadChecksum, "{fam:?}");
                assert_eq!(*f, before, "{fam:?}: a bad frame is left as it is");
            }
            assert!(t.is_empty(), "{fam:?}");
            assert_eq!(t.mss(&fam.key(4000)), None);
            // The same SYN with its checksums right is learned.
            t.receive(&mut good.clone(), ms(0));
            assert_eq!(t.mss(&fam.key(4000)), Some(1400), "{fam:?}");
        }
    }

    /// A connection on the peer's `port` through the handshake: the peer's ISN is 100, ours 1000.
    fn handshake(t: &mut MssTable, fam: Fam, port: u16) {
        t.receive(&mut fam.syn(port, 1400), ms(0));
        t.transmit(&mut fam.outbound(port, SYN | ACK, 1000, 101, &[]), ms(1));
        t.receive(&mut fam.inbound(port, ACK, 101, 1001, &[]), ms(2));
        assert!(t.entries[&fam.key(port)].established);
    }

    #[test]
    fn an_entry_goes_at_a_rst_either_way() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            // The peer's RST, in the window we advertised.
            handshake(&mut t, fam, 4000);
            t.receive(&mut fam.inbound(4000, RST | ACK, 101, 1001, &[]), ms(3));
            assert_eq!(t.mss(&fam.key(4000)), None, "{fam:?}");
            // Ours.
            handshake(&mut t, fam, 4001);
            t.transmit(&mut fam.outbound(4001, RST | ACK, 1001, 101, &[]), ms(3));
            assert_eq!(t.mss(&fam.key(4001)), None, "{fam:?}");
            // A RST refusing our SYN-ACK before any ACK.
            t.receive(&mut fam.syn(4002, 1400), ms(0));
            t.transmit(&mut fam.outbound(4002, SYN | ACK, 1000, 101, &[]), ms(1));
            t.receive(&mut fam.inbound(4002, RST, 101, 0, &[]), ms(2));
            assert_eq!(t.mss(&fam.key(4002)), None, "{fam:?}");
            // A blind RST far outside the window does not end a connection (smoltcp ignores it).
            handshake(&mut t, fam, 4003);
            t.receive(&mut fam.inbound(4003, RST, 0x8000_0000, 0, &[]), ms(3));
            assert_eq!(t.mss(&fam.key(4003)), Some(1400), "{fam:?}");
            assert_eq!(t.len(), 1);
        }
    }

    #[test]
    fn an_entry_goes_after_both_fins() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let k = |port| fam.key(port);
            // We close first: our FIN after 10 bytes, the peer's FIN-ACK acknowledges it.
            handshake(&mut t, fam, 4000);
            t.transmit(
                &mut fam.outbound(4000, FIN | ACK, 1001, 101, &[1; 10]),
                ms(3),
            );
            assert_eq!(t.mss(&k(4000)), Some(1400), "{fam:?}: only our FIN");
            t.receive(&mut fam.inbound(4000, FIN | ACK, 101, 1012, &[]), ms(4));
            assert_eq!(t.mss(&k(4000)), None, "{fam:?}");
            // The peer closes first; then ours, then its ACK of ours.
            handshake(&mut t, fam, 4001);
            t.receive(&mut fam.inbound(4001, FIN | ACK, 101, 1001, &[]), ms(3));
            assert_eq!(t.mss(&k(4001)), Some(1400), "{fam:?}: only the peer's FIN");
            t.transmit(&mut fam.outbound(4001, FIN | ACK, 1001, 102, &[]), ms(4));
            assert_eq!(
                t.mss(&k(4001)),
                Some(1400),
                "{fam:?}: our FIN not acknowledged"
            );
            t.receive(&mut fam.inbound(4001, ACK, 102, 1002, &[]), ms(5));
            assert_eq!(t.mss(&k(4001)), None, "{fam:?}");
            assert!(t.is_empty());
        }
    }

    #[test]
    fn a_spoofed_syn_cannot_overwrite_a_live_connection() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            handshake(&mut t, fam, 4000);
            let mut spoofed = fam.syn(4000, 1);
            assert_eq!(
                t.receive(&mut spoofed, ms(3)),
                Received::Syn {
                    announced: Some(1),
                    raised: true,
                    learned: false
                },
                "{fam:?}"
            );
            assert!(checksums_ok(&spoofed));
            assert_eq!(t.mss(&fam.key(4000)), Some(1400), "{fam:?}");
            let head = t.transmit(&mut fam.outbound(4000, ACK, 1001, 101, &[7; 60000]), ms(4));
            assert_eq!(gso_size(&head), 1400, "{fam:?}");
            // Before the handshake completes too.
            t.receive(&mut fam.syn(4001, 1300), ms(0));
            t.receive(&mut fam.syn(4001, 600), ms(1));
            assert_eq!(t.mss(&fam.key(4001)), Some(1300), "{fam:?}");
            // Once both FINs went, a new connection on the same ports learns its own.
            t.transmit(&mut fam.outbound(4000, FIN | ACK, 1001, 101, &[]), ms(5));
            t.receive(&mut fam.inbound(4000, FIN | ACK, 101, 1001, &[]), ms(6));
            t.receive(&mut fam.syn(4000, 1200), ms(7));
            assert_eq!(t.mss(&fam.key(4000)), Some(1200), "{fam:?}");
        }
    }

    #[cfg(feature = "ipv6")]
    #[test]
    fn the_families_are_separate_connections() {
        // The same ports from an IPv4 and an IPv6 peer: two entries; ending one keeps the other.
        let mut t = MssTable::new(1500);
        handshake(&mut t, Fam::V4, 4000);
        t.receive(&mut Fam::V6.syn(4000, 1220), ms(3));
        assert_eq!(t.len(), 2);
        assert_eq!(t.mss(&Fam::V4.key(4000)), Some(1400));
        assert_eq!(t.mss(&Fam::V6.key(4000)), Some(1220));
        t.transmit(&mut Fam::V6.outbound(4000, RST, 1001, 0, &[]), ms(4));
        assert_eq!(t.mss(&Fam::V6.key(4000)), None);
        assert_eq!(t.mss(&Fam::V4.key(4000)), Some(1400));
    }

    #[test]
    fn lru_eviction_keeps_a_recently_used_connection() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            assert_eq!(t.capacity(), MSS_TABLE);
            let n = MSS_TABLE as u16;
            t.receive(&mut fam.syn(1, 1400), ms(0));
            for port in 2..=n {
                t.receive(&mut fam.syn(port, 1300), ms(u64::from(port)));
            }
            assert_eq!(t.len(), MSS_TABLE);
            // Port 1's connection sends; the others stay quiet.
            t.transmit(&mut fam.outbound(1, ACK, 1001, 101, &[1; 100]), ms(10_000));
            for port in n + 1..n + 600 {
                t.receive(&mut fam.syn(port, 1200), ms(20_000 + u64::from(port)));
                assert!(t.len() <= MSS_TABLE);
            }
            let k = |port| fam.key(port);
            assert_eq!(
                t.mss(&k(1)),
                Some(1400),
                "{fam:?}: the recently used connection"
            );
            assert_eq!(t.mss(&k(2)), None, "{fam:?}: the least recently used went");
            assert_eq!(t.mss(&k(n + 599)), Some(1200), "{fam:?}");
            assert!(t.len() > MSS_TABLE - MSS_TABLE / 16 - 1, "{}", t.len());
        }
    }

    #[test]
    fn eviction_takes_unfinished_handshakes_before_established_connections() {
        for &fam in FAMS {
            let mut t = MssTable::with_capacity(1500, 4);
            handshake(&mut t, fam, 1); // established, used at 1 ms
            for port in 2..=4 {
                t.receive(&mut fam.syn(port, 1300), ms(100 + u64::from(port)));
            }
            t.receive(&mut fam.syn(5, 1300), ms(200));
            assert_eq!(t.len(), 4);
            assert_eq!(t.mss(&fam.key(1)), Some(1400), "{fam:?}");
            assert_eq!(t.mss(&fam.key(2)), None, "{fam:?}");
        }
    }

    #[test]
    fn our_own_syn_learns_from_the_syn_ack_that_acknowledges_it() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let (server, us) = ((fam.peer(), 443), (fam.us(), 50000));
            let syn_ack = |ack, mss: u16| {
                let [a, b] = mss.to_be_bytes();
                frame(server, us, SYN | ACK, 9000, ack, 1000, &[2, 4, a, b], &[])
            };
            let k = ConnKey {
                peer: fam.peer(),
                peer_port: 443,
                port: 50000,
            };
            t.transmit(&mut frame(us, server, SYN, 5000, 0, 1000, &[], &[]), ms(0));
            assert_eq!(t.mss(&k), None, "{fam:?}");
            t.receive(&mut syn_ack(7, 1), ms(1)); // not for our SYN
            assert_eq!(t.mss(&k), None, "{fam:?}");
            t.receive(&mut syn_ack(5001, 1380), ms(2));
            assert_eq!(t.mss(&k), Some(1380), "{fam:?}");
        }
    }

    #[test]
    fn segments_other_than_syn_are_left_alone() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let (peer, us) = ((fam.peer(), 4000), (fam.us(), 80));
            let mut ack = frame(peer, us, ACK, 1, 1, 100, &MSS_1460, b"data");
            let before = ack.clone();
            assert_eq!(t.receive(&mut ack, ms(0)), Received::Segment, "{fam:?}");
            assert_eq!(ack, before);
            let mut no_mss = fam.inbound(4000, SYN, 1, 0, &[1, 1, 1, 0]);
            let before = no_mss.clone();
            assert!(matches!(
                t.receive(&mut no_mss, ms(0)),
                Received::Syn { raised: false, .. }
            ));
            assert_eq!(no_mss, before, "{fam:?}");
            // Malformed options, SYN with FIN: smoltcp drops them, the table too.
            let mut t = MssTable::new(1500);
            let mut bad_len = fam.inbound(4000, SYN, 1, 0, &[2, 9, 0, 0]);
            let before = bad_len.clone();
            assert_eq!(t.receive(&mut bad_len, ms(0)), Received::Other, "{fam:?}");
            assert_eq!(bad_len, before);
            let mut syn_fin = fam.inbound(4000, SYN | FIN, 1, 0, &MSS_1460);
            assert_eq!(t.receive(&mut syn_fin, ms(0)), Received::Other, "{fam:?}");
            // Lengths that do not hold a TCP header, or promise more than the frame has.
            let len_at = if fam == Fam::V4 { 16 } else { 18 };
            for len in [0u16, 19, 2000] {
                let mut f = fam.syn(4000, 1400);
                f[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
                let before = f.clone();
                assert_eq!(t.receive(&mut f, ms(0)), Received::Other, "{fam:?} {len}");
                assert_eq!(f, before);
            }
            assert!(t.is_empty());
        }
        let mut t = MssTable::new(1500);
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(t.receive(&mut arp, ms(0)), Received::Other);
        assert_eq!(arp[14..], [0u8; 46]);
    }

    #[test]
    fn a_large_segment_gets_gso_with_the_peers_mss_and_a_pseudo_header_sum() {
        for &fam in FAMS {
            let mut t = MssTable::new(1500);
            let tcp = fam.tcp();
            t.receive(&mut fam.syn(4000, 1400), ms(0));
            let mut f = fam.outbound(4000, ACK | 0x08, 1, 101, &[7u8; 5000]);
            let head = t.transmit(&mut f, ms(1));
            assert_eq!(head[0], VNET_F_NEEDS_CSUM, "{fam:?}");
            assert_eq!(head[1], fam.gso(), "{fam:?}");
            let field = |i: usize| usize::from(u16::from_ne_bytes([head[i], head[i + 1]]));
            assert_eq!(field(2), tcp + 20, "{fam:?}: header length");
            assert_eq!(field(4), 1400, "{fam:?}: gso_size");
            assert_eq!(field(6), tcp, "{fam:?}: csum_start");
            assert_eq!(field(8), 16, "{fam:?}: csum_offset");
            // The checksum field holds the pseudo-header sum, by the test's own arithmetic.
            let (src, dst, seg, _) = parts(&f);
            let mut addrs = octets(src);
            addrs.extend_from_slice(&octets(dst));
            let want = ones_sum(&addrs, 6 + seg.len() as u32) as u16;
            assert_eq!(&f[tcp + 16..tcp + 18], &want.to_be_bytes(), "{fam:?}");
            // The kernel finishes the sum: the segment summed from the partial value verifies.
            assert!(!checksums_ok(&f));
            finish_checksum(&mut f, &head);
            assert!(checksums_ok(&f), "{fam:?}");

            // Options count against the MSS (RFC 6691): 12 bytes of them, 1388 a segment.
            let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
            let (us, peer) = ((fam.us(), 80), (fam.peer(), 4000));
            let mut ts = frame(us, peer, ACK, 1, 101, 1, &opts, &[7u8; 5000]);
            let head = t.transmit(&mut ts, ms(1));
            assert_eq!(gso_size(&head), 1388, "{fam:?}");
            assert_eq!(field_at(&head, 2), tcp + 32, "{fam:?}");

            // An unknown peer: the tap's MTU decides; a small segment: checksum only.
            let mut other = frame(us, (fam.peer(), 4999), ACK, 1, 1, 1, &[], &[7u8; 5000]);
            let head = MssTable::new(3000).transmit(&mut other, ms(1));
            assert_eq!(head[1], fam.gso(), "{fam:?}");
            assert_eq!(
                usize::from(gso_size(&head)),
                3000 - fam.headers(),
                "{fam:?}"
            );
            let head = MssTable::new(9000).transmit(&mut other, ms(1));
            assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
            assert_eq!(field_at(&head, 6), tcp, "{fam:?}: csum_start");
            let mut small = fam.outbound(4000, ACK, 1, 101, &[1u8; 1400]);
            let head = t.transmit(&mut small, ms(1));
            assert_eq!(
                (head[0], head[1]),
                (VNET_F_NEEDS_CSUM, VNET_GSO_NONE),
                "{fam:?}"
            );
            finish_checksum(&mut small, &head);
            assert!(checksums_ok(&small), "{fam:?}");
        }
        let mut t = MssTable::new(1500);
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(t.transmit(&mut arp, ms(1)), [0u8; VNET_HDR]);
    }

    fn field_at(head: &[u8; VNET_HDR], i: usize) -> usize {
        usize::from(u16::from_ne_bytes([head[i], head[i + 1]]))
    }

    #[cfg(feature = "ipv6")]
    #[test]
    fn ipv6_extension_headers_pass_unchanged_and_are_sent_without_gso() {
        let fam = Fam::V6;
        let (peer, us) = ((fam.peer(), 4000), (fam.us(), 80));
        // Hop-by-hop options (PadN), then destination options (Pad1s, then PadN), then TCP.
        let hbh = (0, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let dest = (60, vec![0, 0, 0, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let ext = [hbh.clone(), dest];
        let mss = [2, 4, 0x05, 0xb4];
        let mut syn = frame_ext(peer, us, &ext, SYN, 100, 0, 1000, &mss, &[]);
        assert_eq!(syn[20], 0);
        assert!(checksums_ok(&syn));
        let mut t = MssTable::new(1500);
        let before = syn.clone();
        assert_eq!(t.receive(&mut syn, ms(0)), Received::Other);
        assert_eq!(syn, before);
        assert!(t.is_empty());

        // Sent: NEEDS_CSUM at the TCP header past both, never GSO; the sum finishes right.
        let mut big = frame_ext(us, peer, &ext, ACK, 1, 101, 4096, &[], &[9u8; 5000]);
        let head = t.transmit(&mut big, ms(1));
        assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
        assert_eq!(field_at(&head, 6), 54 + 8 + 16);
        assert_eq!(field_at(&head, 8), 16);
        assert!(!checksums_ok(&big));
        finish_checksum(&mut big, &head);
        assert!(checksums_ok(&big));

        // A routing or fragment header, or an options header ending past the packet: no
        // offload, the frame unchanged either way.
        for (kind, length) in [(43, None), (44, None), (0, Some(200))] {
            let mut f = frame_ext(
                us,
                peer,
                &[(kind, vec![0; 8])],
                ACK,
                1,
                101,
                4096,
                &[],
                &[9; 100],
            );
            if let Some(n) = length {
                f[55] = n; // hop-by-hop options of (n + 1) * 8 bytes
            }
            let before = f.clone();
            assert_eq!(t.transmit(&mut f, ms(1)), [0u8; VNET_HDR], "{kind}");
            assert_eq!(f, before);
            assert_eq!(t.receive(&mut f, ms(1)), Received::Other);
        }
    }

    /// smoltcp itself behind the table, as `TapDevice` runs it with offload: the largest
    /// segment it builds fills [`OFFLOAD_MTU`] exactly (so it fits the device's buffer) and
    /// gets GSO with the peer's MSS.
    mod with_smoltcp {
        use std::collections::VecDeque;

        use smoltcp::iface::{Config, Interface, SocketSet};
        use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
        use smoltcp::socket::tcp;
        use smoltcp::wire::{
            ArpOperation, ArpPacket, ArpRepr, EthernetAddress, HardwareAddress, IpCidr,
        };
        #[cfg(feature = "ipv6")]
        use smoltcp::wire::{Icmpv6Packet, Icmpv6Repr, NdiscRepr, RawHardwareAddress};

        use super::*;

        const US_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
        const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

        /// Frames through an [`MssTable`], as the tap passes them.
        struct Wire {
            table: MssTable,
            now: Instant,
            rx: VecDeque<Vec<u8>>,
            tx: Vec<([u8; VNET_HDR], Vec<u8>)>,
        }

        impl Wire {
            fn inject(&mut self, mut frame: Vec<u8>) {
                self.table.receive(&mut frame, self.now);
                self.rx.push_back(frame);
            }
        }

        struct Rx(Vec<u8>);
        struct Tx<'a>(
            &'a mut MssTable,
            Instant,
            &'a mut Vec<([u8; VNET_HDR], Vec<u8>)>,
        );

        impl phy::RxToken for Rx {
            fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
                f(&self.0)
            }
        }

        impl phy::TxToken for Tx<'_> {
            fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
                // The device's buffer holds OFFLOAD_MTU + 14 bytes of frame.
                assert!(len <= OFFLOAD_MTU + 14, "a frame of {len} bytes");
                let mut frame = vec![0; len];
                let r = f(&mut frame);
                let head = self.0.transmit(&mut frame, self.1);
                self.2.push((head, frame));
                r
            }
        }

        impl Device for Wire {
            type RxToken<'a> = Rx;
            type TxToken<'a> = Tx<'a>;

            fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
                let f = self.rx.pop_front()?;
                Some((Rx(f), Tx(&mut self.table, self.now, &mut self.tx)))
            }

            fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
                Some(Tx(&mut self.table, self.now, &mut self.tx))
            }

            fn capabilities(&self) -> DeviceCapabilities {
                let mut caps = DeviceCapabilities::default();
                caps.medium = Medium::Ethernet;
                caps.max_transmission_unit = OFFLOAD_MTU + 14;
                caps.checksum.tcp = Checksum::Rx;
                caps
            }
        }

        /// A frame that puts the peer's MAC in smoltcp's neighbour cache: an ARP request, or a
        /// neighbour solicitation with the peer's link-layer address.
        fn neighbour(fam: Fam) -> Vec<u8> {
            let mut f = vec![0u8; 14];
            f[0..6].copy_from_slice(&US_MAC);
            f[6..12].copy_from_slice(&PEER_MAC);
            match (fam.peer(), fam.us()) {
                (IpAddress::Ipv4(peer), IpAddress::Ipv4(us)) => {
                    f[12..14].copy_from_slice(&[0x08, 0x06]);
                    let repr = ArpRepr::EthernetIpv4 {
                        operation: ArpOperation::Request,
                        source_hardware_addr: EthernetAddress(PEER_MAC),
                        source_protocol_addr: peer,
                        target_hardware_addr: EthernetAddress([0; 6]),
                        target_protocol_addr: us,
                    };
                    let mut arp = vec![0u8; repr.buffer_len()];
                    repr.emit(&mut ArpPacket::new_unchecked(&mut arp));
                    f.extend_from_slice(&arp);
                }
                #[cfg(feature = "ipv6")]
                (IpAddress::Ipv6(peer), IpAddress::Ipv6(us)) => {
                    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                        target_addr: us,
                        lladdr: Some(RawHardwareAddress::from(EthernetAddress(PEER_MAC))),
                    });
                    let mut icmp = vec![0u8; ns.buffer_len()];
                    ns.emit(
                        &peer,
                        &us,
                        &mut Icmpv6Packet::new_unchecked(&mut icmp[..]),
                        &ChecksumCapabilities::default(),
                    );
                    f[12..14].copy_from_slice(&[0x86, 0xdd]);
                    f.extend_from_slice(&[0x60, 0, 0, 0]);
                    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
                    f.extend_from_slice(&[58, 255]);
                    f.extend_from_slice(&peer.octets());
                    f.extend_from_slice(&us.octets());
                    f.extend_from_slice(&icmp);
                }
                #[allow(unreachable_patterns)]
                _ => unreachable!(),
            }
            f
        }

        #[test]
        fn the_largest_segment_smoltcp_builds_fits_and_gets_gso() {
            for &fam in FAMS {
                let mut wire = Wire {
                    table: MssTable::new(1500),
                    now: Instant::from_millis(1),
                    rx: VecDeque::new(),
                    tx: Vec::new(),
                };
                let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(US_MAC)));
                let now = wire.now;
                let mut iface = Interface::new(config, &mut wire, now);
                let prefix = if fam == Fam::V4 { 24 } else { 64 };
                iface.update_ip_addrs(|a| a.push(IpCidr::new(fam.us(), prefix)).unwrap());
                let mut sockets = SocketSet::new(vec![]);
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 65535]),
                    tcp::SocketBuffer::new(vec![0; 300_000]),
                );
                // Without Nagle the last, partial segment goes out too.
                socket.set_nagle_enabled(false);
                socket.listen(80).unwrap();
                let handle = sockets.add(socket);
                wire.inject(neighbour(fam));
                // The peer's SYN: MSS 1400, window scale 7.
                let (peer, us) = ((fam.peer(), 4000), (fam.us(), 80));
                let opts = [2, 4, 0x05, 0x78, 1, 3, 3, 7];
                wire.inject(frame(peer, us, SYN, 100, 0, 65535, &opts, &[]));
                iface.poll(wire.now, &mut wire, &mut sockets);
                // The SYN-ACK, after an ARP reply or neighbour advertisement (and an MLD report).
                let mut tcp: Vec<_> = std::mem::take(&mut wire.tx)
                    .into_iter()
                    .filter(|(_, f)| tcp_in(f, false).is_some())
                    .collect();
                assert_eq!(tcp.len(), 1, "{fam:?}");
                let (head, syn_ack) = tcp.pop().unwrap();
                assert_eq!(head[1], VNET_GSO_NONE);
                let t = fam.tcp();
                assert_eq!(syn_ack[t + 13], SYN | ACK, "{fam:?}");
                let isn = u32::from_be_bytes(syn_ack[t + 4..t + 8].try_into().unwrap());
                wire.inject(frame(peer, us, ACK, 101, isn + 1, 65535, &[], &[]));
                wire.now = Instant::from_millis(2);
                iface.poll(wire.now, &mut wire, &mut sockets);
                let data = vec![0x5a; 200_000];
                assert_eq!(
                    sockets.get_mut::<tcp::Socket>(handle).send_slice(&data),
                    Ok(200_000)
                );
                wire.now = Instant::from_millis(3);
                iface.poll(wire.now, &mut wire, &mut sockets);

                let largest = OFFLOAD_MTU - fam.headers();
                let mut sent = 0;
                for (head, mut f) in std::mem::take(&mut wire.tx) {
                    let payload = f.len() - t - 20;
                    assert!(payload <= largest, "{fam:?}: {payload}");
                    if sent == 0 {
                        // The first segment is as large as smoltcp may build: 14 + OFFLOAD_MTU.
                        assert_eq!(payload, largest, "{fam:?}");
                        assert_eq!(f.len(), 14 + OFFLOAD_MTU, "{fam:?}");
                    }
                    let ip_len = match fam {
                        Fam::V4 => usize::from(u16::from_be_bytes([f[16], f[17]])),
                        #[cfg(feature = "ipv6")]
                        Fam::V6 => 40 + usize::from(u16::from_be_bytes([f[18], f[19]])),
                    };
                    assert_eq!(ip_len + 14, f.len(), "{fam:?}: the IP length");
                    assert_eq!(head[0], VNET_F_NEEDS_CSUM);
                    assert_eq!(head[1], fam.gso(), "{fam:?}");
                    assert_eq!(field_at(&head, 2), t + 20, "{fam:?}: hdr_len");
                    assert_eq!(field_at(&head, 4), 1400, "{fam:?}: gso_size");
                    assert_eq!(field_at(&head, 6), t, "{fam:?}: csum_start");
                    assert_eq!(field_at(&head, 8), 16, "{fam:?}: csum_offset");
                    finish_checksum(&mut f, &head);
                    assert!(checksums_ok(&f), "{fam:?}");
                    assert!(f[t + 20..].iter().all(|&b| b == 0x5a));
                    sent += payload;
                }
                assert_eq!(sent, 200_000, "{fam:?}: everything sent in large segments");
                assert_eq!(wire.table.mss(&fam.key(4000)), Some(1400));
            }
        }
    }
}
