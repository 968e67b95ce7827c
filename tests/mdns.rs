//! The mDNS responder (feature `mdns`) on a simulated network beside the HTTP server: probing
//! and announcing on the simulated clock, multicast, QU and one-shot answers, conflicts and
//! renaming, simultaneous probes, address changes, goodbye, and datagrams it must ignore;
//! with the `ipv6` feature (module `ipv6`), AAAA records beside the A record on 224.0.0.251
//! and ff02::fb, queries over either family, an IPv6-only host, known AAAA answers, AAAA
//! conflicts, a new SLAAC address and simultaneous probes with whole record sets. Every
//! message it sends is read off the wire with smoltcp's Ethernet/IPv4/IPv6/UDP types and the
//! tests' own DNS parser (`mdns_net::dns`), never with the responder's code.
#![cfg(feature = "mdns")]

mod mdns_net;

use mdns_net::dns::{self, Record, A, AAAA, ANY, IN, NSEC, TOP};
use mdns_net::{udp_frame, Net, Sent, GROUP, HOST_IP, ONESHOT_PORT, PEER_IP};
use smolhttpd::mdns::{Error, Responder, State};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

const NAME: &str = "smolhttpd.local";

fn ms(d: u64) -> Duration {
    Duration::from_millis(d)
}

fn millis(t: Instant) -> i64 {
    t.total_millis()
}

/// The A record for `name` at `addr` as the responder sends it to port 5353.
fn a_record(name: &str, addr: Ipv4Address, class: u16, ttl: u32) -> Record {
    Record {
        name: name.into(),
        rtype: A,
        class,
        ttl,
        rdata: addr.octets().to_vec(),
        nsec: None,
    }
}

/// The NSEC that says `name` has only an A record.
fn nsec_record(name: &str, class: u16, ttl: u32) -> Record {
    let mut rdata = Vec::new();
    for label in name.split('.') {
        rdata.push(label.len() as u8);
        rdata.extend_from_slice(label.as_bytes());
    }
    rdata.extend_from_slice(&[0, 0, 1, 0x40]);
    Record {
        name: name.into(),
        rtype: NSEC,
        class,
        ttl,
        rdata,
        nsec: Some((name.into(), vec![0, 1, 0x40])),
    }
}

/// Asserts `s` is a probe for `name` proposing `addr`.
fn assert_probe(s: &Sent, name: &str, addr: Ipv4Address) {
    assert!(s.to_group(), "probe not to 224.0.0.251:5353: {s:?}");
    assert_eq!(s.hop_limit, 255);
    let m = s.dns();
    assert_eq!((m.id, m.flags), (0, 0), "a probe is a query: {m:?}");
    assert_eq!(
        m.questions,
        vec![dns::Question {
            name: name.into(),
            qtype: ANY,
            class: IN | TOP
        }]
    );
    assert!(m.answers.is_empty() && m.additional.is_empty());
    assert_eq!(m.authority, vec![a_record(name, addr, IN, 120)]);
}

/// Asserts `s` is a multicast response (announcement or answer) with `name`'s A record.
fn assert_announcement(s: &Sent, name: &str, addr: Ipv4Address) {
    assert!(s.to_group(), "not to 224.0.0.251:5353: {s:?}");
    assert_eq!(s.hop_limit, 255);
    let m = s.dns();
    assert_eq!((m.id, m.flags), (0, 0x8400), "{m:?}");
    assert!(m.questions.is_empty() && m.authority.is_empty());
    assert_eq!(m.answers, vec![a_record(name, addr, IN | TOP, 120)]);
    assert_eq!(m.additional, vec![nsec_record(name, IN | TOP, 120)]);
}

/// A network whose responder has probed and announced and now just answers.
fn running(name: &str) -> Net {
    let mut net = Net::new(name);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.mdns.state(), State::Running);
    net.take_frames();
    net.received.clear();
    net
}

fn only(sent: Vec<Sent>) -> Sent {
    assert_eq!(sent.len(), 1, "{sent:#?}");
    sent.into_iter().next().unwrap()
}

#[test]
fn probes_then_announces_on_the_simulated_clock() {
    let mut net = Net::new("smolhttpd");
    assert_eq!(net.mdns.state(), State::NoAddress);
    assert_eq!(net.mdns.name(), NAME);
    net.advance(Duration::from_secs(6));
    let frames = net.take_frames();
    assert!(
        frames
            .iter()
            .any(|(_, f)| mdns_net::is_igmp_report_for_group(f)),
        "no IGMP report for 224.0.0.251"
    );
    let sent: Vec<Sent> = frames
        .iter()
        .filter_map(|(at, f)| mdns_net::read_udp(*at, f))
        .collect();
    assert_eq!(sent.len(), 5, "3 probes and 2 announcements: {sent:#?}");
    for s in &sent[..3] {
        assert_probe(s, NAME, HOST_IP);
    }
    for s in &sent[3..] {
        assert_announcement(s, NAME, HOST_IP);
    }
    let t: Vec<i64> = sent.iter().map(|s| millis(s.at)).collect();
    assert!(t[0] < 250, "first probe after a 0-250 ms delay: {t:?}");
    assert_eq!(
        [t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]],
        [250, 250, 250, 1000],
        "{t:?}"
    );
    assert_eq!(net.mdns.state(), State::Running);
    let stats = net.mdns.stats();
    assert_eq!((stats.probes, stats.announcements), (3, 2));
    // Idle: the responder asks for no wake-up of its own.
    assert_eq!(net.mdns.poll_delay(net.now, &net.sockets), None);
    // The peer's socket in the group heard all five.
    let heard: Vec<&[u8]> = net
        .received
        .iter()
        .filter(|r| r.port == 5353)
        .map(|r| &r.payload[..])
        .collect();
    let wire: Vec<&[u8]> = sent.iter().map(|s| &s.payload[..]).collect();
    assert_eq!(heard, wire);
}

