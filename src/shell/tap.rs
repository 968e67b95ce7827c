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
//! says. So this device (1) presents an IP MTU of [`OFFLOAD_MTU`] to smoltcp, and (2) rewrites
//! the MSS option of each TCP SYN it passes up to the largest segment that MTU holds, keeping
//! the real value per peer (address and port) to put in `gso_size`. smoltcp then builds large
//! segments while every segment on the wire keeps the size the peer asked for. The rewrite
//! adjusts the TCP checksum incrementally (RFC 1624), so smoltcp still checks every checksum.
//! Received frames are unchanged: the tap offers the kernel no receive offloads, so the kernel
//! segments and checksums what it sends us.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use tun_tap::{Iface, Mode};

/// The IP MTU presented to smoltcp with offload: the largest IPv4 packet whose Ethernet frame
/// still fits 65535 bytes (a pcap's snap length, and the kernel's 64 KiB GSO limit).
pub const OFFLOAD_MTU: usize = 65535 - 14;

/// The virtio-net header (`struct virtio_net_hdr`, legacy layout, native byte order): 10 bytes.
const VNET_HDR: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;

/// Peers whose real MSS is remembered; past this the table starts over (an unknown peer gets
/// the MSS the tap's MTU allows).
const MSS_TABLE: usize = 4096;

/// A TAP interface as a smoltcp device.
pub struct TapDevice {
    fd: Fd,
    /// The tap's own IP MTU (what the wire carries).
    mtu: usize,
    offload: Option<Offload>,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

enum Fd {
    Plain(Iface),
    Vnet(File),
}

/// What the offload path keeps: each peer's real MSS, from its SYN.
struct Offload {
    mss: HashMap<([u8; 4], u16), u16>,
}

impl TapDevice {
    /// Opens the existing TAP interface `name` without offloads; `mtu` is the IP MTU (the frame
    /// adds 14 bytes).
    pub fn open(name: &str, mtu: usize) -> io::Result<TapDevice> {
        let iface = Iface::without_packet_info(name, Mode::Tap)?;
        iface.set_non_blocking()?;
        Ok(TapDevice::new(Fd::Plain(iface), mtu, None))
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
        let offload = Offload {
            mss: HashMap::new(),
        };
        Ok(TapDevice::new(Fd::Vnet(file), mtu, Some(offload)))
    }

