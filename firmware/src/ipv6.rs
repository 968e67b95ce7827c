//! IPv6 on the firmware (feature `ipv6`): a link-local address from the MAC, an address from
//! the router advertisements of the link (SLAAC, RFC 4862), and `fd69::1/64` when no router
//! has answered within 3 s, as IPv4 falls back to 192.168.69.1 without a DHCP lease. Every
//! address is logged as it comes and goes.
//!
//! - **Link-local** (RFC 4862 5.3): `fe80::/64` with the interface identifier of the MAC
//!   (EUI-64, the universal/local bit flipped): 02:00:00:00:00:01 gives `fe80::ff:fe00:1`. Set
//!   at boot, before the first poll.
//! - **Router discovery** (RFC 4861 6.3.7): three router solicitations to ff02::2, at boot and
//!   4 s apart, until a router advertises; a router also advertises unsolicited from time to
//!   time, and any advertisement counts, whenever it comes.
//! - **SLAAC** (RFC 4862 5.5.3): a prefix option with the A flag, 64 bits long, not
//!   link-local, preferred lifetime within the valid one, gives the address prefix + the
//!   same interface identifier (`fd69::ff:fe00:1` from `fd69::/64`), valid for the prefix's
//!   valid lifetime (renewed by later advertisements, with the two-hour rule of 5.5.3 e); a
//!   router lifetime above zero makes the router the default IPv6 route for that long. One
//!   such address at a time (the interface holds three: IPv4, link-local, and this or the
//!   fallback); a second prefix is ignored while the first is valid. When it expires, the
//!   fallback comes back and the solicitations start again.
//! - **Fallback**: `fd69::1/64`, on-link, no route, from 3 s after boot while no SLAAC address
//!   is held; a SLAAC address replaces it.
//! - No duplicate address detection (smoltcp has none): the addresses are the MAC's or the
//!   one fixed fallback, as IPv4's static address is.
//!
//! **Why not smoltcp's `proto-ipv6-slaac`**: in smoltcp 0.14 its router discovery never leaves
//! the discovering phase when no router answers: after the third solicitation its `poll_at`
//! returns the time of a fourth one that is never sent (`Slaac::rs_required` needs a
//! solicitation left, `rs_sent` is the only way out), so from 12 s after boot on
//! `Interface::poll_at` is a moment in the past, for good, and a loop that sleeps until then
//! (`Server::poll_delay` reads it) never sleeps again: 100 % of a core on a link without a
//! router, the fallback case. (And `Interface::poll_at` takes `Option::min` of the sockets'
//! deadline and SLAAC's: when SLAAC has none, `None` sorts first and hides theirs, e.g. a TCP
//! retransmission's.) Checked on the host: solicitations at 0, 4 and 8 s, then `poll_at`
//! stays at 12 s for good, with a DHCP socket in the set. So the firmware does the few steps
//! itself: [`Tap`] wraps the NIC and copies what each router advertisement says (parsed and
//! checksum-checked with smoltcp's wire types) before the interface sees the frame, and
//! [`Ipv6::poll`] in the main loop turns it into addresses and a route, and sends the
//! solicitations, with [`Ipv6::poll_at`] for its deadlines. It costs no socket (a raw ICMPv6
//! socket would cost a socket storage entry and its buffers, ~700 bytes): under 200 bytes of
//! RAM. The interface's multicast group table (smoltcp's default, 4) holds 224.0.0.251,
//! ff02::fb and one solicited-node group: every address here ends in 00:00:01.

use core::fmt::Write as _;

use smoltcp::iface::Interface;
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Message, Icmpv6Packet,
    Icmpv6Repr, IpCidr, IpProtocol, Ipv6Address, Ipv6Cidr, Ipv6Packet, Ipv6Repr,
    NdiscPrefixInfoFlags, NdiscRepr,
};

/// The address used when no router advertises: fd69::1/64.
pub const FALLBACK: Ipv6Cidr = Ipv6Cidr::new(Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 1), 64);
/// Without a SLAAC address by then, the fallback.
pub const FALLBACK_WAIT: Duration = Duration::from_secs(3);
/// Router solicitations at most in a round, and their interval (RFC 4861 10).
const SOLICITATIONS: u8 = 3;
const SOLICITATION_INTERVAL: Duration = Duration::from_secs(4);
/// RFC 4862 5.5.3 e: a valid lifetime left above this is not cut below it by an advertisement.
const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);
/// ff02::2 and its Ethernet group.
const ALL_ROUTERS: Ipv6Address = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_ROUTERS_MAC: EthernetAddress = EthernetAddress([0x33, 0x33, 0, 0, 0, 2]);