#[test]
fn query_from_5353_is_answered_by_multicast() {
    let mut net = running("smolhttpd");
    let asked = net.now;
    net.query_from_5353(&dns::query(0x0101, "SmolHTTPD.Local", A, IN));
    net.advance(ms(100));
    let s = only(net.take_mdns());
    assert_announcement(&s, NAME, HOST_IP);
    assert_eq!(s.at, asked, "unique record: answered at once");
    // The peer's group socket got it, from the host's port 5353.
    let got: Vec<_> = net.received.iter().filter(|r| r.port == 5353).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 5353));
    // ANY is answered the same way, but not within a second of the last multicast: held
    // back, then sent when the second is up.
    net.query_from_5353(&dns::query(0, NAME, ANY, IN));
    net.advance(Duration::from_secs(2));
    let s = only(net.take_mdns());
    assert_announcement(&s, NAME, HOST_IP);
    assert_eq!(millis(s.at) - millis(asked), 1000);
    assert_eq!(net.mdns.stats().answered, 2);
}

#[test]
fn one_shot_query_is_answered_by_unicast_with_its_id_and_question() {
    let mut net = running("smolhttpd");
    net.query_oneshot(&dns::query(0x1234, NAME, A, IN));
    net.advance(ms(100));
    let s = only(net.take_mdns());
    assert_eq!(
        s.dst,
        IpEndpoint::new(IpAddress::Ipv4(PEER_IP), ONESHOT_PORT)
    );
    assert_eq!(s.dst_mac, mdns_net::PEER_MAC);
    let m = s.dns();
    assert_eq!((m.id, m.flags), (0x1234, 0x8400));
    assert_eq!(
        m.questions,
        vec![dns::Question {
            name: NAME.into(),
            qtype: A,
            class: IN
        }]
    );
    // 6.7 and 10.2: TTL at most 10 s, no cache-flush bit to a one-shot querier.
    assert_eq!(m.answers, vec![a_record(NAME, HOST_IP, IN, 10)]);
    assert!(m.authority.is_empty() && m.additional.is_empty());
    let got: Vec<_> = net
        .received
        .iter()
        .filter(|r| r.port == ONESHOT_PORT)
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, s.payload);

    // Sent to the host's own address rather than the group: answered the same way.
    let to_host = IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 5353);
    net.peer_send(net.peer_oneshot, &dns::query(0x4321, NAME, A, IN), to_host);
    net.advance(ms(100));
    let m = only(net.take_mdns()).dns();
    assert_eq!(m.id, 0x4321);
    assert_eq!(m.answers, vec![a_record(NAME, HOST_IP, IN, 10)]);

    // Two questions from a one-shot port: not a one-shot query (6.7), ignored.
    let two = dns::message(7, 0, &[(NAME, A, IN), (NAME, A, IN)], &[], &[]);
    net.query_oneshot(&two);
    net.advance(ms(100));
    assert!(net.take_mdns().is_empty());
}

#[test]
fn qu_question_is_answered_by_unicast_while_the_record_is_fresh() {
    let mut net = running("smolhttpd");
    // The announcements went by multicast less than 30 s ago: unicast to the asker's 5353,
    // with its id (18.1) and the cache-flush bit.
    net.query_from_5353(&dns::query(0x55, NAME, A, IN | TOP));
    net.advance(ms(100));
    let s = only(net.take_mdns());
    assert_eq!(s.dst, IpEndpoint::new(IpAddress::Ipv4(PEER_IP), 5353));
    let m = s.dns();
    assert_eq!((m.id, m.flags), (0x55, 0x8400));
    assert!(m.questions.is_empty());
    assert_eq!(m.answers, vec![a_record(NAME, HOST_IP, IN | TOP, 120)]);
    assert_eq!(net.mdns.stats().unicast, 1);
    // 30 s on, the peers' caches want a refresh: the QU question gets a multicast answer.
    net.advance(Duration::from_secs(31));
    net.query_from_5353(&dns::query(0x56, NAME, A, IN | TOP));
    net.advance(ms(100));
    assert_announcement(&only(net.take_mdns()), NAME, HOST_IP);
}

