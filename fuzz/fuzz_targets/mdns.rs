//! Arbitrary datagrams into the mDNS responder, through the same simulated network as
//! `tests/mdns.rs`: the host runs the HTTP server and the responder on one interface, wired
//! as a main loop would, and a peer host sends the datagrams.
//!
//! The input is a list of datagrams, each `[control][length][length bytes]` (the last one
//! takes what is left). Control bits:
//!
//! - bits 0-1: who sends it: the peer from port 5353 to 224.0.0.251; the peer from its
//!   one-shot port 40000 to the group; the peer from 5353 to the host's own address; or a
//!   silent on-link address (192.168.69.77, which never answers ARP) from port 40001;
//! - bits 2-3: simulated time to let pass after it: 0, 5 ms, 300 ms or 1.5 s;
//! - bit 4: every 0xFE byte becomes the name `smolhttpd.local` in wire form and every 0xFD
//!   `smolhttpd-2.local`, so that the fuzzer reaches what is only parsed for our name;
//! - bit 5: the host's addresses change first (192.168.69.1, .7, none, in turn; with IPv6,
//!   192.168.69.1 + fd69::1 + fe80::ff:fe00:1, .7 alone, none, fe80::ff:fe00:1 alone);
//! - bit 6 (with IPv6): over IPv6 instead: to ff02::fb, to fd69::1, or from a silent
//!   link-local address (fe80::77, which never answers neighbour solicitations).
//!
//! IPv6 is on when this crate is built with its `ipv6` feature, the library's (default)
//! feature mirrored: the shared harness asks for it by that name.
//!
//! Invariants: nothing panics or spins (the harness asserts the simulation moves on);
//! everything the host sends from port 5353 parses with the tests' own DNS parser, names only
//! `smolhttpd.local` or `smolhttpd-N.local` and carries only A and AAAA records with an
//! address the host had, or NSECs; and 10 s after the input, with no more traffic, the
//! responder is running again (or has no address).
//!
//! One simulated network serves all inputs of a run (its buffers are leaked once), so the
//! responder's state carries over between inputs as in a long-running process.
#![no_main]
// `ipv6` is this crate's feature only if its Cargo.toml declares it.
#![allow(unexpected_cfgs)]

#[path = "../../tests/mdns_net/mod.rs"]
mod net;

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use net::{dns, udp_frame, v4, Net, GROUP, HOST_IP};
#[cfg(feature = "ipv6")]
use net::{udp6_frame, v6, HOST_IP6, HOST_LL};
use smolhttpd::mdns::State;
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address};

const OTHER_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 7);

/// The host's address sets, in turn (the first is the one the network starts with).
fn addr_sets() -> Vec<Vec<IpCidr>> {
    #[cfg(not(feature = "ipv6"))]
    return vec![vec![v4(HOST_IP)], vec![v4(OTHER_IP)], vec![]];
    #[cfg(feature = "ipv6")]
    return vec![
        vec![v4(HOST_IP), v6(HOST_IP6), v6(HOST_LL)],
        vec![v4(OTHER_IP)],
        vec![],
        vec![v6(HOST_LL)],
    ];
}

fn new_net() -> Net {
    #[cfg(not(feature = "ipv6"))]
    return Net::new("smolhttpd");
    #[cfg(feature = "ipv6")]
    return Net::dual("smolhttpd");
}

thread_local! {
    static NET: RefCell<(Net, usize)> = RefCell::new((new_net(), 0));
}

fn wire_name(label: &str) -> Vec<u8> {
    let mut v = vec![label.len() as u8];
    v.extend_from_slice(label.as_bytes());
    v.extend_from_slice(b"\x05local\x00");
    v
}

