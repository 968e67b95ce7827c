//! Whole Ethernet frames through the TAP offload path's `MssTable` and into the server.
//!
//! The input is a list of frames, each `[control][length][length bytes]` (the last one takes
//! what is left). The first byte of the input picks the tap's MTU. Control bits:
//!
//! - bit 0: fix up the IPv4 header and TCP checksums before the frame is fed (else they stay
//!   as the fuzzer wrote them, mostly wrong);
//! - bit 1: the frame goes the other way, through `MssTable::transmit` as if the server sent
//!   it (and nowhere else); else through `MssTable::receive` and then, as the device passes
//!   every frame up, into the simulated server through its gate;
//! - bit 2: the bytes are a TCP header and payload, wrapped in an Ethernet and IPv4 header
//!   between the server (192.168.69.1, port 80) and a peer; else they are the whole frame;
//! - bit 3: the peer is the simulated client host (192.168.69.100, which answers ARP and
//!   resets what it does not know); else a silent on-link address 192.168.69.70-73 (bits 6-7);
//! - bits 4-5: simulated time to let pass after the frame: 0, 10 ms, 300 ms or 2 s.
//!
//! Invariants: nothing panics; a frame whose checksums do not verify (by this file's own
//! arithmetic) leaves `receive` unchanged; one that `receive` changed verifies before and
//! after; the table never holds more than its capacity nor an MSS below its floor; a GSO
//! header never asks for segments larger than the wire or smaller than the floor (RFC 6691:
//! option bytes count against the MSS); and once the input stops and 60 s of simulated time
//! pass, every slot of the server listens again.
//!
//! One simulated network serves all inputs of a run (the harness leaks its buffers), so the
//! server's state carries over as in a long-running process; each input gets a fresh table.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;

use common::Sim;
use libfuzzer_sys::fuzz_target;
use smolhttpd::tap::{ConnKey, MssTable, Received, VNET_HDR};
use smoltcp::time::Duration;

const SLOTS: usize = 2;
/// Connections the table keeps: small, so eviction runs.
const TABLE: usize = 8;
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_IP: [u8; 4] = [192, 168, 69, 1];
const CLIENT_IP: [u8; 4] = [192, 168, 69, 100];

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

/// An IPv4 TCP frame's IP header length and total length, when its lengths are sane.
fn ipv4_tcp(f: &[u8]) -> Option<(usize, usize)> {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    (ihl >= 20 && total >= ihl + 20 && 14 + total <= f.len()).then_some((ihl, total))
}

/// The pseudo-header sum of the TCP segment of `f`.
fn pseudo(f: &[u8], ihl: usize, total: usize) -> u32 {
    u32::from(ones_sum(&f[26..34], 6 + (total - ihl) as u32))
}

/// Both checksums of an IPv4 TCP frame verify.
fn checksums_ok(f: &[u8]) -> bool {
    let Some((ihl, total)) = ipv4_tcp(f) else {
        return false;
    };
    ones_sum(&f[14..14 + ihl], 0) == 0xffff
        && ones_sum(&f[14 + ihl..14 + total], pseudo(f, ihl, total)) == 0xffff
}

/// Sets both checksums of an IPv4 TCP frame right.
fn fix_checksums(f: &mut [u8]) {
    let Some((ihl, total)) = ipv4_tcp(f) else {
        return;
    };
    f[24..26].fill(0);
    let c = !ones_sum(&f[14..14 + ihl], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let tcp = 14 + ihl;
    f[tcp + 16..tcp + 18].fill(0);
    let c = !ones_sum(&f[tcp..14 + total], pseudo(f, ihl, total));
    f[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
}

/// `seg` (a TCP header and payload, zero-padded to 20 bytes) in an Ethernet and IPv4 header
/// from `src` to `dst`, with the server's side on port 80.
fn wrap(seg: &[u8], src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4]), to_server: bool) -> Vec<u8> {
    let mut tcp = seg.to_vec();
    tcp.resize(tcp.len().max(20), 0);
    let port = if to_server { 2 } else { 0 };
    tcp[port..port + 2].copy_from_slice(&80u16.to_be_bytes());
    let mut f = Vec::with_capacity(34 + tcp.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f[16..18].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&src.1);
    f.extend_from_slice(&dst.1);
    f.extend_from_slice(&tcp);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mtu_pick, mut rest)) = data.split_first() else {
        return;
    };
    let mtu = [1500, 576, 68, 9000][usize::from(mtu_pick & 3)];
    let mut table = MssTable::with_capacity(mtu, TABLE);
    let floor = usize::from(table.floor());
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
                let peer = if ctl & 8 != 0 {
                    (CLIENT_MAC, CLIENT_IP)
                } else {
                    let n = ctl >> 6;
                    ([2, 0, 0, 0, 1, n], [192, 168, 69, 70 + n])
                };
                let server = (SERVER_MAC, SERVER_IP);
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
                    let key = ConnKey {
                        peer: [frame[26], frame[27], frame[28], frame[29]],
                        peer_port: u16::from_be_bytes([frame[34], frame[35]]),
                        port: u16::from_be_bytes([frame[36], frame[37]]),
                    };
                    let mss = table.mss(&key).expect("a learned MSS is kept");
                    assert!(
                        usize::from(mss) >= floor,
                        "MSS {mss} below the floor {floor}"
                    );
                }
                sim.inject(frame);
            } else {
                let head: [u8; VNET_HDR] = table.transmit(&mut frame, now);
                if head[1] != 0 {
                    assert_eq!(head[0], 1, "GSO without NEEDS_CSUM");
                    let hdr_len = usize::from(u16::from_ne_bytes([head[2], head[3]]));
                    let gso = usize::from(u16::from_ne_bytes([head[4], head[5]]));
                    let (ihl, total) = ipv4_tcp(&frame).expect("GSO on a TCP segment");
                    let options = hdr_len - 14 - ihl - 20;
                    assert!(
                        gso <= mtu - 40,
                        "gso_size {gso} above the wire's {}",
                        mtu - 40
                    );
                    assert!(
                        gso + options >= floor,
                        "gso_size {gso} + {options} < {floor}"
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
