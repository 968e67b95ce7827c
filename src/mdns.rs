//! An mDNS responder (RFC 6762) for the host's own name: `smolhttpd.local` answers with the
//! interface's IPv4 address and (feature `ipv6`) its IPv6 addresses, so
//! `http://smolhttpd.local/` works on the link without a DNS server (feature `mdns`).
//!
//! Modelled on lwIP's `apps/mdns`: a small module on one UDP socket beside the HTTP server,
//! in the caller's socket set, fed the interface's addresses on every poll, with probing and
//! announcing as a timer-driven state machine. It serves the host's address records, one `A`
//! and (feature `ipv6`) up to three `AAAA` (`MAX_AAAA`), and the `NSEC` that says which of
//! the two types the name has; no services (DNS-SD).
//!
//! - **Socket**: [`Responder::new`] adds one `udp::Socket` to the caller's `SocketSet`, its
//!   buffers lent from a [`Buffers`] (a `static` on firmware), binds it to port 5353 with IP
//!   TTL (hop limit) 255, and joins 224.0.0.251 on the interface (and, feature `ipv6`,
//!   ff02::fb: `Interface::join_multicast_group`, which needs smoltcp's `multicast` feature;
//!   the IGMP report and the MLDv2 report go out with the next egress).
//! - **Addresses**: read from the interface on every poll: its first IPv4 address
//!   (`Interface::ipv4_addr`) and its first three IPv6 addresses, link-local ones
//!   included (6.2: a response carries every address valid on the link; a resolver picks).
//!   When they change (a DHCP lease, a SLAAC address, `update_ip_addrs`) the name is probed
//!   and announced again with the new set; without any, nothing is sent.
//! - **Probing** (8.1): after a delay of 0-250 ms (derived from the name and addresses: no
//!   clock or random source is read), three queries 250 ms apart for the name, type ANY, with
//!   the proposed address records in the authority section. A response for the name with
//!   other data (8.1, 9) is a conflict: the name becomes `NAME-2` (then `-3`...) and probing
//!   starts again; from 15 conflicts in 10 s on, each new attempt waits 5 s. A simultaneous
//!   probe for the name whose records sort later (8.2: both sets sorted, compared in turn)
//!   wins: this responder waits 1 s and probes again.
//! - **Announcing** (8.3): two unsolicited responses 1 s apart, the records with the
//!   cache-flush bit and TTL 120 s; then [`State::Running`]. A conflicting response later
//!   (9) sends it back to probing under the same name.
//! - **Answering** (6): `A`, `AAAA` or `ANY` questions for the name get those records; a
//!   type the name lacks gets an `NSEC` listing the types it has (6.1), which also rides in
//!   the additional section of every multicast answer, with the other family's address
//!   records (6.2). A query from port 5353 is answered by multicast to the group it came on
//!   (224.0.0.251 or ff02::fb, port 5353; id 0, no questions, cache-flush, TTL 120), at most
//!   once a second per the rate limit (a held-back answer goes out when the second is up; a
//!   probe is defended within 250 ms); with the QU bit (5.4) on every question for the name,
//!   and the records multicast within the last 30 s, or sent to this host's unicast address
//!   (5.5), by unicast to the sender. A one-shot query from any other port (6.7, e.g. `dig
//!   -p 5353 @224.0.0.251`) with one question is answered by unicast to its port with its id
//!   and its question repeated, TTL 10 s and no cache-flush bit, as 6.7 and 10.2 ask. Unicast
//!   answers go only to senders on one of the interface's subnets (11; every link-local
//!   sender is). A known answer in the query (7.1) with at least half the TTL left is left
//!   out of the answer, record by record.
//! - **Probes and announcements** go to every family the host has an address of: 224.0.0.251
//!   with an IPv4 address, ff02::fb with an IPv6 one.
//! - **A silent querier**: a unicast answer to an address that never answers ARP (or
//!   neighbour solicitation) would hold the socket's send queue for good (smoltcp keeps it at
//!   the head, and everything behind it). A queue that has not drained for 2 s is dropped
//!   ([`Stats::flushed`]); multicast answers wait in the responder meanwhile, not in the
//!   socket, so they still go out.
//! - **Ignored**: what cannot be parsed (counted in [`Stats::malformed`]), other names,
//!   opcodes and response codes other than 0, responses from ports other than 5353 and
//!   responses that are not conflicts (records with our very addresses, other names).
//!
//! **DNS parsing: by hand**, in this file, with bounds checks on every read (`get`, never an
//! index) and name decompression bounded by 16 pointer hops and 255 name octets, so that no
//! input panics or loops (fuzz target `mdns`). The crates looked at do not fit: smoltcp 0.14
//! re-exports `wire::dns` (`DnsPacket`, `DnsQuestion`, `DnsRecord`, feature `proto-dns`), but
//! its `Question::parse` and `Record::parse` refuse every class but exactly IN, i.e. every
//! mDNS question with the QU bit and every record with the cache-flush bit (class 0x8001), and
//! its `Repr` only writes queries; `dns-protocol` (no_std, no allocation) fails a whole message
//! on an unknown record type, a non-UTF-8 label or more records than the slices lent to it
//! (mDNS queries carry known-answer lists of any length); `simple-dns` keeps its sections in
//! `Vec`s, so it needs an allocator. What the responder needs is small (match one name, read
//! type, class, TTL and rdata, write three fixed message shapes), so it costs less code than
//! any adapter would.
//!
//! **The main loop**: call [`Responder::poll`] after [`crate::Server::poll`] (which runs the
//! interface's ingress and egress for every socket, this one included): it reads the
//! datagrams the server's poll took in and queues its answers and timed messages in the
//! socket. Sleep for the smaller of the server's and the responder's delay: the server's is
//! zero while the responder's socket has something queued, so the next `Server::poll` sends
//! it without waiting.
//!
//! ```
//! use smolhttpd::handler::Router;
//! use smolhttpd::mdns::{self, Responder};
//! use smolhttpd::{gate::Gate, server::Slots, Config, Server, SLOTS};
//! use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
//! use smoltcp::phy::{Loopback, Medium};
//! use smoltcp::time::Instant;
//! use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};
//!
//! let mut device = Gate::new(Loopback::new(Medium::Ethernet));
//! let mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
//! let mut iface = Interface::new(IfaceConfig::new(mac.into()), &mut device, Instant::ZERO);
//! iface.update_ip_addrs(|a| a.push(IpCidr::new(Ipv4Address::new(192, 168, 69, 1).into(), 24)).unwrap());
//! let mut storage = [SocketStorage::EMPTY; SLOTS + 1]; // the slots and the responder's socket
//! let mut sockets = SocketSet::new(&mut storage[..]);
//! let (mut rx, mut tx, mut slots) = (vec![0; SLOTS * 1024], vec![0; SLOTS * 4096], Slots::new());
//! let mut server: Server = Server::new(Router::new(&mut [][..]), &mut sockets, &mut rx, &mut tx,
//!     &mut slots, Config::new()).expect("buffers");
//! let mut buffers: mdns::Buffers = mdns::Buffers::new(); // a static on firmware
//! let mut responder = Responder::new("smolhttpd", &mut iface, &mut sockets, &mut buffers)
//!     .expect("a valid name and room in the interface's multicast group table");
//!
//! let now = Instant::from_millis(0); // each pass of the main loop:
//! server.poll(now, &mut iface, &mut device, &mut sockets);
//! responder.poll(now, &mut iface, &mut sockets);
//! let delay = match (server.poll_delay(now, &mut iface, &sockets), responder.poll_delay(now, &sockets)) {
//!     (Some(a), Some(b)) => Some(a.min(b)),
//!     (a, b) => a.or(b),
//! };
//! assert!(delay.is_some()); // probing: the first probe is due within 250 ms
//! assert_eq!(responder.name(), "smolhttpd.local");
//! assert_eq!(responder.state(), mdns::State::Probing);
//! ```
//!
//! It never allocates, reads no clock (time comes in as `Instant`) and keeps its state in the
//! [`Responder`] (about 270 bytes; 330 with `ipv6`) and its socket's buffers in the
//! [`Buffers`] (about 2.2 KiB by default).