#[test]
fn other_types_get_an_nsec_and_known_answers_suppress() {
    let mut net = running("smolhttpd");
    // AAAA: no such record; the NSEC says only A exists (6.1).
    net.query_from_5353(&dns::query(0, NAME, AAAA, IN));
    net.advance(ms(100));
    let m = only(net.take_mdns()).dns();
    assert_eq!(m.answers, vec![nsec_record(NAME, IN | TOP, 120)]);
    assert!(m.additional.is_empty());
    net.advance(Duration::from_secs(2));
    // The asker already has the record with more than half its TTL: no answer (7.1)...
    let addr = HOST_IP.octets();
    let known = dns::message(0, 0, &[(NAME, A, IN)], &[(NAME, A, IN, 100, &addr)], &[]);
    net.query_from_5353(&known);
    net.advance(Duration::from_secs(2));
    assert!(net.take_mdns().is_empty());
    // ...with less than half left, it gets one.
    let stale = dns::message(0, 0, &[(NAME, A, IN)], &[(NAME, A, IN, 30, &addr)], &[]);
    net.query_from_5353(&stale);
    net.advance(ms(100));
    assert_announcement(&only(net.take_mdns()), NAME, HOST_IP);
}

#[test]
fn conflict_while_probing_renames_to_name_2() {
    let mut net = Net::new("smolhttpd");
    // The first probe goes out within 250 ms; another host owns the name and says so.
    net.advance(ms(250));
    let first = only(net.take_mdns());
    assert_probe(&first, NAME, HOST_IP);
    let theirs = PEER_IP.octets();
    net.query_from_5353(&dns::response(&[(NAME, A, IN | TOP, 120, &theirs)]));
    net.advance(ms(1));
    assert_eq!(net.mdns.name(), "smolhttpd-2.local");
    assert_eq!(net.mdns.state(), State::Probing);
    assert_eq!(net.mdns.stats().conflicts, 1);
    net.advance(Duration::from_secs(5));
    let sent = net.take_mdns();
    assert_eq!(sent.len(), 5, "{sent:#?}");
    for s in &sent[..3] {
        assert_probe(s, "smolhttpd-2.local", HOST_IP);
    }
    for s in &sent[3..] {
        assert_announcement(s, "smolhttpd-2.local", HOST_IP);
    }
    let t: Vec<i64> = sent.iter().map(|s| millis(s.at)).collect();
    assert_eq!([t[1] - t[0], t[2] - t[1], t[3] - t[2]], [250, 250, 250]);
    assert_eq!(net.mdns.state(), State::Running);
    // The old name is not ours: not answered. The new one is.
    net.query_from_5353(&dns::query(0, NAME, A, IN));
    net.advance(ms(100));
    assert!(net.take_mdns().is_empty());
    net.query_from_5353(&dns::query(0, "smolhttpd-2.local", A, IN));
    net.advance(ms(100));
    assert_announcement(&only(net.take_mdns()), "smolhttpd-2.local", HOST_IP);
}

#[test]
fn conflict_after_announcing_probes_again() {
    let mut net = running("smolhttpd");
    let theirs = PEER_IP.octets();
    let claim = dns::response(&[(NAME, A, IN | TOP, 120, &theirs)]);
    // From a port other than 5353 it is not mDNS (6): ignored.
    net.query_oneshot(&claim);
    net.advance(ms(100));
    assert_eq!(net.mdns.state(), State::Running);
    // From 5353: back to probing under the same name (9).
    net.query_from_5353(&claim);
    net.advance(ms(1));
    assert_eq!(net.mdns.state(), State::Probing);
    assert_eq!(net.mdns.name(), NAME);
    net.advance(Duration::from_secs(5));
    let sent = net.take_mdns();
    assert_eq!(sent.len(), 5, "{sent:#?}");
    assert_probe(&sent[0], NAME, HOST_IP);
    assert_announcement(&sent[4], NAME, HOST_IP);
}

#[test]
fn simultaneous_probe_with_later_data_wins() {
    let mut net = Net::new("smolhttpd");
    net.advance(ms(250));
    let first = only(net.take_mdns());
    // Another host probes for the same name with an address that sorts earlier: we win and
    // go on as if nothing happened.
    let early = [10, 0, 0, 1];
    let probe = |addr: &[u8]| {
        dns::message(
            0,
            0,
            &[(NAME, ANY, IN | TOP)],
            &[],
            &[(NAME, A, IN, 120, addr)],
        )
    };
    net.query_from_5353(&probe(&early));
    let until = first.at + ms(800) - net.now;
    net.advance(until);
    let sent = net.take_mdns();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_probe(&sent[0], NAME, HOST_IP);
    assert_announcement(&sent[2], NAME, HOST_IP);
    let t: Vec<i64> = sent
        .iter()
        .map(|s| millis(s.at) - millis(first.at))
        .collect();
    assert_eq!(t, [250, 500, 750]);
    // Start again; this time their address sorts later (192.168.69.200 > .1): we defer for
    // a second and probe again from the start, same name (8.2).
    let mut net = Net::new("smolhttpd");
    net.advance(ms(250));
    let first = only(net.take_mdns());
    let late = [192, 168, 69, 200];
    net.query_from_5353(&probe(&late));
    net.advance(ms(10));
    let lost_at = net.now;
    assert_eq!(net.mdns.stats().deferred, 1);
    net.advance(Duration::from_secs(4));
    let sent = net.take_mdns();
    assert_eq!(
        sent.len(),
        5,
        "3 probes again, then 2 announcements: {sent:#?}"
    );
    assert!(
        millis(sent[0].at) - millis(lost_at) >= 990,
        "{} {}",
        millis(first.at),
        millis(sent[0].at)
    );
    for s in &sent[..3] {
        assert_probe(s, NAME, HOST_IP);
    }
    assert_eq!(net.mdns.name(), NAME);
    // Our own probe echoed back (same data) is a tie: nothing changes.
    let mut net = Net::new("smolhttpd");
    net.advance(ms(250));
    net.query_from_5353(&probe(&HOST_IP.octets()));
    net.advance(Duration::from_secs(3));
    assert_eq!(net.mdns.stats().deferred, 0);
    assert_eq!(net.mdns.state(), State::Running);
}