/// What one router advertisement said.
#[derive(Debug, Clone, Copy)]
pub struct Advert {
    /// When it came.
    at: Instant,
    /// The router (the advertisement's link-local source).
    router: Ipv6Address,
    /// How long it is a default router (zero: not one).
    router_lifetime: Duration,
    /// A /64 prefix for SLAAC and its valid lifetime.
    prefix: Option<(Ipv6Address, Duration)>,
}

/// The NIC, with a look at every frame it gives the interface: the last router advertisement
/// seen waits in it until [`Tap::take`].
pub struct Tap<D> {
    inner: D,
    heard: Option<Advert>,
}

impl<D> Tap<D> {
    pub fn new(inner: D) -> Self {
        Tap { inner, heard: None }
    }

    /// The last router advertisement since the last call.
    pub fn take(&mut self) -> Option<Advert> {
        self.heard.take()
    }
}

pub struct TapRx<'a, T> {
    inner: T,
    heard: &'a mut Option<Advert>,
    now: Instant,
}

impl<T: phy::RxToken> phy::RxToken for TapRx<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let TapRx { inner, heard, now } = self;
        inner.consume(|frame| {
            if let Some(advert) = advert(frame, now) {
                *heard = Some(advert);
            }
            f(frame)
        })
    }
}

impl<D: Device> Device for Tap<D> {
    type RxToken<'a>
        = TapRx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Tap { inner, heard } = self;
        let (rx, tx) = inner.receive(now)?;
        Some((
            TapRx {
                inner: rx,
                heard,
                now,
            },
            tx,
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A valid router advertisement in `frame` (RFC 4861 6.1.2: hop limit 255, a link-local
/// source, ICMPv6 code 0 and a good checksum, options whole), and what it says.
fn advert(frame: &[u8], now: Instant) -> Option<Advert> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.next_header() != IpProtocol::Icmpv6
        || ip.hop_limit() != 255
        || !src.is_unicast_link_local()
    {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    if icmp.msg_type() != Icmpv6Message::RouterAdvert || icmp.msg_code() != 0 {
        return None;
    }
    let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).ok()?;
    let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
        router_lifetime,
        prefix_info,
        ..
    }) = repr
    else {
        return None;
    };
    let prefix = prefix_info
        .filter(|p| {
            p.flags.contains(NdiscPrefixInfoFlags::ADDRCONF)
                && p.prefix_len == 64
                && !p.prefix.is_unicast_link_local()
                && p.preferred_lifetime <= p.valid_lifetime
                && p.valid_lifetime > Duration::ZERO
        })
        .map(|p| (p.prefix, p.valid_lifetime));
    Some(Advert {
        at: now,
        router: src,
        router_lifetime,
        prefix,
    })
}

/// The IPv6 state of the interface: see the module docs.
pub struct Ipv6 {
    mac: EthernetAddress,
    booted: Instant,
    /// Solicitations left in this round, and when the next is due.
    solicit: u8,
    next_solicit: Instant,
    /// The SLAAC address and until when it is valid.
    slaac: Option<(Ipv6Cidr, Instant)>,
    /// The default router and until when.
    router: Option<(Ipv6Address, Instant)>,
    fallback: bool,
}

impl Ipv6 {
    /// Gives `iface` its link-local address (and says so); the rest follows from the polls.
    pub fn new(mac: EthernetAddress, now: Instant, iface: &mut Interface) -> Ipv6 {
        let link_local = smolhttpd::link_local(mac);
        add(iface, link_local);
        log(link_local, "link-local", None);
        Ipv6 {
            mac,
            booted: now,
            solicit: SOLICITATIONS,
            next_solicit: now,
            slaac: None,
            router: None,
            fallback: false,
        }
    }

    /// Takes in `heard` (from [`Tap::take`]), expires what has run out, falls back, and sends
    /// a router solicitation through `device` when one is due. Not inlined: its locals (the
    /// frame of a solicitation, log lines) would stay in the main loop's frame, under every
    /// poll of the server.
    #[inline(never)]
    pub fn poll(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        heard: Option<Advert>,
        device: &mut impl Device,
    ) {
        if let Some(advert) = heard {
            self.advert(iface, advert);
        }
        if let Some((cidr, until)) = self.slaac.filter(|&(_, until)| now >= until) {
            self.slaac = None;
            remove(iface, cidr);
            log(cidr, "slaac, expired", None);
            // The router has gone quiet: ask again.
            self.solicit = SOLICITATIONS;
            self.next_solicit = until;
        }
        if let Some((router, _)) = self.router.filter(|&(_, until)| now >= until) {
            self.router = None;
            iface.routes_mut().remove_default_ipv6_route();
            log_router(router, "expired");
        }
        if self.slaac.is_none() && !self.fallback && now >= self.booted + FALLBACK_WAIT {
            self.fallback = true;
            add(iface, FALLBACK);
            log(FALLBACK, "fallback, no router advertisement", None);
        }
        if self.solicit > 0 && now >= self.next_solicit && solicit(device, now, self.mac) {
            self.solicit -= 1;
            self.next_solicit = now + SOLICITATION_INTERVAL;
        }
    }

