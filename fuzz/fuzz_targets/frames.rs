//! Whole Ethernet frames through the TAP offload path's `MssTable` and into the server.
//!
//! The input is a list of frames, each `[control][length][length bytes]` (the last one takes
//! what is left). The first byte of the input picks the tap's MTU (bits 0-1) and the family of
//! the frames this file wraps (bit 2: IPv6, else IPv4). Control bits:
//!
//! - bit 0: fix up the checksums before the frame is fed (IPv4 header and TCP, or TCP over
//!   IPv6; else they stay as the fuzzer wrote them, mostly wrong);
//! - bit 1: the frame goes the other way, through `MssTable::transmit` as if the server sent
//!   it (and nowhere else); else through `MssTable::receive` and then, as the device passes
//!   every frame up, into the simulated server through its gate;
//! - bit 2: the bytes are a TCP header and payload, wrapped in an Ethernet and IPv4 or IPv6
//!   header between the server (192.168.69.1 or fd69::1, port 80) and a peer; else they are
//!   the whole frame (of either family, or neither);
//! - bit 3: the peer is the simulated client host (192.168.69.100, which answers ARP and
//!   resets what it does not know; over IPv6 fd69::100, which the simulation does not have);
//!   else a silent on-link address 192.168.69.70-73 or fd69::70-73 (bits 6-7);
//! - bits 4-5: simulated time to let pass after the frame: 0, 10 ms, 300 ms or 2 s.
//!
//! Invariants: nothing panics; a frame whose checksums do not verify (by this file's own
//! arithmetic) leaves `receive` unchanged; one that `receive` changed verifies before and
//! after; the table never holds more than its capacity nor an MSS below its family's floor; a
//! frame `transmit` marks `NEEDS_CSUM` verifies once the sum is finished from `csum_start`; a
//! GSO header has its family's type (`TCPV4` 1, `TCPV6` 4), a `csum_start` and `hdr_len` at
//! the TCP header, and never asks for segments larger than the wire (MTU − 40 or − 60) or
//! smaller than the floor (RFC 6691: option bytes count against the MSS); and once the input
//! stops and 60 s of simulated time pass, every slot of the server listens again.
//!
//! One simulated network serves all inputs of a run (the harness leaks its buffers), so the
//! server's state carries over as in a long-running process; each input gets a fresh table.
//! The simulated server has no IPv6 address: IPv6 frames exercise the table and the gate, and
//! the server's interface drops them.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;

use common::Sim;
use libfuzzer_sys::fuzz_target;
use smolhttpd::tap::{ConnKey, MssTable, Received, VNET_HDR};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpVersion, Ipv4Address, Ipv6Address};

const SLOTS: usize = 2;
/// Connections the table keeps: small, so eviction runs.
const TABLE: usize = 8;
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_IP: [u8; 4] = [192, 168, 69, 1];
const CLIENT_IP: [u8; 4] = [192, 168, 69, 100];
/// fd69::, the IPv6 prefix the server would serve on.
const PREFIX6: [u8; 8] = [0xfd, 0x69, 0, 0, 0, 0, 0, 0];

thread_local! {
    static SIM: RefCell<Sim<SLOTS>> = RefCell::new(Sim::new());
}

