//! The mDNS tests' network: a host running the HTTP server and the mDNS responder on one
//! smoltcp interface, wired as a main loop would (`Server::poll`, then `Responder::poll`), and
//! a peer host on a second interface with UDP sockets of its own, joined by an in-memory
//! Ethernet wire on a simulated clock that jumps to the next frame or `poll_at`. Every frame
//! the host sends is logged with its time. What the responder sends is read back with
//! smoltcp's Ethernet, IPv4, IPv6 and UDP wire types and this file's own DNS parser
//! ([`dns`]), not with the responder's code. The fuzz target `mdns` uses it too.
//!
//! [`Net::new`] gives both hosts an IPv4 address only; with the library's `ipv6` feature,
//! [`Net::dual`] gives them IPv6 addresses as well (a unique local and a link-local one each),
//! and the peer joins ff02::fb too.
#![allow(dead_code)]
// The fuzz target `mdns` includes this file: `ipv6` is then its own feature, if it has one.
#![allow(unexpected_cfgs)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smolhttpd::gate::Gate;
use smolhttpd::handler::{Route, Router};
use smolhttpd::mdns::{self, Responder};
use smolhttpd::server::Slots;
use smolhttpd::{Config, Server};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, IpAddress,
    IpCidr, IpEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
#[cfg(feature = "ipv6")]
use smoltcp::wire::{Ipv6Address, Ipv6Packet, Ipv6Repr};

pub const HOST_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
pub const PEER_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 100);
pub const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const GROUP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
pub const GROUP: Ipv4Address = Ipv4Address::new(224, 0, 0, 251);
/// The IPv6 addresses of `Net::dual`: a unique local address each and the link-local
/// address of each MAC (EUI-64, the U/L bit flipped: 02:00:00:00:00:01 is fe80::ff:fe00:1).
#[cfg(feature = "ipv6")]
pub const HOST_IP6: Ipv6Address = Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 1);
#[cfg(feature = "ipv6")]
pub const HOST_LL: Ipv6Address = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
#[cfg(feature = "ipv6")]
pub const PEER_IP6: Ipv6Address = Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 0x100);
#[cfg(feature = "ipv6")]
pub const PEER_LL: Ipv6Address = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 2);
#[cfg(feature = "ipv6")]
pub const GROUP6: Ipv6Address = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
#[cfg(feature = "ipv6")]
pub const GROUP6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0xfb];
/// The peer's one-shot (legacy) querier port.
pub const ONESHOT_PORT: u16 = 40000;
const SLOTS: usize = 2;

#[derive(Default)]
struct Wire {
    /// frames[0]: towards the host; frames[1]: towards the peer.
    frames: [VecDeque<Vec<u8>>; 2],
    /// Every frame the host sent, with the time.
    log: Vec<(Instant, Vec<u8>)>,
}

pub struct End {
    wire: Rc<RefCell<Wire>>,
    side: usize,
}

pub struct Rx(Vec<u8>);

pub struct Tx {
    wire: Rc<RefCell<Wire>>,
    to: usize,
    at: Instant,
}

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        let mut wire = self.wire.borrow_mut();
        if self.to == 1 {
            wire.log.push((self.at, frame.clone()));
        }
        wire.frames[self.to].push_back(frame);
        r
    }
}

impl Device for End {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, at: Instant) -> Option<(Rx, Tx)> {
        let frame = self.wire.borrow_mut().frames[self.side].pop_front()?;
        let tx = Tx {
            wire: self.wire.clone(),
            to: 1 - self.side,
            at,
        };
        Some((Rx(frame), tx))
    }

    fn transmit(&mut self, at: Instant) -> Option<Tx> {
        Some(Tx {
            wire: self.wire.clone(),
            to: 1 - self.side,
            at,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A UDP datagram the host sent from port 5353, read with smoltcp's wire types.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub dst_mac: [u8; 6],
    pub src: IpEndpoint,
    pub dst: IpEndpoint,
    /// IP TTL.
    pub hop_limit: u8,
    pub payload: Vec<u8>,
}

impl Sent {
    pub fn dns(&self) -> dns::Message {
        dns::parse(&self.payload)
            .unwrap_or_else(|e| panic!("unparsable mDNS message {:02x?}: {e}", self.payload))
    }

    pub fn to_group(&self) -> bool {
        self.dst == IpEndpoint::new(IpAddress::Ipv4(GROUP), 5353) && self.dst_mac == GROUP_MAC
    }

    /// Sent to [ff02::fb]:5353.
    #[cfg(feature = "ipv6")]
    pub fn to_group6(&self) -> bool {
        self.dst == group6_endpoint() && self.dst_mac == GROUP6_MAC
    }
}

/// What a peer socket received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub port: u16,
    pub from: IpEndpoint,
    pub payload: Vec<u8>,
}

pub struct Net {
    pub now: Instant,
    pub iface: Interface,
    dev: Gate<End, SLOTS>,
    pub sockets: SocketSet<'static>,
    pub server: Server<'static, SLOTS, 1024, 384>,
    pub mdns: Responder,
    pub peer: Interface,
    peer_dev: End,
    pub peer_sockets: SocketSet<'static>,
    /// The peer's socket on 5353 (in the group) and its one-shot querier socket.
    pub peer_mdns: SocketHandle,
    pub peer_oneshot: SocketHandle,
    pub received: Vec<Received>,
    wire: Rc<RefCell<Wire>>,
}

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![v; n].into_boxed_slice())
}