/// Checks what the host sent from port 5353.
fn check(net: &mut Net) {
    for s in net.take_mdns() {
        let m = dns::parse(&s.payload)
            .unwrap_or_else(|e| panic!("unparsable mDNS message {:02x?}: {e}", s.payload));
        let names = m.questions.iter().map(|q| &q.name).chain(
            m.answers
                .iter()
                .chain(&m.authority)
                .chain(&m.additional)
                .map(|r| &r.name),
        );
        for name in names {
            let label = name.strip_suffix(".local").expect("a .local name");
            let ok = label == "smolhttpd"
                || label
                    .strip_prefix("smolhttpd-")
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2));
            assert!(ok, "sent a record for {name}");
        }
        let had = |rdata: &[u8]| {
            let addr = match rdata.len() {
                4 => IpAddress::Ipv4(Ipv4Address::from(<[u8; 4]>::try_from(rdata).unwrap())),
                #[cfg(feature = "ipv6")]
                16 => IpAddress::Ipv6(smoltcp::wire::Ipv6Address::from(
                    <[u8; 16]>::try_from(rdata).unwrap(),
                )),
                _ => return false,
            };
            addr_sets().iter().flatten().any(|c| c.address() == addr)
        };
        for r in m.answers.iter().chain(&m.authority).chain(&m.additional) {
            match r.rtype {
                dns::A => assert!(
                    r.rdata.len() == 4 && had(&r.rdata),
                    "A record with {:?}",
                    r.rdata
                ),
                #[cfg(feature = "ipv6")]
                dns::AAAA => assert!(
                    r.rdata.len() == 16 && had(&r.rdata),
                    "AAAA record with {:?}",
                    r.rdata
                ),
                dns::NSEC => {}
                t => panic!("record of type {t}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    NET.with(|cell| {
        let (net, turn) = &mut *cell.borrow_mut();
        net.received.clear();
        net.take_frames();
        let mut rest = data;
        while let Some((&control, tail)) = rest.split_first() {
            let (len, tail) = match tail.split_first() {
                Some((&len, tail)) => (usize::from(len).min(tail.len()), tail),
                None => (0, tail),
            };
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            let mut payload = Vec::with_capacity(bytes.len());
            for &b in bytes {
                match b {
                    0xFE if control & 0x10 != 0 => payload.extend(wire_name("smolhttpd")),
                    0xFD if control & 0x10 != 0 => payload.extend(wire_name("smolhttpd-2")),
                    b => payload.push(b),
                }
            }
            // One Ethernet frame's worth (the peer's stack does not fragment).
            payload.truncate(1400);
            if control & 0x20 != 0 {
                let sets = addr_sets();
                *turn = (*turn + 1) % sets.len();
                let set = &sets[*turn];
                net.iface.update_ip_addrs(|a| {
                    a.clear();
                    for cidr in set {
                        a.push(*cidr).unwrap();
                    }
                });
            }
            #[cfg(feature = "ipv6")]
            let over_ipv6 = control & 0x40 != 0;
            #[cfg(not(feature = "ipv6"))]
            let over_ipv6 = false;
            match (over_ipv6, control & 3) {
                (false, 0) => net.query_from_5353(&payload),
                (false, 1) => net.query_oneshot(&payload),
                (false, 2) => {
                    let to = IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 5353);
                    net.peer_send(net.peer_mdns, &payload, to);
                }
                (false, _) => net.inject(udp_frame(
                    [2, 0, 0, 0, 0, 0x77],
                    (Ipv4Address::new(192, 168, 69, 77), 40001),
                    (GROUP, 5353),
                    &payload,
                )),
                #[cfg(feature = "ipv6")]
                (true, 0) => net.query6_from_5353(&payload),
                #[cfg(feature = "ipv6")]
                (true, 1) => net.query6_oneshot(&payload),
                #[cfg(feature = "ipv6")]
                (true, 2) => {
                    let to = IpEndpoint::new(IpAddress::Ipv6(HOST_IP6), 5353);
                    net.peer_send(net.peer_mdns, &payload, to);
                }
                #[cfg(feature = "ipv6")]
                (true, _) => net.inject(udp6_frame(
                    [2, 0, 0, 0, 0, 0x77],
                    (
                        smoltcp::wire::Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x77),
                        40001,
                    ),
                    (net::GROUP6, 5353),
                    &payload,
                )),
                #[allow(unreachable_patterns)]
                _ => {}
            }
            let pause = [0, 5, 300, 1500][usize::from(control >> 2 & 3)];
            net.advance(Duration::from_millis(pause));
            check(net);
        }
        net.advance(Duration::from_secs(10));
        check(net);
        let state = net.mdns.state();
        assert!(
            state == State::Running || (state == State::NoAddress && addr_sets()[*turn].is_empty()),
            "{state} 10 s after the input"
        );
    });
});