#[test]
fn address_change_is_probed_and_announced() {
    let mut net = running("smolhttpd");
    let new_ip = Ipv4Address::new(192, 168, 69, 7);
    // A DHCP client would do this on a new lease.
    net.iface.update_ip_addrs(|a| {
        a.clear();
        a.push(IpCidr::new(IpAddress::Ipv4(new_ip), 24)).unwrap();
    });
    net.advance(Duration::from_secs(5));
    let sent = net.take_mdns();
    assert_eq!(sent.len(), 5, "{sent:#?}");
    for s in &sent[..3] {
        assert_probe(s, NAME, new_ip);
    }
    for s in &sent[3..] {
        assert_announcement(s, NAME, new_ip);
    }
    assert_eq!(net.mdns.address(), Some(new_ip));
    net.query_oneshot(&dns::query(9, NAME, A, IN));
    net.advance(ms(100));
    assert_eq!(
        only(net.take_mdns()).dns().answers,
        vec![a_record(NAME, new_ip, IN, 10)]
    );
    // The lease is lost: silence, whatever is asked.
    net.iface.update_ip_addrs(|a| a.clear());
    net.advance(ms(10));
    assert_eq!(net.mdns.state(), State::NoAddress);
    net.query_from_5353(&dns::query(0, NAME, A, IN));
    net.advance(Duration::from_secs(5));
    assert!(net.take_mdns().is_empty());
    // A new one: probing again.
    net.iface
        .update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(HOST_IP), 24)).unwrap());
    net.advance(Duration::from_secs(5));
    let sent = net.take_mdns();
    assert_eq!(sent.len(), 5);
    assert_announcement(&sent[4], NAME, HOST_IP);
}

/// xorshift32
fn rng(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

#[test]
fn garbage_and_other_names_get_no_answer() {
    let mut net = running("smolhttpd");
    let ours = HOST_IP.octets();
    let theirs = PEER_IP.octets();
    let mut header_only = dns::query(0, NAME, A, IN);
    header_only.truncate(12);
    let mut many_questions = dns::query(0, NAME, A, IN);
    many_questions[4..6].copy_from_slice(&[0xff, 0xff]);
    // A name that is a pointer to itself, one to the next byte, a label past the end, the
    // reserved label types, and a name of 300 octets through pointers.
    let mut self_pointer = dns::query(0, NAME, A, IN);
    self_pointer.truncate(12);
    self_pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut forward = self_pointer.clone();
    forward[12..14].copy_from_slice(&[0xc0, 13]);
    let mut past_end = self_pointer.clone();
    past_end.truncate(12);
    past_end.extend_from_slice(&[40, b'x']);
    let mut reserved = self_pointer.clone();
    reserved[12] = 0x40;
    let mut reserved2 = self_pointer.clone();
    reserved2[12] = 0x80;
    let mut long = dns::query(0, NAME, A, IN);
    long.truncate(12);
    let base = long.len();
    for i in 0..10 {
        long.push(30);
        long.extend_from_slice(&[b'a'; 30]);
        if i == 9 {
            long.extend_from_slice(&[0xc0, base as u8]);
        }
    }
    long.extend_from_slice(&[0, 1, 0, 1]);
    let mut bad_rdlen = dns::response(&[(NAME, A, IN | TOP, 120, &theirs)]);
    let n = bad_rdlen.len();
    bad_rdlen[n - 5] = 200;
    let mut opcode = dns::query(0, NAME, A, IN);
    opcode[2] = 0x08; // opcode 1
    let mut rcode = dns::query(0, NAME, A, IN);
    rcode[3] = 0x03;
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0; 11],
        header_only,
        many_questions,
        self_pointer,
        forward,
        past_end,
        reserved,
        reserved2,
        long,
        bad_rdlen,
        opcode,
        rcode,
        dns::query(0, "other.local", A, IN),
        dns::query(0, "smolhttpd.local.evil", A, IN),
        dns::query(0, "smolhttpd", A, IN),
        dns::query(0, "smolhttpdx.local", A, IN),
        dns::query(0, "xsmolhttpd.local", ANY, IN),
        dns::query(0, NAME, A, 3), // class CH
        // Responses that are no conflict: our very record, and other names.
        dns::response(&[(NAME, A, IN | TOP, 120, &ours)]),
        dns::response(&[("other.local", A, IN | TOP, 120, &theirs)]),
        dns::response(&[(NAME, A, 3, 120, &theirs)]),
    ];
    for case in &cases {
        net.query_from_5353(case);
        net.query_oneshot(case);
        net.advance(ms(20));
    }
    let mut seed = 0x1234_5678;
    for _ in 0..3000 {
        let len = rng(&mut seed) as usize % 80;
        let mut d: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
        // Half of them with a plausible header: few records, opcode and rcode 0.
        if d.len() >= 12 && rng(&mut seed).is_multiple_of(2) {
            d[2] &= 0x80;
            d[3] = 0;
            for i in [4, 6, 8, 10] {
                d[i] = 0;
                d[i + 1] %= 3;
            }
        }
        net.query_from_5353(&d);
        net.advance(ms(3));
    }
    net.advance(Duration::from_secs(2));
    let sent = net.take_mdns();
    assert!(
        sent.is_empty(),
        "answered garbage or another name: {sent:#?}"
    );
    assert_eq!(net.mdns.state(), State::Running);
    assert_eq!(net.mdns.name(), NAME);
    let stats = net.mdns.stats();
    assert_eq!(stats.conflicts, 0);
    assert!(stats.malformed > 1000, "{stats:?}");
    // Still answering.
    net.query_from_5353(&dns::query(0, NAME, A, IN));
    net.advance(ms(100));
    assert_announcement(&only(net.take_mdns()), NAME, HOST_IP);
}