fn make_iface<D: Device>(dev: &mut D, mac: [u8; 6], addrs: &[IpCidr], now: Instant) -> Interface {
    let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    cfg.random_seed = u64::from(mac[5]);
    let mut iface = Interface::new(cfg, dev, now);
    iface.update_ip_addrs(|a| {
        for cidr in addrs {
            a.push(*cidr).unwrap();
        }
    });
    iface
}

/// An IPv4 address on a /24.
pub fn v4(ip: Ipv4Address) -> IpCidr {
    IpCidr::new(IpAddress::Ipv4(ip), 24)
}

/// An IPv6 address on a /64.
#[cfg(feature = "ipv6")]
pub fn v6(ip: Ipv6Address) -> IpCidr {
    IpCidr::new(IpAddress::Ipv6(ip), 64)
}

fn udp_socket() -> udp::Socket<'static> {
    // Owned, not leaked: freed with the socket set.
    let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0u8; 64 * 1024]);
    udp::Socket::new(buf(), buf())
}

impl Net {
    /// The host (192.168.69.1/24) with the responder for `name`, the peer (192.168.69.100/24)
    /// with a socket on 5353 in the group and one on port 40000. Nothing has been polled.
    pub fn new(name: &str) -> Net {
        Net::with_addrs(name, &[v4(HOST_IP)], &[v4(PEER_IP)])
    }

    /// As [`Net::new`], both hosts with IPv6 addresses as well: the host 192.168.69.1,
    /// fd69::1 and fe80::ff:fe00:1, the peer 192.168.69.100, fd69::100 and fe80::ff:fe00:2;
    /// the peer in ff02::fb too.
    #[cfg(feature = "ipv6")]
    pub fn dual(name: &str) -> Net {
        Net::with_addrs(
            name,
            &[v4(HOST_IP), v6(HOST_IP6), v6(HOST_LL)],
            &[v4(PEER_IP), v6(PEER_IP6), v6(PEER_LL)],
        )
    }

    /// The host and the peer with these addresses; the peer joins the group of every family
    /// it has an address of.
    pub fn with_addrs(name: &str, host: &[IpCidr], peer_addrs: &[IpCidr]) -> Net {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let now = Instant::ZERO;
        let mut dev = Gate::new(End {
            wire: wire.clone(),
            side: 0,
        });
        let mut peer_dev = End {
            wire: wire.clone(),
            side: 1,
        };
        let mut iface = make_iface(&mut dev, HOST_MAC, host, now);
        let mut peer = make_iface(&mut peer_dev, PEER_MAC, peer_addrs, now);
        let storage: Vec<SocketStorage> = (0..SLOTS + 1).map(|_| SocketStorage::EMPTY).collect();
        let mut sockets = SocketSet::new(Box::leak(storage.into_boxed_slice()));
        let routes: &'static mut [Route<'static>] = Box::leak(Vec::new().into_boxed_slice());
        let server = Server::<SLOTS, 1024, 384>::new(
            Router::new(routes),
            &mut sockets,
            leak(0u8, SLOTS * 1024),
            leak(0u8, SLOTS * 4096),
            Box::leak(Box::new(Slots::new())),
            Config::new(),
        )
        .expect("server");
        let buffers: &'static mut mdns::Buffers = Box::leak(Box::new(mdns::Buffers::new()));
        let mdns = Responder::new(name, &mut iface, &mut sockets, buffers).expect("responder");