/// The one's-complement sum of `b` as big-endian words, added to `sum`, folded.
fn ones_sum(b: &[u8], mut sum: u32) -> u16 {
    for w in b.chunks(2) {
        sum += (u32::from(w[0]) << 8) | u32::from(*w.get(1).unwrap_or(&0));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A TCP frame's family, IP header length and IP packet length (IPv4 total length, or 40 +
/// IPv6 payload length), when its lengths are sane: IPv4, or IPv6 with TCP as the next header
/// of the fixed header.
fn ip_tcp(f: &[u8]) -> Option<(IpVersion, usize, usize)> {
    if f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[14] >> 4 == 4 && f[23] == 6 {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        return (ihl >= 20 && total >= ihl + 20 && 14 + total <= f.len()).then_some((
            IpVersion::Ipv4,
            ihl,
            total,
        ));
    }
    if f.len() >= 54 && f[12..14] == [0x86, 0xdd] && f[14] >> 4 == 6 && f[20] == 6 {
        let total = 40 + usize::from(u16::from_be_bytes([f[18], f[19]]));
        return (total >= 60 && 14 + total <= f.len()).then_some((IpVersion::Ipv6, 40, total));
    }
    None
}

/// The pseudo-header sum of the TCP segment of `f`: both addresses, 6 and the TCP length.
fn pseudo(f: &[u8], version: IpVersion, ihl: usize, total: usize) -> u32 {
    let addrs = if version == IpVersion::Ipv4 {
        &f[26..34]
    } else {
        &f[22..54]
    };
    u32::from(ones_sum(addrs, 6 + (total - ihl) as u32))
}

/// The checksums of a TCP frame verify (the IPv4 header's, and TCP's).
fn checksums_ok(f: &[u8]) -> bool {
    let Some((v, ihl, total)) = ip_tcp(f) else {
        return false;
    };
    (v != IpVersion::Ipv4 || ones_sum(&f[14..14 + ihl], 0) == 0xffff)
        && ones_sum(&f[14 + ihl..14 + total], pseudo(f, v, ihl, total)) == 0xffff
}

/// Sets the checksums of a TCP frame right.
fn fix_checksums(f: &mut [u8]) {
    let Some((v, ihl, total)) = ip_tcp(f) else {
        return;
    };
    if v == IpVersion::Ipv4 {
        f[24..26].fill(0);
        let c = !ones_sum(&f[14..14 + ihl], 0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let tcp = 14 + ihl;
    f[tcp + 16..tcp + 18].fill(0);
    let c = !ones_sum(&f[tcp..14 + total], pseudo(f, v, ihl, total));
    f[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
}

/// Sets the IPv4 header checksum of `f` right (transmit does not check it).
fn fix_ipv4_header(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].fill(0);
    let c = !ones_sum(&f[14..14 + ihl], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// The source address of a frame `ip_tcp` accepts.
fn src_addr(f: &[u8], version: IpVersion) -> IpAddress {
    if version == IpVersion::Ipv4 {
        IpAddress::Ipv4(Ipv4Address::new(f[26], f[27], f[28], f[29]))
    } else {
        let mut a = [0; 16];
        a.copy_from_slice(&f[22..38]);
        IpAddress::Ipv6(Ipv6Address::from(a))
    }
}

/// The IPv6 address fd69::`host`.
fn ip6(host: u8) -> [u8; 16] {
    let mut a = [0; 16];
    a[..8].copy_from_slice(&PREFIX6);
    a[15] = host;
    a
}

/// `seg` (a TCP header and payload, zero-padded to 20 bytes) in an Ethernet and IPv4 or IPv6
/// header (as the addresses' length is) from `src` to `dst`, with the server's side on port 80.
fn wrap(seg: &[u8], src: ([u8; 6], &[u8]), dst: ([u8; 6], &[u8]), to_server: bool) -> Vec<u8> {
    let mut tcp = seg.to_vec();
    tcp.resize(tcp.len().max(20), 0);
    let port = if to_server { 2 } else { 0 };
    tcp[port..port + 2].copy_from_slice(&80u16.to_be_bytes());
    let mut f = Vec::with_capacity(54 + tcp.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if src.1.len() == 4 {
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f[16..18].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    } else {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
    }
    f.extend_from_slice(src.1);
    f.extend_from_slice(dst.1);
    f.extend_from_slice(&tcp);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let mtu = [1500, 576, 68, 9000][usize::from(pick & 3)];
    let v6 = pick & 4 != 0;
    let mut table = MssTable::with_capacity(mtu, TABLE);
    let floor4 = usize::from(table.floor(IpVersion::Ipv4));
    let floor6 = usize::from(table.floor(IpVersion::Ipv6));
    let floor = |v: IpVersion| if v == IpVersion::Ipv4 { floor4 } else { floor6 };
    let headers = |v: IpVersion| if v == IpVersion::Ipv4 { 40 } else { 60 };
    SIM.with(|sim| {
        let mut sim = sim.borrow_mut();
        while let [ctl, tail @ ..] = rest {
            let (len, body) = match tail.split_first() {
                Some((&len, body)) => (usize::from(len).min(body.len()), body),
                None => (0, tail),
            };
            let (bytes, next) = body.split_at(len);
            rest = next;
            let received = ctl & 2 == 0;
            let mut frame = if ctl & 4 != 0 {
                let n = ctl >> 6;
                let (client6, peer6, server6) = (ip6(100), ip6(70 + n), ip6(1));
                let peer4 = [192, 168, 69, 70 + n];
                let peer: ([u8; 6], &[u8]) = match (ctl & 8 != 0, v6) {
                    (true, false) => (CLIENT_MAC, &CLIENT_IP),
                    (true, true) => (CLIENT_MAC, &client6),
                    (false, false) => ([2, 0, 0, 0, 1, n], &peer4),
                    (false, true) => ([2, 0, 0, 0, 1, n], &peer6),
                };
                let server: ([u8; 6], &[u8]) = if v6 {
                    (SERVER_MAC, &server6)
                } else {
                    (SERVER_MAC, &SERVER_IP)
                };
                if received {
                    wrap(bytes, peer, server, true)
                } else {
                    wrap(bytes, server, peer, false)
                }
            } else {
                bytes.to_vec()
            };
            if ctl & 1 != 0 {
                fix_checksums(&mut frame);
            }
            let now = sim.now;
            if received {
                let before = frame.clone();
                let valid = checksums_ok(&frame);
                let got = table.receive(&mut frame, now);
                if !valid {
                    assert_eq!(frame, before, "a frame with a bad checksum was changed");
                }
                if got == Received::BadChecksum {
                    assert!(!valid, "a valid frame reported as a bad checksum");
                }
                if frame != before {
                    assert!(
                        valid && checksums_ok(&frame),
                        "a rewrite broke the checksum"
                    );
                    assert!(matches!(got, Received::Syn { raised: true, .. }));
                }
                if let Received::Syn { learned: true, .. } = got {
                    let (v, ihl, _) = ip_tcp(&frame).expect("a SYN is a TCP segment");
                    let tcp = 14 + ihl;
                    let key = ConnKey {
                        peer: src_addr(&frame, v),
                        peer_port: u16::from_be_bytes([frame[tcp], frame[tcp + 1]]),
                        port: u16::from_be_bytes([frame[tcp + 2], frame[tcp + 3]]),
                    };
                    let mss = table.mss(&key).expect("a learned MSS is kept");
                    let floor = floor(v);
                    assert!(
                        usize::from(mss) >= floor,
                        "{v}: MSS {mss} below the floor {floor}"
                    );
                }
                sim.inject(frame);
            } else {
                let head: [u8; VNET_HDR] = table.transmit(&mut frame, now);
                let field = |i: usize| usize::from(u16::from_ne_bytes([head[i], head[i + 1]]));
                let tcp = ip_tcp(&frame);
                if let (1, Some((v, ihl, total))) = (head[0], tcp) {
                    // NEEDS_CSUM: the field holds the pseudo-header sum; finish it as the
                    // kernel does and the segment verifies.
                    assert_eq!(
                        (field(6), field(8)),
                        (14 + ihl, 16),
                        "csum_start, csum_offset"
                    );
                    let (start, at) = (14 + ihl, 14 + ihl + 16);
                    let partial = u32::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
                    assert_eq!(
                        partial,
                        pseudo(&frame, v, ihl, total),
                        "{v}: not the pseudo sum"
                    );
                    let mut done = frame.clone();
                    done[at..at + 2].fill(0);
                    let c = !ones_sum(&done[start..14 + total], partial);
                    done[at..at + 2].copy_from_slice(&c.to_be_bytes());
                    if v == IpVersion::Ipv4 {
                        fix_ipv4_header(&mut done);
                    }
                    assert!(
                        checksums_ok(&done),
                        "{v}: the finished checksum does not verify"
                    );
                }
                if head[1] != 0 {
                    assert_eq!(head[0], 1, "GSO without NEEDS_CSUM");
                    let hdr_len = field(2);
                    let gso = field(4);
                    let (v, ihl, total) = tcp.expect("GSO on a TCP segment");
                    let want = if v == IpVersion::Ipv4 { 1 } else { 4 };
                    assert_eq!(head[1], want, "{v}: GSO type");
                    let options = hdr_len - 14 - ihl - 20;
                    let wire = mtu - headers(v);
                    assert!(gso <= wire, "{v}: gso_size {gso} above the wire's {wire}");
                    let floor = floor(v);
                    assert!(
                        gso + options >= floor,
                        "{v}: gso_size {gso} + {options} < {floor}"
                    );
                    assert!(total + 14 - hdr_len > gso, "GSO for a payload that fits");
                }
            }
            assert!(table.len() <= table.capacity());
            let pause = [0, 10, 300, 2000][usize::from((ctl >> 4) & 3)];
            sim.advance(Duration::from_millis(pause));
        }
        sim.run_server_for(Duration::from_secs(60), 50);
        assert_eq!(
            sim.free_slots(),
            SLOTS,
            "slots not listening 60 s after the input: {:?}",
            sim.server.slot_states()
        );
    });
});
