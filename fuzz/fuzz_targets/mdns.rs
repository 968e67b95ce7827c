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
//! - bit 5: the host's address changes first (192.168.69.1, .7, none, in turn).
//!
//! Invariants: nothing panics or spins (the harness asserts the simulation moves on);
//! everything the host sends from port 5353 parses with the tests' own DNS parser, names only
//! `smolhttpd.local` or `smolhttpd-N.local` and carries only A records with an address the
//! host had, or NSECs; and 10 s after the input, with no more traffic, the responder is
//! running again (or has no address).
//!
//! One simulated network serves all inputs of a run (its buffers are leaked once), so the
//! responder's state carries over between inputs as in a long-running process.
#![no_main]

#[path = "../../tests/mdns_net/mod.rs"]
mod net;

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use net::{dns, udp_frame, Net, GROUP, HOST_IP};
use smolhttpd::mdns::State;
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address};

const ADDRS: [Option<Ipv4Address>; 3] =
    [Some(HOST_IP), Some(Ipv4Address::new(192, 168, 69, 7)), None];

thread_local! {
    static NET: RefCell<(Net, usize)> = RefCell::new((Net::new("smolhttpd"), 0));
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
        for r in m.answers.iter().chain(&m.authority).chain(&m.additional) {
            match r.rtype {
                dns::A => assert!(
                    ADDRS
                        .iter()
                        .flatten()
                        .any(|a| a.octets()[..] == r.rdata[..]),
                    "A record with {:?}",
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
                *turn = (*turn + 1) % ADDRS.len();
                let addr = ADDRS[*turn];
                net.iface.update_ip_addrs(|a| {
                    a.clear();
                    if let Some(ip) = addr {
                        a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap();
                    }
                });
            }
            match control & 3 {
                0 => net.query_from_5353(&payload),
                1 => net.query_oneshot(&payload),
                2 => {
                    let to = IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 5353);
                    net.peer_send(net.peer_mdns, &payload, to);
                }
                _ => net.inject(udp_frame(
                    [2, 0, 0, 0, 0, 0x77],
                    (Ipv4Address::new(192, 168, 69, 77), 40001),
                    (GROUP, 5353),
                    &payload,
                )),
            }
            let pause = [0, 5, 300, 1500][usize::from(control >> 2 & 3)];
            net.advance(Duration::from_millis(pause));
            check(net);
        }
        net.advance(Duration::from_secs(10));
        check(net);
        let state = net.mdns.state();
        assert!(
            state == State::Running || (state == State::NoAddress && ADDRS[*turn].is_none()),
            "{state} 10 s after the input"
        );
    });
});