        peer.join_multicast_group(GROUP).unwrap();
        #[cfg(feature = "ipv6")]
        if peer_addrs.iter().any(|c| matches!(c, IpCidr::Ipv6(_))) {
            peer.join_multicast_group(GROUP6).unwrap();
        }
        let mut peer_sockets = SocketSet::new(Vec::new());
        let mut s = udp_socket();
        s.bind(5353).unwrap();
        s.set_hop_limit(Some(255));
        let peer_mdns = peer_sockets.add(s);
        let mut s = udp_socket();
        s.bind(ONESHOT_PORT).unwrap();
        let peer_oneshot = peer_sockets.add(s);
        Net {
            now,
            iface,
            dev,
            sockets,
            server,
            mdns,
            peer,
            peer_dev,
            peer_sockets,
            peer_mdns,
            peer_oneshot,
            received: Vec::new(),
            wire,
        }
    }

    /// One pass of the host's main loop, then the peer's.
    pub fn step(&mut self) {
        self.server
            .poll(self.now, &mut self.iface, &mut self.dev, &mut self.sockets);
        self.mdns.poll(self.now, &mut self.iface, &mut self.sockets);
        self.peer
            .poll(self.now, &mut self.peer_dev, &mut self.peer_sockets);
        for handle in [self.peer_mdns, self.peer_oneshot] {
            let s = self.peer_sockets.get_mut::<udp::Socket>(handle);
            let port = s.endpoint().port;
            while let Ok((data, meta)) = s.recv() {
                self.received.push(Received {
                    at: self.now,
                    port,
                    from: meta.endpoint,
                    payload: data.to_vec(),
                });
            }
        }
    }

    fn pending_frames(&self) -> bool {
        let w = self.wire.borrow();
        !w.frames[0].is_empty() || !w.frames[1].is_empty()
    }

    /// When anything happens next: a frame in flight (now), or a poll_at of the host's
    /// server or responder or of the peer.
    fn next_time(&mut self) -> Option<Instant> {
        if self.pending_frames() {
            return Some(self.now);
        }
        [
            self.server
                .poll_at(self.now, &mut self.iface, &self.sockets),
            self.mdns.poll_at(self.now, &self.sockets),
            self.peer.poll_at(self.now, &self.peer_sockets),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs for exactly `d` of simulated time, polling whenever something is due.
    pub fn advance(&mut self, d: Duration) {
        let deadline = self.now + d;
        let mut same = 0;
        loop {
            self.step();
            match self.next_time() {
                Some(t) if t <= deadline => {
                    let t = t.max(self.now);
                    same = if t == self.now { same + 1 } else { 0 };
                    assert!(same < 10_000, "busy loop at {}", self.now);
                    self.now = t;
                }
                _ => break,
            }
        }
        self.now = deadline;
        self.step();
    }

    /// Sends `payload` from one of the peer's sockets. A socket whose queue is full (its head
    /// waits for an address nobody answers ARP for) is emptied first.
    pub fn peer_send(&mut self, handle: SocketHandle, payload: &[u8], to: IpEndpoint) {
        let s = self.peer_sockets.get_mut::<udp::Socket>(handle);
        if s.send_slice(payload, to).is_err() {
            let port = s.endpoint().port;
            s.close();
            s.bind(port).unwrap();
            s.send_slice(payload, to).unwrap();
        }
    }

    /// A query from the peer's port 5353 to the group.
    pub fn query_from_5353(&mut self, payload: &[u8]) {
        self.peer_send(self.peer_mdns, payload, group_endpoint());
    }

    /// A one-shot query from the peer's port 40000 to the group.
    pub fn query_oneshot(&mut self, payload: &[u8]) {
        self.peer_send(self.peer_oneshot, payload, group_endpoint());
    }

    /// A query from the peer's port 5353 to ff02::fb.
    #[cfg(feature = "ipv6")]
    pub fn query6_from_5353(&mut self, payload: &[u8]) {
        self.peer_send(self.peer_mdns, payload, group6_endpoint());
    }

    /// A one-shot query from the peer's port 40000 to ff02::fb.
    #[cfg(feature = "ipv6")]
    pub fn query6_oneshot(&mut self, payload: &[u8]) {
        self.peer_send(self.peer_oneshot, payload, group6_endpoint());
    }

    /// Queues a raw Ethernet frame towards the host.
    pub fn inject(&mut self, frame: Vec<u8>) {
        self.wire.borrow_mut().frames[0].push_back(frame);
    }

    /// Every frame the host sent since the last call, with its time.
    pub fn take_frames(&mut self) -> Vec<(Instant, Vec<u8>)> {
        std::mem::take(&mut self.wire.borrow_mut().log)
    }

    /// The UDP datagrams the host sent from port 5353 since the last call.
    pub fn take_mdns(&mut self) -> Vec<Sent> {
        self.take_frames()
            .into_iter()
            .filter_map(|(at, f)| read_udp(at, &f))
            .filter(|s| s.src.port == 5353)
            .collect()
    }
}

pub fn group_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(GROUP), 5353)
}