#[test]
fn a_silent_one_shot_querier_does_not_block_the_socket() {
    let mut net = running("smolhttpd");
    // A one-shot query from an on-link address nobody answers ARP for: its unicast answer
    // waits for a neighbour forever, at the head of the socket's send queue.
    let ghost = Ipv4Address::new(192, 168, 69, 77);
    let query = dns::query(1, NAME, A, IN);
    net.inject(udp_frame(
        [2, 0, 0, 0, 0, 0x77],
        (ghost, 40001),
        (GROUP, 5353),
        &query,
    ));
    net.advance(ms(100));
    net.query_from_5353(&dns::query(0, NAME, A, IN));
    let asked = net.now;
    net.advance(Duration::from_secs(5));
    let answers: Vec<Sent> = net
        .take_mdns()
        .into_iter()
        .filter(|s| s.to_group())
        .collect();
    let s = only(answers);
    assert_announcement(&s, NAME, HOST_IP);
    assert!(
        millis(s.at) - millis(asked) <= 3000,
        "answered after {} ms",
        millis(s.at) - millis(asked)
    );
    assert!(net.mdns.stats().flushed >= 1);
}

#[test]
fn goodbye_sends_ttl_zero_and_stops() {
    let mut net = running("smolhttpd");
    assert!(net.mdns.goodbye(&mut net.sockets));
    net.advance(ms(10));
    let m = only(net.take_mdns()).dns();
    assert_eq!(m.answers, vec![a_record(NAME, HOST_IP, IN | TOP, 0)]);
    assert_eq!(net.mdns.state(), State::Stopped);
    net.query_from_5353(&dns::query(0, NAME, A, IN));
    net.query_oneshot(&dns::query(0, NAME, A, IN));
    net.advance(Duration::from_secs(3));
    assert!(net.take_mdns().is_empty());
}

#[test]
fn names_are_checked() {
    let mut dev = Loopback::new(Medium::Ethernet);
    let cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 9]).into());
    let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
    let mut storage = [SocketStorage::EMPTY; 2];
    let mut sockets = SocketSet::new(&mut storage[..]);
    for bad in ["", "a.b", "white space", "ünï", &"x".repeat(64)] {
        let buffers = Box::leak(Box::new(smolhttpd::mdns::Buffers::<512, 512>::new()));
        let r = Responder::new(bad, &mut iface, &mut sockets, buffers);
        assert_eq!(r.err(), Some(Error::Name), "{bad:?}");
    }
    let buffers = Box::leak(Box::new(smolhttpd::mdns::Buffers::<512, 512>::new()));
    let r = Responder::new("Kitchen-Sensor.local", &mut iface, &mut sockets, buffers).unwrap();
    assert_eq!(r.name(), "Kitchen-Sensor.local");
    assert!(iface.has_multicast_group(GROUP));
}

/// The responder with IPv6 (feature `ipv6`): AAAA records beside the A record, on
/// 224.0.0.251 and ff02::fb.
#[cfg(feature = "ipv6")]
mod ipv6 {
    use super::*;
    use mdns_net::{v4, v6, Received, HOST_IP6, HOST_LL, PEER_IP6, PEER_LL, PEER_MAC};
    use smoltcp::wire::Ipv6Address;

    fn aaaa_record(name: &str, addr: Ipv6Address, class: u16, ttl: u32) -> Record {
        Record {
            name: name.into(),
            rtype: AAAA,
            class,
            ttl,
            rdata: addr.octets().to_vec(),
            nsec: None,
        }
    }