    fn new(fd: Fd, mtu: usize, offload: Option<Offload>) -> TapDevice {
        let (hdr, max) = match offload {
            Some(_) => (VNET_HDR, OFFLOAD_MTU),
            None => (0, mtu),
        };
        TapDevice {
            fd,
            mtu,
            offload,
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
    fn read(&mut self) -> Option<(usize, usize)> {
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
        let Some(off) = &mut self.offload else {
            return Some((0, n));
        };
        if n < VNET_HDR {
            return None;
        }
        let frame = &mut self.rx[VNET_HDR..n];
        if let Some((peer, real)) = raise_syn_mss(frame, (OFFLOAD_MTU - 40) as u16) {
            if off.mss.len() >= MSS_TABLE && !off.mss.contains_key(&peer) {
                off.mss.clear();
            }
            off.mss.insert(peer, real);
        }
        Some((VNET_HDR, n))
    }
}

/// A frame read from the tap.
pub struct TapRx<'a>(&'a [u8]);

/// Room to write one frame to the tap.
pub struct TapTx<'a> {
    fd: &'a mut Fd,
    buf: &'a mut [u8],
    /// With offload: the wire MTU and the peers' MSS.
    offload: Option<(usize, &'a Offload)>,
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
        if let Some((mtu, off)) = self.offload {
            vnet_header(head, frame, mtu, &off.mss);
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

    fn receive(&mut self, _: Instant) -> Option<(TapRx<'_>, TapTx<'_>)> {
        let (start, end) = self.read()?;
        let tx = TapTx {
            fd: &mut self.fd,
            buf: &mut self.tx,
            offload: self.offload.as_ref().map(|o| (self.mtu, o)),
        };
        Some((TapRx(&self.rx[start..end]), tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<TapTx<'_>> {
        Some(TapTx {
            fd: &mut self.fd,
            buf: &mut self.tx,
            offload: self.offload.as_ref().map(|o| (self.mtu, o)),
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

/// The TCP segment in an Ethernet frame: (IP header length, TCP header length), or None when
/// the frame is not an unfragmented IPv4 TCP segment with sane lengths.
fn tcp_in(frame: &[u8]) -> Option<(usize, usize)> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || fragmented || total > ip.len() {
        return None;
    }
    if total < ihl + 20 {
        return None;
    }
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    (thl >= 20 && ihl + thl <= total).then_some((ihl, thl))
}

/// For a TCP SYN with an MSS option below `to`: sets the option to `to` (fixing the checksum)
/// and returns the peer (source address and port) with its real MSS.
fn raise_syn_mss(frame: &mut [u8], to: u16) -> Option<(([u8; 4], u16), u16)> {
    let (ihl, thl) = tcp_in(frame)?;
    let (ip, tcp) = frame[14..].split_at_mut(ihl);
    if tcp[13] & 0x02 == 0 {
        return None; // not a SYN
    }
    let peer = (
        [ip[12], ip[13], ip[14], ip[15]],
        u16::from_be_bytes([tcp[0], tcp[1]]),
    );
    let mut i = 20;
    while i < thl {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1)?);
                if len < 2 || i + len > thl {
                    return None;
                }
                if kind == 2 && len == 4 {
                    let real = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if real >= to {
                        return None;
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&to.to_be_bytes());
                    // RFC 1624: HC' = ~(~HC + ~m + m').
                    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let sum = u32::from(!hc) + u32::from(!real) + u32::from(to);
                    tcp[16..18].copy_from_slice(&(!fold(sum)).to_be_bytes());
                    return Some((peer, real));
                }
                i += len;
            }
        }
    }
    None
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Fills the virtio-net header `head` for `frame` as smoltcp built it: a TCP segment gets its
/// pseudo-header sum and `NEEDS_CSUM`, and when its payload is larger than the peer's MSS (or,
/// for a peer never seen in a SYN, than the tap's MTU allows), GSO with that MSS as `gso_size`.
fn vnet_header(head: &mut [u8], frame: &mut [u8], mtu: usize, mss: &HashMap<([u8; 4], u16), u16>) {
    head.fill(0);
    let Some((ihl, thl)) = tcp_in(frame) else {
        head[1] = VNET_GSO_NONE;
        return;
    };
    let (ip, tcp) = frame[14..].split_at_mut(ihl);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp_len = total - ihl;
    let payload = tcp_len - thl;
    // The pseudo-header: source, destination, protocol, TCP length.
    let mut sum = 6 + tcp_len as u32;
    for w in ip[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    tcp[16..18].copy_from_slice(&fold(sum).to_be_bytes());
    let peer = (
        [ip[16], ip[17], ip[18], ip[19]],
        u16::from_be_bytes([tcp[2], tcp[3]]),
    );
    // The peer's MSS counts no options (RFC 6691); the segments must also fit the wire.
    let limit = mss
        .get(&peer)
        .map_or(mtu - 40, |&m| usize::from(m).min(mtu - 40));
    let seg = limit.saturating_sub(thl - 20).max(1);
    let csum_start = (14 + ihl) as u16;
    head[0] = VNET_F_NEEDS_CSUM;
    if payload > seg {
        head[1] = VNET_GSO_TCPV4;
        head[2..4].copy_from_slice(&((14 + ihl + thl) as u16).to_ne_bytes());
        head[4..6].copy_from_slice(&(seg as u16).to_ne_bytes());
    }
    head[6..8].copy_from_slice(&csum_start.to_ne_bytes());
    head[8..10].copy_from_slice(&16u16.to_ne_bytes());
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

    /// An Ethernet frame holding an IPv4 TCP segment from 10.0.0.2:4000 to 10.0.0.1:80 with
    /// the given flags, options and payload, with valid IP and TCP checksums.
    fn segment(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let thl = 20 + options.len();
        let total = 20 + thl + payload.len();
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = ((thl / 4) as u8) << 4;
        tcp[13] = flags;
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(payload);
        let sum = sum_words(&ip[12..20], 6 + tcp.len() as u32);
        let c = !fold(sum_words(&tcp, sum));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    }

    fn sum_words(b: &[u8], mut sum: u32) -> u32 {
        for w in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        sum
    }

    /// The TCP checksum of the segment in `f` verifies.
    fn tcp_ok(f: &[u8]) -> bool {
        let tcp = &f[34..];
        fold(sum_words(tcp, sum_words(&f[26..34], 6 + tcp.len() as u32))) == 0xffff
    }

    #[test]
    fn a_syn_mss_is_raised_with_a_valid_checksum_and_remembered() {
        let opts = [1, 1, 4, 2, 2, 4, 0x05, 0xb4]; // NOP NOP SACK-permitted MSS 1460
        let mut f = segment(0x02, &opts, &[]);
        assert!(tcp_ok(&f));
        let got = raise_syn_mss(&mut f, 65495);
        assert_eq!(got, Some((([10, 0, 0, 2], 4000), 1460)));
        assert_eq!(&f[34 + 24..34 + 28], &[2, 4, 0xff, 0xd7]);
        assert!(tcp_ok(&f), "checksum after the rewrite");
    }

    #[test]
    fn segments_other_than_syn_are_left_alone() {
        let mut ack = segment(0x10, &[2, 4, 0x05, 0xb4], b"data");
        let before = ack.clone();
        assert_eq!(raise_syn_mss(&mut ack, 65495), None);
        assert_eq!(ack, before);
        let mut no_mss = segment(0x02, &[1, 1, 1, 0], &[]);
        assert_eq!(raise_syn_mss(&mut no_mss, 65495), None);
        let mut bad_len = segment(0x02, &[2, 9, 0, 0], &[]);
        assert_eq!(raise_syn_mss(&mut bad_len, 65495), None);
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(raise_syn_mss(&mut arp, 65495), None);
    }

    #[test]
    fn a_large_segment_gets_gso_with_the_peers_mss_and_a_pseudo_header_sum() {
        // From 10.0.0.1:80 back to the peer 10.0.0.2:4000, which announced MSS 1400.
        let mut f = segment(0x18, &[], &[7u8; 5000]);
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[36..38].copy_from_slice(&4000u16.to_be_bytes());
        let mut mss = HashMap::new();
        mss.insert(([10, 0, 0, 2], 4000), 1400);
        let mut head = [0xaau8; VNET_HDR];
        vnet_header(&mut head, &mut f, 1500, &mss);
        assert_eq!(head[0], VNET_F_NEEDS_CSUM);
        assert_eq!(head[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([head[2], head[3]]), 54); // header length
        assert_eq!(u16::from_ne_bytes([head[4], head[5]]), 1400); // gso_size
        assert_eq!(u16::from_ne_bytes([head[6], head[7]]), 34); // csum_start
        assert_eq!(u16::from_ne_bytes([head[8], head[9]]), 16); // csum_offset
                                                                // The kernel finishes the sum: pseudo-header + the segment must give a valid checksum.
        let tcp = &f[34..];
        let partial = u16::from_be_bytes([tcp[16], tcp[17]]);
        let mut copy = tcp.to_vec();
        copy[16..18].fill(0);
        let full = !fold(sum_words(&copy, u32::from(partial)));
        let mut done = f.clone();
        done[50..52].copy_from_slice(&full.to_be_bytes());
        assert!(tcp_ok(&done));

        // An unknown peer: the tap's MTU decides; a small segment: checksum only.
        let mut head = [0u8; VNET_HDR];
        vnet_header(&mut head, &mut f, 3000, &HashMap::new());
        assert_eq!(head[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([head[4], head[5]]), 2960);
        vnet_header(&mut head, &mut f, 9000, &HashMap::new());
        assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
        let mut small = segment(0x18, &[], &[1u8; 100]);
        vnet_header(&mut head, &mut small, 1500, &mss);
        assert_eq!((head[0], head[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        vnet_header(&mut head, &mut arp, 1500, &mss);
        assert_eq!(head, [0u8; VNET_HDR]);
    }
}