#[cfg(feature = "ipv6")]
pub fn group6_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv6(GROUP6), 5353)
}

/// The UDP datagram in an Ethernet frame (IPv4 or IPv6), if it is one.
pub fn read_udp(at: Instant, frame: &[u8]) -> Option<Sent> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, hop_limit, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Udp {
                return None;
            }
            let (src, dst) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            (src, dst, ip.hop_limit(), ip.payload())
        }
        #[cfg(feature = "ipv6")]
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Udp {
                return None;
            }
            let (src, dst) = (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
            );
            (src, dst, ip.hop_limit(), ip.payload())
        }
        _ => return None,
    };
    let udp = UdpPacket::new_checked(payload).ok()?;
    assert!(udp.verify_checksum(&src, &dst), "bad UDP checksum");
    Some(Sent {
        at,
        dst_mac: eth.dst_addr().0,
        src: IpEndpoint::new(src, udp.src_port()),
        dst: IpEndpoint::new(dst, udp.dst_port()),
        hop_limit,
        payload: udp.payload().to_vec(),
    })
}

/// True for an MLDv2 report (ICMPv6 type 143, behind a hop-by-hop header) that lists the
/// IPv6 mDNS group, sent to ff02::16.
#[cfg(feature = "ipv6")]
pub fn is_mld_report_for_group6(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
        return false;
    };
    let mld_routers = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
    let p = ip.payload();
    // Hop-by-hop header: next header, length in 8-byte units beyond the first 8.
    if ip.next_header() != IpProtocol::HopByHop || ip.dst_addr() != mld_routers || p.len() < 8 {
        return false;
    }
    let icmp = &p[(usize::from(p[1]) + 1) * 8..];
    // Type 143, then records of 20 bytes for a group without sources: type, aux length,
    // source count, the group.
    icmp.len() >= 8
        && icmp[0] == 143
        && icmp[8..]
            .chunks(20)
            .any(|r| r.len() == 20 && r[4..20] == GROUP6.octets())
}

/// True for an IGMP membership report for the mDNS group.
pub fn is_igmp_report_for_group(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    // IGMPv2 membership report (0x16) for 224.0.0.251, sent to the group itself.
    let p = ip.payload();
    ip.next_header() == IpProtocol::Igmp
        && ip.dst_addr() == GROUP
        && p.len() >= 8
        && p[0] == 0x16
        && p[4..8] == GROUP.octets()
}