    /// The NSEC with this type bitmap (window 0).
    fn nsec_with(name: &str, class: u16, ttl: u32, bitmap: &[u8]) -> Record {
        let mut rdata = Vec::new();
        for label in name.split('.') {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label.as_bytes());
        }
        let mut types = vec![0, bitmap.len() as u8];
        types.extend_from_slice(bitmap);
        rdata.push(0);
        rdata.extend_from_slice(&types);
        Record {
            name: name.into(),
            rtype: NSEC,
            class,
            ttl,
            rdata,
            nsec: Some((name.into(), types)),
        }
    }

    /// The NSEC that says `name` has A and AAAA records (bits 1 and 28).
    fn nsec_both(name: &str, class: u16, ttl: u32) -> Record {
        nsec_with(name, class, ttl, &[0x40, 0, 0, 0x08])
    }

    /// The host's records as `Net::dual` gives them, in the interface's order.
    fn records(class: u16, ttl: u32) -> Vec<Record> {
        vec![
            a_record(NAME, HOST_IP, class, ttl),
            aaaa_record(NAME, HOST_IP6, class, ttl),
            aaaa_record(NAME, HOST_LL, class, ttl),
        ]
    }

    fn running_dual() -> Net {
        let mut net = Net::dual("smolhttpd");
        net.advance(Duration::from_secs(3));
        assert_eq!(net.mdns.state(), State::Running);
        net.take_frames();
        net.received.clear();
        net
    }

    fn from_host_ll(s: &Sent) -> bool {
        s.src == IpEndpoint::new(IpAddress::Ipv6(HOST_LL), 5353)
    }

    #[test]
    fn probes_and_announces_a_and_aaaa_on_both_groups() {
        let mut net = Net::dual("smolhttpd");
        net.advance(Duration::from_secs(6));
        let frames = net.take_frames();
        assert!(
            frames
                .iter()
                .any(|(_, f)| mdns_net::is_mld_report_for_group6(f)),
            "no MLDv2 report for ff02::fb"
        );
        assert!(frames
            .iter()
            .any(|(_, f)| mdns_net::is_igmp_report_for_group(f)));
        let sent: Vec<Sent> = frames
            .iter()
            .filter_map(|(at, f)| mdns_net::read_udp(*at, f))
            .filter(|s| s.src.port == 5353)
            .collect();
        let (v4s, v6s): (Vec<Sent>, Vec<Sent>) = sent.into_iter().partition(|s| s.to_group());
        assert_eq!((v4s.len(), v6s.len()), (5, 5), "{v4s:#?} {v6s:#?}");
        for (a, b) in v4s.iter().zip(&v6s) {
            assert!(b.to_group6(), "{b:?}");
            assert_eq!(b.hop_limit, 255);
            // From the link-local address (RFC 6724's choice for a link-scope group).
            assert!(from_host_ll(b), "{b:?}");
            assert_eq!(
                (a.at, &a.payload),
                (b.at, &b.payload),
                "the same message to both"
            );
        }
        for s in &v4s[..3] {
            let m = s.dns();
            assert_eq!((m.id, m.flags), (0, 0));
            assert_eq!(
                m.questions,
                vec![dns::Question {
                    name: NAME.into(),
                    qtype: ANY,
                    class: IN | TOP
                }]
            );
            assert_eq!(
                m.authority,
                records(IN, 120),
                "a probe proposes every record"
            );
        }
        for s in &v4s[3..] {
            let m = s.dns();
            assert_eq!((m.id, m.flags), (0, 0x8400));
            assert_eq!(m.answers, records(IN | TOP, 120));
            assert_eq!(m.additional, vec![nsec_both(NAME, IN | TOP, 120)]);
        }
        assert_eq!(net.mdns.state(), State::Running);
        assert_eq!(net.mdns.address(), Some(HOST_IP));
        assert_eq!(
            net.mdns.ipv6_addresses().collect::<Vec<_>>(),
            vec![HOST_IP6, HOST_LL]
        );
        // One count per message, whatever the groups.
        let stats = net.mdns.stats();
        assert_eq!((stats.probes, stats.announcements), (3, 2));
        // The peer's socket on 5353 heard all ten, five over each family.
        let heard: Vec<&Received> = net.received.iter().filter(|r| r.port == 5353).collect();
        assert_eq!(heard.len(), 10);
        assert_eq!(
            heard
                .iter()
                .filter(|r| r.from == IpEndpoint::new(IpAddress::Ipv6(HOST_LL), 5353))
                .count(),
            5
        );
    }

    #[test]
    fn aaaa_questions_get_aaaa_answers_with_the_a_record_as_additional() {
        let mut net = running_dual();
        // Asked over IPv4: answered on 224.0.0.251 only.
        net.query_from_5353(&dns::query(0, NAME, AAAA, IN));
        net.advance(ms(100));
        let first = only(net.take_mdns());
        assert!(first.to_group(), "{first:?}");
        let m = first.dns();
        assert_eq!(
            m.answers,
            vec![
                aaaa_record(NAME, HOST_IP6, IN | TOP, 120),
                aaaa_record(NAME, HOST_LL, IN | TOP, 120)
            ]
        );
        // 6.2: the other family's address in the additional section, and the NSEC (6.1).
        assert_eq!(
            m.additional,
            vec![
                a_record(NAME, HOST_IP, IN | TOP, 120),
                nsec_both(NAME, IN | TOP, 120)
            ]
        );
        // Asked over IPv6 for the A record: answered on ff02::fb, a second after the last
        // multicast answer (the rate limit).
        net.query6_from_5353(&dns::query(0, NAME, A, IN));
        net.advance(Duration::from_secs(2));
        let s = only(net.take_mdns());
        assert!(s.to_group6() && from_host_ll(&s), "{s:?}");
        assert_eq!(millis(s.at) - millis(first.at), 1000);
        let m = s.dns();
        assert_eq!(m.answers, vec![a_record(NAME, HOST_IP, IN | TOP, 120)]);
        assert_eq!(
            m.additional,
            vec![
                aaaa_record(NAME, HOST_IP6, IN | TOP, 120),
                aaaa_record(NAME, HOST_LL, IN | TOP, 120),
                nsec_both(NAME, IN | TOP, 120)
            ]
        );
        // ANY: every record as answers, the NSEC as additional.
        net.query6_from_5353(&dns::query(0, NAME, ANY, IN));
        net.advance(Duration::from_secs(2));
        let m = only(net.take_mdns()).dns();
        assert_eq!(m.answers, records(IN | TOP, 120));
        assert_eq!(m.additional, vec![nsec_both(NAME, IN | TOP, 120)]);
        // Another type: the NSEC says A and AAAA exist.
        net.query_from_5353(&dns::query(0, NAME, 16, IN)); // TXT
        net.advance(Duration::from_secs(2));
        let m = only(net.take_mdns()).dns();
        assert_eq!(m.answers, vec![nsec_both(NAME, IN | TOP, 120)]);
        assert!(m.additional.is_empty());
        // The peer heard the IPv6 answer from the host's link-local address.
        assert!(net
            .received
            .iter()
            .any(|r| r.port == 5353 && r.from == IpEndpoint::new(IpAddress::Ipv6(HOST_LL), 5353)));
    }

    #[test]
    fn one_shot_queries_over_either_family_are_answered_by_unicast() {
        let mut net = running_dual();
        // Over IPv6 (dig -6 -p 5353 @ff02::fb%tap0 NAME AAAA): to the asker's link-local
        // address and port, its id and question, TTL 10, no cache-flush bit, no additional.
        net.query6_oneshot(&dns::query(0x77, NAME, AAAA, IN));
        net.advance(ms(100));
        let s = only(net.take_mdns());
        assert_eq!(
            s.dst,
            IpEndpoint::new(IpAddress::Ipv6(PEER_LL), ONESHOT_PORT)
        );
        assert_eq!(s.dst_mac, PEER_MAC);
        let m = s.dns();
        assert_eq!((m.id, m.flags), (0x77, 0x8400));
        assert_eq!(
            m.questions,
            vec![dns::Question {
                name: NAME.into(),
                qtype: AAAA,
                class: IN
            }]
        );
        assert_eq!(
            m.answers,
            vec![
                aaaa_record(NAME, HOST_IP6, IN, 10),
                aaaa_record(NAME, HOST_LL, IN, 10)
            ]
        );
        assert!(m.authority.is_empty() && m.additional.is_empty());
        assert!(net
            .received
            .iter()
            .any(|r| r.port == ONESHOT_PORT && r.payload == s.payload));
        // Over IPv4 (dig -p 5353 @224.0.0.251 NAME AAAA): the AAAA records all the same.
        net.query_oneshot(&dns::query(0x78, NAME, AAAA, IN));
        // (smoltcp sends one neighbour request a second, whatever the family: the ARP
        // request for the asker waits out the second since the neighbour solicitation above.)
        net.advance(ms(1100));
        let s = only(net.take_mdns());
        assert_eq!(
            s.dst,
            IpEndpoint::new(IpAddress::Ipv4(PEER_IP), ONESHOT_PORT)
        );
        assert_eq!(s.dns().answers.len(), 2);
        // To the host's unique local address: answered from it, to the asker's.
        let to_host = IpEndpoint::new(IpAddress::Ipv6(HOST_IP6), 5353);
        net.peer_send(net.peer_oneshot, &dns::query(0x79, NAME, A, IN), to_host);
        net.advance(ms(100));
        let s = only(net.take_mdns());
        assert_eq!(
            (s.src, s.dst),
            (
                to_host,
                IpEndpoint::new(IpAddress::Ipv6(PEER_IP6), ONESHOT_PORT)
            )
        );
        assert_eq!(s.dns().answers, vec![a_record(NAME, HOST_IP, IN, 10)]);
    }

    #[test]
    fn an_ipv6_only_host_announces_on_ff02_fb_and_has_no_a_record() {
        let mut net = Net::with_addrs(
            "smolhttpd",
            &[v6(HOST_IP6), v6(HOST_LL)],
            &[v4(PEER_IP), v6(PEER_IP6), v6(PEER_LL)],
        );
        net.advance(Duration::from_secs(6));
        let sent = net.take_mdns();
        assert_eq!(sent.len(), 5, "{sent:#?}");
        assert!(sent.iter().all(|s| s.to_group6()));
        let m = sent[4].dns();
        assert_eq!(
            m.answers,
            vec![
                aaaa_record(NAME, HOST_IP6, IN | TOP, 120),
                aaaa_record(NAME, HOST_LL, IN | TOP, 120)
            ]
        );
        // Bit 28 alone: three zero bytes, then 0x08.
        let only_aaaa = nsec_with(NAME, IN | TOP, 120, &[0, 0, 0, 0x08]);
        assert_eq!(m.additional, vec![only_aaaa.clone()]);
        assert_eq!(net.mdns.address(), None);
        // A question: the NSEC says there is no A.
        net.query6_from_5353(&dns::query(0, NAME, A, IN));
        net.advance(Duration::from_secs(2));
        let m = only(net.take_mdns()).dns();
        assert_eq!(m.answers, vec![only_aaaa]);
        assert!(m.additional.is_empty());
    }

    #[test]
    fn known_aaaa_records_are_left_out_one_by_one() {
        let mut net = running_dual();
        let ula = HOST_IP6.octets();
        let known = dns::message(
            0,
            0,
            &[(NAME, AAAA, IN)],
            &[(NAME, AAAA, IN, 100, &ula)],
            &[],
        );
        net.query6_from_5353(&known);
        net.advance(ms(100));
        let m = only(net.take_mdns()).dns();
        assert_eq!(m.answers, vec![aaaa_record(NAME, HOST_LL, IN | TOP, 120)]);
        net.advance(Duration::from_secs(2));
        // Both known: nothing to say.
        let ll = HOST_LL.octets();
        let both = dns::message(
            0,
            0,
            &[(NAME, AAAA, IN)],
            &[(NAME, AAAA, IN, 100, &ula), (NAME, AAAA, IN, 100, &ll)],
            &[],
        );
        net.query6_from_5353(&both);
        net.advance(Duration::from_secs(2));
        assert!(net.take_mdns().is_empty());
    }

    #[test]
    fn an_aaaa_claim_with_another_address_is_a_conflict() {
        let mut net = Net::dual("smolhttpd");
        net.advance(ms(250));
        assert_eq!(net.take_mdns().len(), 2, "the first probe, to both groups");
        // Our very records in a response: no conflict.
        let ll = HOST_LL.octets();
        net.query6_from_5353(&dns::response(&[(NAME, AAAA, IN | TOP, 120, &ll)]));
        net.advance(ms(1));
        assert_eq!(net.mdns.stats().conflicts, 0);
        // Another host's AAAA for the name: renamed.
        let theirs = Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 0x99).octets();
        net.query6_from_5353(&dns::response(&[(NAME, AAAA, IN | TOP, 120, &theirs)]));
        net.advance(ms(1));
        assert_eq!(net.mdns.name(), "smolhttpd-2.local");
        assert_eq!(net.mdns.stats().conflicts, 1);
        net.advance(Duration::from_secs(5));
        assert_eq!(net.mdns.state(), State::Running);
    }

    #[test]
    fn a_new_ipv6_address_is_probed_and_announced() {
        let mut net = running_dual();
        // SLAAC's address takes the place of the fallback's.
        let slaac = Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0xff, 0xfe00, 1);
        net.iface.update_ip_addrs(|a| {
            a.retain(|c| *c != v6(HOST_IP6));
            a.push(v6(slaac)).unwrap();
        });
        net.advance(Duration::from_secs(5));
        let sent: Vec<Sent> = net
            .take_mdns()
            .into_iter()
            .filter(|s| s.to_group6())
            .collect();
        assert_eq!(sent.len(), 5, "{sent:#?}");
        let new = vec![
            a_record(NAME, HOST_IP, IN | TOP, 120),
            aaaa_record(NAME, HOST_LL, IN | TOP, 120),
            aaaa_record(NAME, slaac, IN | TOP, 120),
        ];
        assert_eq!(sent[4].dns().answers, new);
        assert_eq!(
            net.mdns.ipv6_addresses().collect::<Vec<_>>(),
            vec![HOST_LL, slaac]
        );
    }

    #[test]
    fn simultaneous_probes_compare_whole_record_sets() {
        let probe =
            |records: &[dns::Rr]| dns::message(0, 0, &[(NAME, ANY, IN | TOP)], &[], records);
        let a = HOST_IP.octets();
        let ula = HOST_IP6.octets();
        let later = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99).octets();
        let cases: [(&[dns::Rr], bool); 4] = [
            // Ours sorted: A, AAAA fd69::1, AAAA fe80::ff:fe00:1.
            // Theirs is a prefix of ours: ours has more, and wins.
            (
                &[(NAME, A, IN, 120, &a), (NAME, AAAA, IN, 120, &ula)],
                false,
            ),
            // Theirs has a later AAAA where ours has fd69::1: theirs wins.
            (
                &[(NAME, AAAA, IN, 120, &later), (NAME, A, IN, 120, &a)],
                true,
            ),
            // Theirs has an earlier A (10.0.0.1): ours wins.
            (&[(NAME, A, IN, 120, &[10, 0, 0, 1])], false),
            // Theirs has ours and one more (sorted last): theirs wins.
            (
                &[
                    (NAME, AAAA, IN, 120, &HOST_LL.octets()),
                    (NAME, A, IN, 120, &a),
                    (NAME, AAAA, IN, 120, &ula),
                    (NAME, AAAA, IN, 120, &[0xff; 16]),
                ],
                true,
            ),
        ];
        for (i, (records, they_win)) in cases.into_iter().enumerate() {
            let mut net = Net::dual("smolhttpd");
            net.advance(ms(250));
            net.query_from_5353(&probe(records));
            net.advance(ms(10));
            assert_eq!(net.mdns.stats().deferred, u32::from(they_win), "case {i}");
            net.advance(Duration::from_secs(4));
            assert_eq!(net.mdns.state(), State::Running, "case {i}");
            assert_eq!(net.mdns.name(), NAME);
        }
    }

    #[test]
    fn goodbye_goes_to_both_groups() {
        let mut net = running_dual();
        assert!(net.mdns.goodbye(&mut net.sockets));
        net.advance(ms(10));
        let sent = net.take_mdns();
        assert_eq!(sent.len(), 2, "{sent:#?}");
        assert!(sent[0].to_group() && sent[1].to_group6());
        for s in &sent {
            assert_eq!(s.dns().answers, records(IN | TOP, 0));
        }
    }
}