use core::cmp::Ordering;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
#[cfg(feature = "ipv6")]
use smoltcp::wire::{IpCidr, Ipv6Address};

/// The mDNS port.
pub const PORT: u16 = 5353;
/// The IPv4 mDNS group.
pub const GROUP: Ipv4Address = Ipv4Address::new(224, 0, 0, 251);
/// The IPv6 mDNS group (feature `ipv6`).
#[cfg(feature = "ipv6")]
pub const GROUP_V6: Ipv6Address = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
/// `AAAA` records at most (feature `ipv6`): the interface's first IPv6 addresses, e.g. its
/// link-local address, one from SLAAC or configuration, and one more.
#[cfg(feature = "ipv6")]
pub const MAX_AAAA: usize = 3;
#[cfg(not(feature = "ipv6"))]
const MAX_AAAA: usize = 0;
/// TTL of the records sent to port 5353 (RFC 6762 10: 120 s for host names).
pub const TTL: u32 = 120;
/// TTL of the records in answers to one-shot queries from other ports (6.7: at most 10 s).
pub const LEGACY_TTL: u32 = 10;
/// Longest host label (a DNS label), `-N` suffix included.
pub const MAX_LABEL: usize = 63;
/// Probe queries before announcing.
pub const PROBES: u8 = 3;
/// Time between probes, and after the last one before announcing.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Unsolicited announcements.
pub const ANNOUNCEMENTS: u8 = 2;
/// Time between announcements.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// Receive buffer of the default [`Buffers`]: one full-size datagram.
pub const RX_BUFFER: usize = 1536;
/// Transmit buffer of the default [`Buffers`]: a few answers (each under 100 bytes; with
/// three `AAAA` records, under 170).
pub const TX_BUFFER: usize = 512;
/// Datagrams each direction of the socket queues.
pub const PACKETS: usize = 4;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_NSEC: u16 = 47;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// The top bit of a class: QU in a question (5.4), cache-flush in a record (10.2).
const CLASS_TOP: u16 = 0x8000;
const FLAGS_RESPONSE: u16 = 0x8000;
const FLAGS_AUTHORITATIVE: u16 = 0x0400;
const FLAGS_OPCODE: u16 = 0x7800;
const FLAGS_RCODE: u16 = 0x000F;
/// A compression pointer to the first name of a message, which always starts at offset 12.
const POINTER_TO_FIRST: u16 = 0xC00C;
/// Pointer hops followed in one name.
const MAX_HOPS: u8 = 16;
/// Longest name in wire form.
const MAX_NAME: usize = 255;

/// The types a query asks for the name.
const ASK_A: u8 = 1;
const ASK_AAAA: u8 = 2;
const ASK_ANY: u8 = 4;
const ASK_OTHER: u8 = 8;

/// The records of a message, one bit each: the `A` record, the `AAAA` records (bits 1 to
/// `MAX_AAAA`, in the order of [`Addrs`]), the `NSEC`.
const REC_A: u8 = 1;
const REC_AAAA: u8 = ((1u16 << (MAX_AAAA + 1)) - 2) as u8;
const REC_NSEC: u8 = 0x80;
const REC_ADDRS: u8 = REC_A | REC_AAAA;

/// Address families, one bit each: where multicast messages go.
const FAM_V4: u8 = 1;
#[cfg(feature = "ipv6")]
const FAM_V6: u8 = 2;

/// The groups, with their families.
const GROUPS: &[(u8, IpEndpoint)] = &[
    (FAM_V4, IpEndpoint::new(IpAddress::Ipv4(GROUP), PORT)),
    #[cfg(feature = "ipv6")]
    (FAM_V6, IpEndpoint::new(IpAddress::Ipv6(GROUP_V6), PORT)),
];

/// A multicast record goes out at most this often (6)...
const MULTICAST_GAP: Duration = Duration::from_secs(1);
/// ...except in defence of a probe for the name.
const DEFENCE_GAP: Duration = Duration::from_millis(250);
/// A QU question is answered by unicast if the record went by multicast this recently (5.4:
/// a quarter of its TTL).
const RECENT: Duration = Duration::from_secs(TTL as u64 / 4);
/// Losing a simultaneous probe (8.2): wait this long, then probe again.
const TIEBREAK_DEFER: Duration = Duration::from_secs(1);
/// 8.1: from this many conflicts within `CONFLICT_WINDOW` on, wait `CONFLICT_BACKOFF` before
/// each new probe.
const CONFLICT_LIMIT: u8 = 15;
const CONFLICT_WINDOW: Duration = Duration::from_secs(10);
const CONFLICT_BACKOFF: Duration = Duration::from_secs(5);
/// A message that found the socket's send buffer full is tried again this much later.
const SEND_RETRY: Duration = Duration::from_millis(100);
/// The socket's send queue was never empty this long: something in it waits for a neighbour
/// that does not answer (a unicast answer to a silent address), and everything behind it
/// with it. The queue is dropped.
const STUCK: Duration = Duration::from_secs(2);