/// An Ethernet frame with a UDP datagram over IPv6 towards the host, checksums right.
#[cfg(feature = "ipv6")]
pub fn udp6_frame(
    src_mac: [u8; 6],
    src: (Ipv6Address, u16),
    dst: (Ipv6Address, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let ip = Ipv6Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 255,
    };
    let dst_mac = if dst.0.is_multicast() {
        GROUP6_MAC
    } else {
        HOST_MAC
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut frame =
        vec![0u8; eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let mut p = Ipv6Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p);
    let mut u = UdpPacket::new_unchecked(p.payload_mut());
    udp.emit(
        &mut u,
        &IpAddress::Ipv6(src.0),
        &IpAddress::Ipv6(dst.0),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    frame
}

/// An Ethernet frame with a UDP datagram towards the host, checksums right.
pub fn udp_frame(
    src_mac: [u8; 6],
    src: (Ipv4Address, u16),
    dst: (Ipv4Address, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 255,
    };
    let dst_mac = if dst.0.is_multicast() {
        GROUP_MAC
    } else {
        HOST_MAC
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame =
        vec![0u8; eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    let mut u = UdpPacket::new_unchecked(p.payload_mut());
    udp.emit(
        &mut u,
        &IpAddress::Ipv4(src.0),
        &IpAddress::Ipv4(dst.0),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    frame
}

/// A DNS message reader and writer of the tests' own, independent of the responder's.
pub mod dns {
    pub const A: u16 = 1;
    pub const AAAA: u16 = 28;
    pub const NSEC: u16 = 47;
    pub const ANY: u16 = 255;
    pub const IN: u16 = 1;
    /// QU in a question, cache-flush in a record.
    pub const TOP: u16 = 0x8000;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Question {
        pub name: String,
        pub qtype: u16,
        pub class: u16,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Record {
        pub name: String,
        pub rtype: u16,
        pub class: u16,
        pub ttl: u32,
        pub rdata: Vec<u8>,
        /// For an NSEC: the next domain name and the type bitmaps.
        pub nsec: Option<(String, Vec<u8>)>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Message {
        pub id: u16,
        pub flags: u16,
        pub questions: Vec<Question>,
        pub answers: Vec<Record>,
        pub authority: Vec<Record>,
        pub additional: Vec<Record>,
    }

    impl Message {
        pub fn is_response(&self) -> bool {
            self.flags & 0x8000 != 0
        }
    }

    fn u16_at(m: &[u8], at: usize) -> Result<u16, String> {
        m.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("short at {at}"))
    }

    /// A name at `at` (dotted, without the final dot) and the offset after it.
    fn name(m: &[u8], mut at: usize) -> Result<(String, usize), String> {
        let mut labels = Vec::new();
        let mut after = None;
        for _ in 0..128 {
            let len = *m.get(at).ok_or("name runs off the end")? as usize;
            if len == 0 {
                return Ok((labels.join("."), after.unwrap_or(at + 1)));
            }
            if len & 0xC0 == 0xC0 {
                let ptr = ((len & 0x3F) << 8) | *m.get(at + 1).ok_or("short pointer")? as usize;
                after.get_or_insert(at + 2);
                at = ptr;
                continue;
            }
            if len > 63 {
                return Err(format!("label type {len:#x}"));
            }
            let l = m
                .get(at + 1..at + 1 + len)
                .ok_or("label runs off the end")?;
            labels.push(String::from_utf8(l.to_vec()).map_err(|e| e.to_string())?);
            at += 1 + len;
        }
        Err("name loops".into())
    }

    pub fn parse(m: &[u8]) -> Result<Message, String> {
        let counts: Vec<u16> = (0..4)
            .map(|i| u16_at(m, 4 + 2 * i))
            .collect::<Result<_, _>>()?;
        let mut at = 12;
        let mut questions = Vec::new();
        for _ in 0..counts[0] {
            let (n, end) = name(m, at)?;
            questions.push(Question {
                name: n,
                qtype: u16_at(m, end)?,
                class: u16_at(m, end + 2)?,
            });
            at = end + 4;
        }
        let mut sections = [Vec::new(), Vec::new(), Vec::new()];
        for (s, count) in counts[1..].iter().enumerate() {
            for _ in 0..*count {
                let (n, end) = name(m, at)?;
                let rtype = u16_at(m, end)?;
                let class = u16_at(m, end + 2)?;
                let ttl = (u32::from(u16_at(m, end + 4)?) << 16) | u32::from(u16_at(m, end + 6)?);
                let len = u16_at(m, end + 8)? as usize;
                let start = end + 10;
                let rdata = m.get(start..start + len).ok_or("rdata runs off the end")?;
                let nsec = if rtype == NSEC {
                    let (next, bitmap_at) = name(m, start)?;
                    Some((next, m[bitmap_at..start + len].to_vec()))
                } else {
                    None
                };
                sections[s].push(Record {
                    name: n,
                    rtype,
                    class,
                    ttl,
                    rdata: rdata.to_vec(),
                    nsec,
                });
                at = start + len;
            }
        }
        if at != m.len() {
            return Err(format!("{} bytes after the last record", m.len() - at));
        }
        let [answers, authority, additional] = sections;
        Ok(Message {
            id: u16_at(m, 0)?,
            flags: u16_at(m, 2)?,
            questions,
            answers,
            authority,
            additional,
        })
    }

    fn put_name(out: &mut Vec<u8>, name: &str) {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }

    /// A record to write: name, type, class, TTL, rdata.
    pub type Rr<'a> = (&'a str, u16, u16, u32, &'a [u8]);

    /// A message with uncompressed names.
    pub fn message(
        id: u16,
        flags: u16,
        questions: &[(&str, u16, u16)],
        answers: &[Rr],
        authority: &[Rr],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            id,
            flags,
            questions.len() as u16,
            answers.len() as u16,
            authority.len() as u16,
            0,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for (n, t, c) in questions {
            put_name(&mut out, n);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&c.to_be_bytes());
        }
        for (n, t, c, ttl, rdata) in answers.iter().chain(authority) {
            put_name(&mut out, n);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    /// A query with one question.
    pub fn query(id: u16, name: &str, qtype: u16, class: u16) -> Vec<u8> {
        message(id, 0, &[(name, qtype, class)], &[], &[])
    }

    /// An mDNS response (QR, AA) with these answers.
    pub fn response(answers: &[Rr]) -> Vec<u8> {
        message(0, 0x8400, &[], answers, &[])
    }
}