    /// When [`poll`](Self::poll) has something to do at the latest (None: only when a frame
    /// comes).
    pub fn poll_at(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if self.solicit > 0 {
            consider(self.next_solicit);
        }
        if self.slaac.is_none() && !self.fallback {
            consider(self.booted + FALLBACK_WAIT);
        }
        if let Some((_, until)) = self.slaac {
            consider(until);
        }
        if let Some((_, until)) = self.router {
            consider(until);
        }
        at
    }

    fn advert(&mut self, iface: &mut Interface, advert: Advert) {
        let now = advert.at;
        // A router answered: no more solicitations this round.
        self.solicit = 0;
        if advert.router_lifetime > Duration::ZERO {
            let until = now + advert.router_lifetime;
            if self.router.is_none_or(|(r, _)| r != advert.router) {
                let _ = iface.routes_mut().add_default_ipv6_route(advert.router);
                log_router(advert.router, "default route");
            }
            self.router = Some((advert.router, until));
        } else if self.router.is_some_and(|(r, _)| r == advert.router) {
            self.router = None;
            iface.routes_mut().remove_default_ipv6_route();
            log_router(advert.router, "no longer a default router");
        }
        let Some((prefix, valid)) = advert.prefix else {
            return;
        };
        let cidr = smolhttpd::eui64_address(prefix, self.mac);
        match self.slaac {
            Some((ours, until)) if ours == cidr => {
                // 5.5.3 e: an advertisement may lengthen the lifetime at will, shorten it to
                // no less than two hours.
                let left = if until > now {
                    until - now
                } else {
                    Duration::ZERO
                };
                let new = if valid > TWO_HOURS || valid > left {
                    now + valid
                } else if left <= TWO_HOURS {
                    until
                } else {
                    now + TWO_HOURS
                };
                self.slaac = Some((ours, new));
            }
            // One SLAAC address at a time.
            Some(_) => {}
            None => {
                if self.fallback {
                    self.fallback = false;
                    remove(iface, FALLBACK);
                }
                add(iface, cidr);
                self.slaac = Some((cidr, now + valid));
                log(cidr, "slaac", Some((advert.router, valid)));
            }
        }
    }
}

fn add(iface: &mut Interface, cidr: Ipv6Cidr) {
    iface.update_ip_addrs(|addrs| {
        if !addrs.contains(&IpCidr::Ipv6(cidr)) && addrs.push(IpCidr::Ipv6(cidr)).is_err() {
            log::error!("no room for another address (iface-max-addr-count)");
        }
    });
}

fn remove(iface: &mut Interface, cidr: Ipv6Cidr) {
    iface.update_ip_addrs(|addrs| addrs.retain(|a| *a != IpCidr::Ipv6(cidr)));
}

/// Sends a router solicitation (from the link-local address, with the MAC as source
/// link-layer address option) to ff02::2; false when the NIC had no room.
fn solicit(device: &mut impl Device, now: Instant, mac: EthernetAddress) -> bool {
    let Some(tx) = device.transmit(now) else {
        return false;
    };
    let src = smolhttpd::link_local(mac).address();
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
        lladdr: Some(mac.into()),
    });
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: ALL_ROUTERS,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: ALL_ROUTERS_MAC,
        ethertype: EthernetProtocol::Ipv6,
    };
    let len = eth.buffer_len() + ip.buffer_len() + icmp.buffer_len();
    phy::TxToken::consume(tx, len, |buf| {
        let mut frame = EthernetFrame::new_unchecked(buf);
        eth.emit(&mut frame);
        let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet);
        let mut message = Icmpv6Packet::new_unchecked(packet.payload_mut());
        icmp.emit(
            &src,
            &ALL_ROUTERS,
            &mut message,
            &ChecksumCapabilities::default(),
        );
    });
    true
}

/// `address fd69::ff:fe00:1/64 (slaac from fe80::1, valid 3600 s), serving
/// http://[fd69::ff:fe00:1]/`: the line firmware-test.sh reads.
fn log(cidr: Ipv6Cidr, how: &str, from: Option<(Ipv6Address, Duration)>) {
    let mut line = heapless::String::<120>::new();
    let _ = write!(line, "address {cidr} ({how}");
    if let Some((router, valid)) = from {
        let _ = write!(line, " from {router}, valid {} s", valid.secs());
    }
    let _ = write!(line, ")");
    if !how.ends_with("expired") && !cidr.address().is_unicast_link_local() {
        let _ = write!(line, ", serving http://[{}]/", cidr.address());
    }
    log::info!("{line}");
}

fn log_router(router: Ipv6Address, what: &str) {
    let mut line = heapless::String::<80>::new();
    let _ = write!(line, "router {router}: {what}");
    log::info!("{line}");
}