/// The socket's buffers, lent to the `SocketSet` by [`Responder::new`]: `RX` and `TX` bytes
/// of datagram payload, [`PACKETS`] datagrams each way (2240 bytes by default; 2464 with
/// `ipv6`, whose packet metadata holds IPv6 endpoints). On firmware keep it in a `static`
/// filled at start-up (`StaticCell::init_with(Buffers::new)`, best in a function of its own
/// that is not inlined, as LLVM may build the value on the stack first): smoltcp's empty
/// packet metadata is not all zero bits, so a `const`-initialised static would sit in `.data`
/// and cost its size in flash as well.
pub struct Buffers<const RX: usize = RX_BUFFER, const TX: usize = TX_BUFFER> {
    rx_meta: [udp::PacketMetadata; PACKETS],
    rx: [u8; RX],
    tx_meta: [udp::PacketMetadata; PACKETS],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> Buffers<RX, TX> {
    /// Empty buffers.
    pub const fn new() -> Self {
        Buffers {
            rx_meta: [udp::PacketMetadata::EMPTY; PACKETS],
            rx: [0; RX],
            tx_meta: [udp::PacketMetadata::EMPTY; PACKETS],
            tx: [0; TX],
        }
    }
}

impl<const RX: usize, const TX: usize> Default for Buffers<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Responder::new`] could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The name is not one DNS label of 1 to 63 ASCII letters, digits and hyphens (with or
    /// without `.local` after it).
    Name,
    /// The interface could not join 224.0.0.251 (or, feature `ipv6`, ff02::fb): its multicast
    /// group table is full (smoltcp's `iface-max-multicast-group-count-*` features size it;
    /// with IPv6 it also holds a solicited-node group per distinct IPv6 address suffix).
    Multicast,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Name => f.write_str("an mDNS name is 1 to 63 ASCII letters, digits and '-'"),
            Error::Multicast => f.write_str("the interface's multicast group table is full"),
        }
    }
}

/// What the responder is doing, for the caller's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The interface has no address (IPv4, or with `ipv6` IPv6 either): nothing to claim,
    /// nothing sent.
    NoAddress,
    /// Probing whether the name is free (RFC 6762 8.1).
    Probing,
    /// The name is ours: announcing it (8.3), and answering.
    Announcing,
    /// Answering queries.
    Running,
    /// Stopped by [`Responder::goodbye`].
    Stopped,
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            State::NoAddress => "no address",
            State::Probing => "probing",
            State::Announcing => "announcing",
            State::Running => "running",
            State::Stopped => "stopped",
        })
    }
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Answers sent (multicast and unicast; one multicast answer sent to both groups counts
    /// once).
    pub answered: u32,
    /// Of them, answers sent by unicast.
    pub unicast: u32,
    /// Probe queries sent.
    pub probes: u32,
    /// Unsolicited announcements sent.
    pub announcements: u32,
    /// Conflicts: another host answered for the name.
    pub conflicts: u32,
    /// Simultaneous probes for the name lost (8.2).
    pub deferred: u32,
    /// Datagrams that could not be parsed.
    pub malformed: u32,
    /// Times the socket's send queue was dropped because it could not drain.
    pub flushed: u32,
}

/// The mDNS responder for one host name on one interface. See the [module docs](self).
#[derive(Debug)]
pub struct Responder {
    handle: SocketHandle,
    /// The name the caller gave (one label).
    base: Label,
    /// The name in use: `base`, or `base-N` after conflicts.
    label: Label,
    /// N of `-N` (1: none yet).
    suffix: u32,
    /// The addresses being probed or announced.
    addrs: Addrs,
    phase: Phase,
    /// When the next probe or announcement is due.
    next: Option<Instant>,
    /// A multicast answer held back by the rate limit (`REC_*` bits), the groups it goes to
    /// (`FAM_*` bits), and when it may go.
    pending: u8,
    pending_fams: u8,
    pending_at: Instant,
    last_multicast: Option<Instant>,
    /// Conflicts in the window that started at `window_start`.
    window_start: Instant,
    window_conflicts: u8,
    /// Since when the socket's send queue has not been empty at the start of a poll.
    tx_since: Option<Instant>,
    stats: Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NoAddress,
    Probing { sent: u8 },
    Announcing { sent: u8 },
    Running,
    Stopped,
}

/// The address records the responder claims, as wire bytes: the interface's first IPv4
/// address and (feature `ipv6`) its first [`MAX_AAAA`] IPv6 addresses, in the interface's
/// order. Record 0 is the `A`, records 1.. the `AAAA`s (the `REC_*` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Addrs {
    v4: Option<[u8; 4]>,
    #[cfg(feature = "ipv6")]
    v6: [[u8; 16]; MAX_AAAA],
    #[cfg(feature = "ipv6")]
    v6_len: u8,
}

/// A record as 8.2 compares them: class (without the cache-flush bit), type, rdata.
type Rec<'m> = (u16, u16, &'m [u8]);

impl Addrs {
    /// The interface's addresses now.
    fn of(iface: &Interface) -> Addrs {
        let v4 = iface
            .ipv4_addr()
            .filter(|a| !a.is_unspecified())
            .map(|a| a.octets());
        #[cfg(feature = "ipv6")]
        let (v6, v6_len) = {
            let mut v6 = [[0; 16]; MAX_AAAA];
            let mut n = 0u8;
            for cidr in iface.ip_addrs() {
                let IpCidr::Ipv6(cidr) = cidr else {
                    continue;
                };
                let a = cidr.address();
                if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                    continue;
                }
                if let Some(slot) = v6.get_mut(usize::from(n)) {
                    *slot = a.octets();
                    n += 1;
                }
            }
            (v6, n)
        };
        Addrs {
            v4,
            #[cfg(feature = "ipv6")]
            v6,
            #[cfg(feature = "ipv6")]
            v6_len,
        }
    }

    /// The records there are (`REC_*` bits).
    fn records(&self) -> u8 {
        #[allow(unused_mut)]
        let mut r = if self.v4.is_some() { REC_A } else { 0 };
        #[cfg(feature = "ipv6")]
        {
            r |= (((1u16 << self.v6_len) - 1) << 1) as u8;
        }
        r
    }

    /// The families with an address (`FAM_*` bits): where multicast messages can go.
    fn families(&self) -> u8 {
        #[allow(unused_mut)]
        let mut f = if self.v4.is_some() { FAM_V4 } else { 0 };
        #[cfg(feature = "ipv6")]
        if self.v6_len > 0 {
            f |= FAM_V6;
        }
        f
    }

    fn is_empty(&self) -> bool {
        self.records() == 0
    }

    /// Record `i` (0: the `A`, 1..: the `AAAA`s): its type and rdata.
    fn record(&self, i: usize) -> Option<(u16, &[u8])> {
        if i == 0 {
            return self.v4.as_ref().map(|a| (TYPE_A, &a[..]));
        }
        #[cfg(feature = "ipv6")]
        if i <= usize::from(self.v6_len) {
            return self.v6.get(i - 1).map(|a| (TYPE_AAAA, &a[..]));
        }
        None
    }

    /// The `REC_*` bit of our record with this type and rdata (0: not one of ours).
    fn find(&self, rtype: u16, rdata: &[u8]) -> u8 {
        (0..=MAX_AAAA)
            .filter(|&i| self.record(i) == Some((rtype, rdata)))
            .fold(0, |m, i| m | 1 << i)
    }

    /// Our records sorted as 8.2 compares them, and how many.
    fn sorted(&self) -> ([Rec<'_>; MAX_AAAA + 1], usize) {
        let mut out: [Rec<'_>; MAX_AAAA + 1] = [(0, 0, &[]); MAX_AAAA + 1];
        let mut n = 0;
        for i in 0..=MAX_AAAA {
            if let (Some((rtype, rdata)), Some(slot)) = (self.record(i), out.get_mut(n)) {
                *slot = (CLASS_IN, rtype, rdata);
                n += 1;
            }
        }
        // Insertion sort: at most MAX_AAAA + 1 records.
        for i in 1..n {
            let mut j = i;
            while j > 0 && out.get(j) < out.get(j - 1) {
                out.swap(j, j - 1);
                j -= 1;
            }
        }
        (out, n)
    }

    /// The `NSEC` type bitmap of window 0: `A` is bit 1, `AAAA` bit 28; and its length.
    fn nsec_bitmap(&self) -> ([u8; 4], usize) {
        let a = if self.v4.is_some() { 0x40 } else { 0 };
        if any_aaaa(self.records()) {
            ([a, 0, 0, 0x08], 4)
        } else {
            ([a, 0, 0, 0], 1)
        }
    }
}

/// The addresses as a list for the log: `192.168.69.1, fd69::1, fe80::ff:fe00:1`.
impl core::fmt::Display for Addrs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for i in 0..=MAX_AAAA {
            let Some((_, rdata)) = self.record(i) else {
                continue;
            };
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            if let Ok(a) = <[u8; 4]>::try_from(rdata) {
                write!(f, "{}", Ipv4Address::from(a))?;
            }
            #[cfg(feature = "ipv6")]
            if let Ok(a) = <[u8; 16]>::try_from(rdata) {
                write!(f, "{}", Ipv6Address::from(a))?;
            }
        }
        Ok(())
    }
}

/// Whether `records` (`REC_*` bits) has an `AAAA` record: a bit that is neither the `A` nor
/// the `NSEC` (`REC_AAAA` is zero without `ipv6`).
fn any_aaaa(records: u8) -> bool {
    records & !(REC_A | REC_NSEC) != 0
}

/// The family of an address (`FAM_*`).
fn family(addr: &IpAddress) -> u8 {
    match addr {
        IpAddress::Ipv4(_) => FAM_V4,
        #[cfg(feature = "ipv6")]
        IpAddress::Ipv6(_) => FAM_V6,
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

/// Whether `addr` is one of the mDNS groups.
fn is_group(addr: Option<IpAddress>) -> bool {
    match addr {
        Some(IpAddress::Ipv4(a)) => a == GROUP,
        #[cfg(feature = "ipv6")]
        Some(IpAddress::Ipv6(a)) => a == GROUP_V6,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// One DNS label, kept with ".local" after it.
#[derive(Debug, Clone, Copy)]
struct Label {
    bytes: [u8; MAX_LABEL + 6],
    len: u8,
}

impl Label {
    fn new(text: &[u8]) -> Label {
        let mut label = Label {
            bytes: [0; MAX_LABEL + 6],
            len: 0,
        };
        label.push(text.get(..text.len().min(MAX_LABEL)).unwrap_or(&[]));
        label
    }

    /// Appends `text` to the label (as much of it as fits) and ".local" after it.
    fn push(&mut self, text: &[u8]) {
        let room = MAX_LABEL.saturating_sub(usize::from(self.len));
        let mut out = Out {
            buf: self.bytes.get_mut(..MAX_LABEL).unwrap_or(&mut []),
            len: usize::from(self.len),
        };
        out.put(text.get(..text.len().min(room)).unwrap_or(&[]));
        self.len = out.len.min(MAX_LABEL) as u8;
        let mut out = Out {
            buf: &mut self.bytes[..],
            len: usize::from(self.len),
        };
        out.put(b".local");
    }

    /// The label.
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// `label.local`.
    fn as_str(&self) -> &str {
        let name = self.bytes.get(..usize::from(self.len) + 6).unwrap_or(&[]);
        // ASCII only (checked by `parse_label`), so always UTF-8.
        core::str::from_utf8(name).unwrap_or("")
    }

    /// `base-suffix`, the base cut short so that the whole stays one label.
    fn numbered(base: &Label, suffix: u32) -> Label {
        let mut digits = [0u8; 10];
        let mut n = suffix;
        let mut at = digits.len();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        let digits = digits.get(at..).unwrap_or(&[]);
        let keep = usize::from(base.len).min(MAX_LABEL - 1 - digits.len());
        let mut label = Label::new(base.as_bytes().get(..keep).unwrap_or(&[]));
        label.push(b"-");
        label.push(digits);
        label
    }

    /// The name `label.local.` in wire form, uncompressed.
    fn write_name(&self, out: &mut Out<'_>) {
        out.u8(self.len);
        out.put(self.as_bytes());
        out.u8(5);
        out.put(b"local");
        out.u8(0);
    }

    /// Length of `write_name`'s output.
    fn name_len(&self) -> usize {
        usize::from(self.len) + 8
    }
}

/// The label of a name the caller gives: `NAME` or `NAME.local`.
fn parse_label(name: &str) -> Option<&[u8]> {
    let bytes = name.as_bytes();
    let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
    let bytes = match bytes
        .len()
        .checked_sub(6)
        .and_then(|at| bytes.split_at_checked(at))
    {
        Some((label, tail)) if tail.eq_ignore_ascii_case(b".local") => label,
        _ => bytes,
    };
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    ok.then_some(bytes)
}

/// Counts one more (counters stop at the top rather than wrap or panic).
fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

/// The 0-250 ms before the first probe (8.1), from the name and addresses: hosts that start
/// together with the same name have different addresses, so they spread out.
fn jitter(label: &Label, addrs: &Addrs) -> Duration {
    // FNV-1a.
    let mut h: u32 = 0x811c_9dc5;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    add(label.as_bytes());
    for i in 0..=MAX_AAAA {
        if let Some((_, rdata)) = addrs.record(i) {
            add(rdata);
        }
    }
    Duration::from_millis(u64::from(h % 250))
}

/// A message writer that never fails: what does not fit in `buf` is counted and dropped, so
/// a first pass over an empty buffer measures the message.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

/// A message to send.
#[derive(Debug, Clone, Copy)]
enum Msg {
    /// A probe query: the name, type ANY, QU; the proposed address records as authority.
    Probe,
    /// A response: `records` (`REC_*` bits) as answers, with the query's id (0 for
    /// multicast) and, for a one-shot query, its question repeated. Unless it is that, a
    /// response with address records has in its additional section the other family's
    /// address records (6.2) and the `NSEC` (6.1), where the answers lack them.
    Answer {
        id: u16,
        records: u8,
        ttl: u32,
        flush: bool,
        question: Option<(u16, u16)>,
    },
}

fn count(records: u8) -> u16 {
    records.count_ones() as u16
}

fn write(out: &mut Out<'_>, label: &Label, addrs: &Addrs, msg: Msg) {
    // The first name goes in full at offset 12; every later one is a pointer to it.
    let mut named = false;
    match msg {
        Msg::Probe => {
            let records = addrs.records();
            for v in [0, 0, 1, 0, count(records), 0] {
                out.u16(v); // id, flags, QD, AN, NS, AR
            }
            label.write_name(out);
            named = true;
            out.u16(TYPE_ANY);
            out.u16(CLASS_IN | CLASS_TOP);
            // No cache-flush bit outside a response's answers (10.2).
            write_records(out, label, addrs, records, CLASS_IN, TTL, &mut named);
        }
        Msg::Answer {
            id,
            records,
            ttl,
            flush,
            question,
        } => {
            let records = records & (addrs.records() | REC_NSEC);
            let additional = if question.is_none() && records & REC_ADDRS != 0 {
                let mut other = 0;
                if records & REC_A != 0 {
                    other |= REC_AAAA;
                }
                if any_aaaa(records) {
                    other |= REC_A;
                }
                (addrs.records() & other & !records) | (REC_NSEC & !records)
            } else {
                0
            };
            out.u16(id);
            out.u16(FLAGS_RESPONSE | FLAGS_AUTHORITATIVE);
            out.u16(u16::from(question.is_some()));
            out.u16(count(records));
            out.u16(0);
            out.u16(count(additional));
            if let Some((qtype, qclass)) = question {
                label.write_name(out);
                named = true;
                out.u16(qtype);
                out.u16(qclass);
            }
            let class = if flush {
                CLASS_IN | CLASS_TOP
            } else {
                CLASS_IN
            };
            write_records(out, label, addrs, records, class, ttl, &mut named);
            write_records(out, label, addrs, additional, class, ttl, &mut named);
        }
    }
}

/// Writes `records` (`REC_*` bits): the address records in order, then the `NSEC`.
fn write_records(
    out: &mut Out<'_>,
    label: &Label,
    addrs: &Addrs,
    records: u8,
    class: u16,
    ttl: u32,
    named: &mut bool,
) {
    let mut name = |out: &mut Out<'_>| {
        if *named {
            out.u16(POINTER_TO_FIRST);
        } else {
            label.write_name(out);
            *named = true;
        }
    };
    for i in 0..=MAX_AAAA {
        let Some((rtype, rdata)) = addrs.record(i).filter(|_| records & (1 << i) != 0) else {
            continue;
        };
        name(out);
        out.u16(rtype);
        out.u16(class);
        out.u32(ttl);
        out.u16(rdata.len() as u16);
        out.put(rdata);
    }
    if records & REC_NSEC != 0 {
        let (bitmap, len) = addrs.nsec_bitmap();
        name(out);
        out.u16(TYPE_NSEC);
        out.u16(class);
        out.u32(ttl);
        out.u16((label.name_len() + 2 + len) as u16);
        // Next domain name (the name itself, uncompressed: RFC 4034 4.1.1), then the type
        // bitmap of window 0: A, and AAAA when the name has one.
        label.write_name(out);
        out.u8(0);
        out.u8(len as u8);
        out.put(bitmap.get(..len).unwrap_or(&[]));
    }
}

/// How this host's probe compares with another's for the same name (8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tiebreak {
    Win,
    Lose,
    Tie,
}

/// What a datagram asks of this responder, read in one pass without keeping any of it.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    id: u16,
    response: bool,
    questions: u16,
    /// `ASK_*` bits: the types asked for the name.
    asked: u8,
    /// Questions for the name, and how many of them have the QU bit.
    matched: u16,
    qu: u16,
    /// The first question for the name (type, class), to repeat to a one-shot querier.
    question: Option<(u16, u16)>,
    /// Our records (`REC_*` bits) the query lists as known, with at least half their TTL
    /// left (7.1).
    known: u8,
    /// The query is a probe for the name (authority records for it): how ours compares.
    tiebreak: Option<Tiebreak>,
    /// The response has a record for the name with other data than ours.
    conflict: bool,
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *msg.get(at)?,
        *msg.get(at.checked_add(1)?)?,
    ]))
}

fn be32(msg: &[u8], at: usize) -> Option<u32> {
    Some((u32::from(be16(msg, at)?) << 16) | u32::from(be16(msg, at.checked_add(2)?)?))
}

/// Reads the name at `start`: whether it is `label.local` (ASCII case-insensitively), and
/// where the bytes after it begin. Follows compression pointers, at most `MAX_HOPS` of them
/// and `MAX_NAME` octets of labels in all; None for anything malformed.
fn name_at(msg: &[u8], start: usize, label: &[u8]) -> Option<(bool, usize)> {
    let mut pos = start;
    let mut end = None;
    let mut index = 0usize;
    let mut matches = true;
    let mut total = 0usize;
    let mut hops = 0u8;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => {
                let end = end.unwrap_or(pos.checked_add(1)?);
                return Some((matches && index == 2, end));
            }
            0x00 => {
                let n = usize::from(len);
                let text = msg.get(pos.checked_add(1)?..pos.checked_add(1 + n)?)?;
                total += 1 + n;
                if total > MAX_NAME {
                    return None;
                }
                matches &= match index {
                    0 => text.eq_ignore_ascii_case(label),
                    1 => text.eq_ignore_ascii_case(b"local"),
                    _ => false,
                };
                index += 1;
                pos += 1 + n;
            }
            0xC0 => {
                let low = *msg.get(pos.checked_add(1)?)?;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                pos = (usize::from(len & 0x3F) << 8) | usize::from(low);
            }
            _ => return None,
        }
    }
}

/// One resource record at `pos`: whether its name is ours, its type, class (without the
/// top bit), TTL and rdata, and where the next one begins.
fn record_at<'m>(msg: &'m [u8], pos: usize, label: &[u8]) -> Option<(bool, Rec<'m>, u32, usize)> {
    let (ours, end) = name_at(msg, pos, label)?;
    let rtype = be16(msg, end)?;
    let class = be16(msg, end.checked_add(2)?)? & !CLASS_TOP;
    let ttl = be32(msg, end.checked_add(4)?)?;
    let rdlen = usize::from(be16(msg, end.checked_add(8)?)?);
    let start = end.checked_add(10)?;
    let rdata = msg.get(start..start.checked_add(rdlen)?)?;
    Some((ours, (class, rtype, rdata), ttl, start + rdlen))
}

/// The records for our name of class IN among `count` records from `pos`, as 8.2 compares
/// them (a probe's authority section; it parsed once already, so a failure just ends it).
struct Proposed<'m, 'l> {
    msg: &'m [u8],
    pos: usize,
    left: u16,
    label: &'l [u8],
}

impl<'m> Iterator for Proposed<'m, '_> {
    type Item = Rec<'m>;

    fn next(&mut self) -> Option<Rec<'m>> {
        while self.left > 0 {
            self.left -= 1;
            let Some((ours, rec, _, next)) = record_at(self.msg, self.pos, self.label) else {
                self.left = 0;
                return None;
            };
            self.pos = next;
            if ours && rec.0 == CLASS_IN {
                return Some(rec);
            }
        }
        None
    }
}

/// 8.2: our records against another prober's, both sorted and compared in turn; the first
/// difference decides, and a set that runs out first loses. Greater: ours win. Theirs are
/// not stored: each of their records in sorted order is found by a pass over them (the
/// smallest one above the last, and how often it repeats), at most one pass more than we
/// have records.
fn tiebreak<'m>(ours: &Addrs, theirs: impl Fn() -> Proposed<'m, 'm>) -> Tiebreak {
    let (mine, n) = ours.sorted();
    let mut last: Option<Rec<'m>> = None;
    let mut repeats = 0u16;
    for i in 0..=n {
        let next = if repeats > 0 {
            repeats -= 1;
            last
        } else {
            let mut least: Option<Rec<'m>> = None;
            let mut times = 0u16;
            for r in theirs() {
                if last.is_some_and(|l| r <= l) {
                    continue;
                }
                match least {
                    Some(m) if r > m => {}
                    Some(m) if r == m => times = times.saturating_add(1),
                    _ => {
                        least = Some(r);
                        times = 1;
                    }
                }
            }
            repeats = times.saturating_sub(1);
            if least.is_some() {
                last = least;
            }
            least
        };
        let order = match (mine.get(i).filter(|_| i < n), next) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(&m), Some(t)) => cmp_rec(m, t),
        };
        match order {
            Ordering::Greater => return Tiebreak::Win,
            Ordering::Less => return Tiebreak::Lose,
            Ordering::Equal if i >= n => return Tiebreak::Tie,
            Ordering::Equal => {}
        }
    }
    Tiebreak::Tie
}

/// Two records in 8.2's order (class, type, then the rdata's bytes).
fn cmp_rec<'x>(a: Rec<'x>, b: Rec<'x>) -> Ordering {
    a.cmp(&b)
}

/// Reads a whole message against our name (`label`) and addresses. None if any part of it is
/// malformed; trailing bytes are ignored.
fn inspect(msg: &[u8], label: &[u8], addrs: &Addrs) -> Option<Summary> {
    let flags = be16(msg, 2)?;
    if flags & (FLAGS_OPCODE | FLAGS_RCODE) != 0 {
        // 18.3, 18.11: other opcodes and non-zero response codes are ignored. Not malformed.
        return Some(Summary::default());
    }
    let mut s = Summary {
        id: be16(msg, 0)?,
        response: flags & FLAGS_RESPONSE != 0,
        questions: be16(msg, 4)?,
        ..Summary::default()
    };
    let records = [be16(msg, 6)?, be16(msg, 8)?, be16(msg, 10)?];
    let mut pos = 12;
    for _ in 0..s.questions {
        let (ours, end) = name_at(msg, pos, label)?;
        let qtype = be16(msg, end)?;
        let qclass = be16(msg, end + 2)?;
        pos = end + 4;
        let class = qclass & !CLASS_TOP;
        if !ours || (class != CLASS_IN && class != CLASS_ANY) {
            continue;
        }
        s.matched += 1;
        s.qu += u16::from(qclass & CLASS_TOP != 0);
        s.asked |= match qtype {
            TYPE_A => ASK_A,
            TYPE_AAAA => ASK_AAAA,
            TYPE_ANY => ASK_ANY,
            _ => ASK_OTHER,
        };
        s.question.get_or_insert((qtype, qclass));
    }
    let mut authority = (pos, 0u16);
    let mut proposed = false;
    for (section, count) in records.into_iter().enumerate() {
        if section == 1 {
            authority = (pos, count);
        }
        for _ in 0..count {
            let (ours, (class, rtype, rdata), ttl, next) = record_at(msg, pos, label)?;
            pos = next;
            if !ours || class != CLASS_IN {
                continue;
            }
            let mine = addrs.find(rtype, rdata);
            if s.response {
                // 9: identical data is never a conflict; an NSEC only speaks of types.
                s.conflict |= mine == 0 && rtype != TYPE_NSEC && rtype != TYPE_ANY;
            } else if section == 0 {
                if ttl >= TTL / 2 {
                    s.known |= mine;
                }
            } else if section == 1 {
                proposed = true;
            }
        }
    }
    if proposed {
        let (start, count) = authority;
        s.tiebreak = Some(tiebreak(addrs, || Proposed {
            msg,
            pos: start,
            left: count,
            label,
        }));
    }
    Some(s)
}

impl Responder {
    /// Adds the responder's UDP socket to `sockets` (its buffers lent from `buffers`), binds
    /// it to port 5353 and joins 224.0.0.251 (and, feature `ipv6`, ff02::fb) on `iface`.
    /// `name` is the host label (`"smolhttpd"`, or `"smolhttpd.local"`). Nothing is sent
    /// before the first [`poll`](Self::poll). Panics, as smoltcp's `SocketSet::add` does,
    /// when the set has no room for one more socket.
    pub fn new<'a, const RX: usize, const TX: usize>(
        name: &str,
        iface: &mut Interface,
        sockets: &mut SocketSet<'a>,
        buffers: &'a mut Buffers<RX, TX>,
    ) -> Result<Responder, Error> {
        let label = Label::new(parse_label(name).ok_or(Error::Name)?);
        iface
            .join_multicast_group(GROUP)
            .map_err(|_| Error::Multicast)?;
        #[cfg(feature = "ipv6")]
        iface
            .join_multicast_group(GROUP_V6)
            .map_err(|_| Error::Multicast)?;
        let Buffers {
            rx_meta,
            rx,
            tx_meta,
            tx,
        } = buffers;
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
            udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
        );
        // Port 5353 is not 0 and the socket is new: binding cannot fail.
        let _ = socket.bind(PORT);
        // 11: every mDNS message goes out with IP TTL (hop limit) 255.
        socket.set_hop_limit(Some(255));
        let handle = sockets.add(socket);
        Ok(Responder {
            handle,
            base: label,
            label,
            suffix: 1,
            addrs: Addrs::default(),
            phase: Phase::NoAddress,
            next: None,
            pending: 0,
            pending_fams: 0,
            pending_at: Instant::ZERO,
            last_multicast: None,
            window_start: Instant::ZERO,
            window_conflicts: 0,
            tx_since: None,
            stats: Stats::default(),
        })
    }

    /// The name in use, `.local` included (`smolhttpd.local`, `smolhttpd-2.local` after a
    /// conflict).
    pub fn name(&self) -> &str {
        self.label.as_str()
    }

    /// What the responder is doing.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::NoAddress => State::NoAddress,
            Phase::Probing { .. } => State::Probing,
            Phase::Announcing { .. } => State::Announcing,
            Phase::Running => State::Running,
            Phase::Stopped => State::Stopped,
        }
    }

    /// The IPv4 address probed, announced and answered (the interface's first IPv4 address at
    /// the last poll).
    pub fn address(&self) -> Option<Ipv4Address> {
        self.addrs.v4.map(Ipv4Address::from)
    }

    /// The IPv6 addresses probed, announced and answered as `AAAA` records (feature `ipv6`):
    /// the interface's first [`MAX_AAAA`] IPv6 addresses at the last poll, in its order.
    #[cfg(feature = "ipv6")]
    pub fn ipv6_addresses(&self) -> impl Iterator<Item = Ipv6Address> + '_ {
        self.addrs
            .v6
            .iter()
            .take(usize::from(self.addrs.v6_len))
            .map(|a| Ipv6Address::from(*a))
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The responder's socket in the caller's set.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// Reads the datagrams the interface took in, answers them, follows the interface's
    /// addresses and sends the probes and announcements that are due. Call it after
    /// [`crate::Server::poll`] (or `Interface::poll`) in the main loop; what it queues goes
    /// out with the next one.
    pub fn poll(&mut self, now: Instant, iface: &mut Interface, sockets: &mut SocketSet<'_>) {
        if self.phase == Phase::Stopped {
            let socket = sockets.get_mut::<udp::Socket>(self.handle);
            while socket.recv().is_ok() {}
            return;
        }
        // Joined in `new`; the caller may have left the groups since.
        if !iface.has_multicast_group(GROUP) {
            let _ = iface.join_multicast_group(GROUP);
        }
        #[cfg(feature = "ipv6")]
        if !iface.has_multicast_group(GROUP_V6) {
            let _ = iface.join_multicast_group(GROUP_V6);
        }
        self.follow_addresses(now, Addrs::of(iface));
        self.unstick(now, sockets);
        loop {
            let socket = sockets.get_mut::<udp::Socket>(self.handle);
            let Ok((data, meta)) = socket.recv() else {
                break;
            };
            let from = meta.endpoint;
            let to_group = is_group(meta.local_address);
            let on_link = iface.ip_addrs().iter().any(|c| c.contains_addr(&from.addr));
            if let Some((to, msg)) = self.datagram(now, data, from, to_group, on_link) {
                if self.send(sockets, to, msg) {
                    bump(&mut self.stats.answered);
                    bump(&mut self.stats.unicast);
                }
            }
        }
        self.timers(now, sockets);
    }

    /// When to call [`poll`](Self::poll) next at the latest: a datagram waiting, the next
    /// probe, announcement or held-back answer. None: only after a frame arrives.
    pub fn poll_at(&self, now: Instant, sockets: &SocketSet<'_>) -> Option<Instant> {
        if sockets.get::<udp::Socket>(self.handle).can_recv() {
            return Some(now);
        }
        let mut at = self.next;
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a: Instant| a.min(t)));
        if self.pending != 0 {
            consider(self.pending_at);
        }
        if let Some(since) = self.tx_since {
            consider(since + STUCK);
        }
        at
    }

    /// How long the caller may sleep before calling [`poll`](Self::poll) again (None: until
    /// a frame arrives).
    pub fn poll_delay(&self, now: Instant, sockets: &SocketSet<'_>) -> Option<Duration> {
        self.poll_at(now, sockets)
            .map(|t| if t > now { t - now } else { Duration::ZERO })
    }

    /// Says goodbye (10.1): once the name is ours, queues its records with TTL 0 so that
    /// caches drop them, to every group the host has an address for, and stops; the next
    /// server poll sends them. Returns whether they were queued. A stopped responder answers
    /// nothing and sends nothing.
    pub fn goodbye(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let sent = matches!(self.phase, Phase::Announcing { .. } | Phase::Running)
            && self.send_groups(
                sockets,
                self.addrs.families(),
                Msg::Answer {
                    id: 0,
                    records: REC_ADDRS,
                    ttl: 0,
                    flush: true,
                    question: None,
                },
            ) != 0;
        self.phase = Phase::Stopped;
        self.next = None;
        self.pending = 0;
        sent
    }

    /// New addresses (or none): probe for them, or fall silent.
    fn follow_addresses(&mut self, now: Instant, addrs: Addrs) {
        if addrs == self.addrs {
            return;
        }
        self.addrs = addrs;
        if addrs.is_empty() {
            crate::logging::info!("mdns: no address: {} silent", self.name());
            self.phase = Phase::NoAddress;
            self.next = None;
            self.pending = 0;
        } else {
            crate::logging::info!("mdns: {} for {}: probing", self.name(), addrs);
            self.start_probing(now, false);
        }
    }

    fn start_probing(&mut self, now: Instant, after_conflict: bool) {
        let mut delay = jitter(&self.label, &self.addrs);
        if after_conflict {
            if now >= self.window_start + CONFLICT_WINDOW {
                self.window_start = now;
                self.window_conflicts = 0;
            }
            self.window_conflicts = self.window_conflicts.saturating_add(1);
            if self.window_conflicts >= CONFLICT_LIMIT {
                delay = CONFLICT_BACKOFF;
            }
        }
        self.phase = Phase::Probing { sent: 0 };
        self.next = Some(now + delay);
        self.pending = 0;
    }

    /// Another host answered for the name with other data.
    fn conflict(&mut self, now: Instant) {
        match self.phase {
            // 8.1: conflicting responses before the first probe are ignored.
            Phase::Probing { sent } if sent > 0 => {
                bump(&mut self.stats.conflicts);
                self.suffix = self.suffix.saturating_add(1);
                let old =
                    core::mem::replace(&mut self.label, Label::numbered(&self.base, self.suffix));
                crate::logging::info!("mdns: {} is taken: probing {}", old.as_str(), self.name());
                self.start_probing(now, true);
            }
            Phase::Announcing { .. } | Phase::Running => {
                // 9: back to probing, under the same name.
                bump(&mut self.stats.conflicts);
                crate::logging::info!("mdns: conflict for {}: probing again", self.name());
                self.start_probing(now, true);
            }
            _ => {}
        }
    }

    /// The records (`REC_*` bits) that answer the types asked (`ASK_*` bits), less those
    /// the asker knows (7.1): the address records asked for, and the `NSEC` when a type the
    /// name lacks was asked (6.1).
    fn answer(&self, asked: u8, known: u8) -> u8 {
        let have = self.addrs.records();
        let mut records = if asked & ASK_ANY != 0 { have } else { 0 };
        let mut nsec = asked & ASK_OTHER != 0;
        for (ask, rec) in [(ASK_A, REC_A), (ASK_AAAA, REC_AAAA)] {
            if asked & ask != 0 {
                records |= have & rec;
                nsec |= have & rec == 0;
            }
        }
        (records & !known) | if nsec { REC_NSEC } else { 0 }
    }

    /// One datagram in: the unicast answer to send, if any (multicast answers are left in
    /// `pending` for `timers`).
    fn datagram(
        &mut self,
        now: Instant,
        data: &[u8],
        from: IpEndpoint,
        to_group: bool,
        on_link: bool,
    ) -> Option<(IpEndpoint, Msg)> {
        if self.addrs.is_empty() {
            return None;
        }
        let Some(s) = inspect(data, self.label.as_bytes(), &self.addrs) else {
            bump(&mut self.stats.malformed);
            return None;
        };
        if s.response {
            // 6: responses from other ports are not mDNS.
            if from.port == PORT && s.conflict {
                self.conflict(now);
            }
            return None;
        }
        match self.phase {
            Phase::Probing { sent } => {
                if sent > 0 && s.tiebreak == Some(Tiebreak::Lose) {
                    bump(&mut self.stats.deferred);
                    crate::logging::debug!("mdns: a simultaneous probe for {} wins", self.name());
                    self.start_probing(now, false);
                    self.next = Some(now + TIEBREAK_DEFER);
                }
                return None;
            }
            Phase::Announcing { .. } | Phase::Running => {}
            Phase::NoAddress | Phase::Stopped => return None,
        }
        let records = self.answer(s.asked, s.known);
        if records == 0 {
            return None;
        }
        if from.port != PORT {
            // 6.7: a one-shot query, answered to its port; it has exactly one question.
            if s.questions != 1 || !on_link {
                return None;
            }
            let msg = Msg::Answer {
                id: s.id,
                records,
                ttl: LEGACY_TTL,
                flush: false,
                question: s.question,
            };
            return Some((from, msg));
        }
        let recently = self.last_multicast.is_some_and(|t| now < t + RECENT);
        // A probe for the name (records in its authority section) is always defended by
        // multicast: a unicast answer to a prober that is still choosing its address would
        // wait on ARP and arrive after its probing ended.
        let probe = s.tiebreak.is_some();
        if !to_group || (!probe && s.qu == s.matched && recently) {
            // 5.5: sent to our own address; 5.4: QU, and the record was multicast recently.
            if !on_link {
                return None;
            }
            let msg = Msg::Answer {
                id: s.id,
                records,
                ttl: TTL,
                flush: true,
                question: None,
            };
            return Some((from, msg));
        }
        // Multicast, to the group the query came on (a host without an address of that
        // family cannot send there).
        let fams = family(&from.addr) & self.addrs.families();
        if fams == 0 {
            return None;
        }
        let gap = if probe { DEFENCE_GAP } else { MULTICAST_GAP };
        // Multicast answers go out from `timers`, at the end of this poll or when the rate
        // limit allows: queries in one poll share one answer, and an answer that finds the
        // socket blocked is kept until it is not.
        let due = self.last_multicast.map_or(now, |t| t + gap).max(now);
        self.pending_at = if self.pending != 0 {
            self.pending_at.min(due)
        } else {
            due
        };
        self.pending |= records;
        self.pending_fams |= fams;
        None
    }

    /// Probes, announcements and held-back answers that are due.
    fn timers(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        let fams = self.addrs.families();
        // Two rounds: the end of probing and the first announcement fall in one poll.
        for _ in 0..2 {
            match (self.phase, self.next) {
                (_, None) => break,
                (_, Some(at)) if now < at => break,
                (Phase::Probing { sent }, _) if sent < PROBES => {
                    if self.send_groups(sockets, fams, Msg::Probe) != 0 {
                        bump(&mut self.stats.probes);
                        self.phase = Phase::Probing { sent: sent + 1 };
                        self.next = Some(now + PROBE_INTERVAL);
                    } else {
                        self.next = Some(now + SEND_RETRY);
                    }
                    break;
                }
                (Phase::Probing { .. }, _) => {
                    crate::logging::info!("mdns: {} is ours: announcing", self.name());
                    self.phase = Phase::Announcing { sent: 0 };
                }
                (Phase::Announcing { sent }, _) => {
                    let msg = Msg::Answer {
                        id: 0,
                        records: REC_ADDRS,
                        ttl: TTL,
                        flush: true,
                        question: None,
                    };
                    if self.send_groups(sockets, fams, msg) != 0 {
                        bump(&mut self.stats.announcements);
                        self.last_multicast = Some(now);
                        self.pending = 0;
                        self.pending_fams = 0;
                        let sent = sent + 1;
                        if sent >= ANNOUNCEMENTS {
                            self.phase = Phase::Running;
                            self.next = None;
                        } else {
                            self.phase = Phase::Announcing { sent };
                            self.next = Some(now + ANNOUNCE_INTERVAL);
                        }
                    } else {
                        self.next = Some(now + SEND_RETRY);
                    }
                    break;
                }
                (Phase::NoAddress | Phase::Running | Phase::Stopped, _) => {
                    self.next = None;
                    break;
                }
            }
        }
        let answering = matches!(self.phase, Phase::Announcing { .. } | Phase::Running);
        self.pending_fams &= fams;
        if self.pending_fams == 0 {
            self.pending = 0;
        }
        if self.pending != 0 && answering && now >= self.pending_at {
            let msg = Msg::Answer {
                id: 0,
                records: self.pending,
                ttl: TTL,
                flush: true,
                question: None,
            };
            let sent = self.send_groups(sockets, self.pending_fams, msg);
            if sent != 0 {
                bump(&mut self.stats.answered);
                self.last_multicast = Some(now);
            }
            // A group whose copy found no room gets it a little later.
            self.pending_fams &= !sent;
            if self.pending_fams == 0 {
                self.pending = 0;
            } else {
                self.pending_at = now + SEND_RETRY;
            }
        }
    }

    /// Drops the socket's send queue when it has not drained for `STUCK`: a unicast answer
    /// to an address that never answers ARP stays at its head, and smoltcp keeps it there.
    fn unstick(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        if socket.send_queue() == 0 {
            self.tx_since = None;
            return;
        }
        let since = *self.tx_since.get_or_insert(now);
        if now >= since + STUCK {
            crate::logging::debug!("mdns: send queue stuck for {}: dropped", STUCK);
            socket.close();
            let _ = socket.bind(PORT);
            self.tx_since = None;
            bump(&mut self.stats.flushed);
        }
    }

    /// Sends `msg` to the groups of `fams` (`FAM_*` bits); the families it went to.
    fn send_groups(&mut self, sockets: &mut SocketSet<'_>, fams: u8, msg: Msg) -> u8 {
        let mut sent = 0;
        for &(fam, to) in GROUPS {
            if fams & fam != 0 && self.send(sockets, to, msg) {
                sent |= fam;
            }
        }
        sent
    }

    /// Writes `msg` into the socket's send queue for `to`; false when it has no room, or
    /// while the queue does not drain (what is queued then would be dropped with it).
    fn send(&mut self, sockets: &mut SocketSet<'_>, to: IpEndpoint, msg: Msg) -> bool {
        if self.addrs.is_empty() || self.tx_since.is_some() {
            return false;
        }
        let mut measure = Out {
            buf: &mut [],
            len: 0,
        };
        write(&mut measure, &self.label, &self.addrs, msg);
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        match socket.send(measure.len, to) {
            Ok(buf) => {
                write(&mut Out { buf, len: 0 }, &self.label, &self.addrs, msg);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(parse_label("smolhttpd"), Some(&b"smolhttpd"[..]));
        assert_eq!(parse_label("Smol-1.local"), Some(&b"Smol-1"[..]));
        assert_eq!(parse_label("smol.LOCAL."), Some(&b"smol"[..]));
        for bad in ["", ".local", "a.b", "a b", "é", &"x".repeat(64)] {
            assert_eq!(parse_label(bad), None, "{bad:?}");
        }
        let base = Label::new(b"smolhttpd");
        assert_eq!(Label::numbered(&base, 2).as_bytes(), b"smolhttpd-2");
        let long = Label::new("y".repeat(63).as_bytes());
        let n = Label::numbered(&long, 4_000_000_000);
        assert_eq!(n.as_bytes().len(), 63);
        assert!(n.as_bytes().ends_with(b"y-4000000000"));
        assert!(n.as_str().ends_with("y-4000000000.local"));
    }

    #[test]
    fn ram() {
        let responder = core::mem::size_of::<Responder>();
        let buffers = core::mem::size_of::<Buffers>();
        std::println!("Responder: {responder} bytes; Buffers: {buffers} bytes");
        // The IPv6 addresses (3 x 16 bytes) and their count.
        let limit = if cfg!(feature = "ipv6") { 352 } else { 288 };
        assert!(responder <= limit, "{responder}");
        assert!(
            buffers <= RX_BUFFER + TX_BUFFER + 2 * PACKETS * 64,
            "{buffers}"
        );
    }
}
