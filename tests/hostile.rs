//! Peers that stop cooperating cannot take the ten slots: spoofed SYNs from addresses nobody
//! answers ARP for, half-open handshakes, a client that vanishes mid-transfer, request bodies
//! that trickle. Each case ends with a real client served within a bound (simulated time),
//! every slot listening again, and a server that asks to sleep rather than spin.

mod common;

use common::{get_close, host_ip, syn_frame, Opts, Response, Sim};
use smoltcp::time::{Duration, Instant};

fn ms(a: Instant, b: Instant) -> u64 {
    (b - a).total_millis()
}

/// `n` SYNs from on-link addresses 192.168.69.70 (fd69::70) and up, which nobody answers ARP
/// (neighbour discovery) for.
fn spoof(sim: &mut Sim<10>, n: u8) {
    for i in 0..n {
        let ip = host_ip(0x70 + u16::from(i));
        sim.inject(syn_frame(
            ip,
            40000 + u16::from(i),
            [2, 0, 0, 0, 9, i],
            1000,
        ));
    }
}

/// A real client's `GET path` opened now: (its index, when it was opened).
fn newcomer(sim: &mut Sim<10>, path: &str) -> (usize, Instant) {
    let at = sim.now;
    (sim.open(&get_close(path), Opts::like_curl()), at)
}

#[test]
fn syns_from_unreachable_peers_do_not_take_the_slots() {
    for n in [10, 30] {
        let mut sim: Sim<10> = Sim::new();
        spoof(&mut sim, n);
        sim.advance(Duration::from_millis(300));
        let (c, at) = newcomer(&mut sim, "/text/text.htm");
        assert!(
            sim.run(Duration::from_secs(10)),
            "{n} spoofed: the client never finished"
        );
        let r = Response::parse(&sim.conns[c].received).expect("a response");
        assert_eq!(r.status, 200);
        let took = ms(at, sim.conns[c].ended_at.unwrap());
        assert!(took < 2000, "{n} spoofed: served after {took} ms");
        // Then the server sleeps, and every slot listens again within the deadlines.
        sim.run_server_for(Duration::from_secs(20), 50);
        assert_eq!(sim.free_slots(), 10, "{n}: {:?}", sim.server.slot_states());
        assert_ne!(
            sim.server_poll_delay(),
            Some(Duration::ZERO),
            "{n}: a busy loop"
        );
        assert!(
            sim.server.stats().evicted_half_open >= 1,
            "{:?}",
            sim.server.stats()
        );
    }
}

#[test]
fn a_half_open_handshake_is_dropped_at_once_for_a_waiting_client() {
    let mut sim: Sim<10> = Sim::new();
    // Nine slots busy with slow downloads, one taken by a spoofed SYN.
    let slow = Opts {
        read_rate: Some((4096, Duration::from_millis(100))),
        ..Opts::like_curl()
    };
    for _ in 0..9 {
        sim.open(&get_close("/video/Planeta.mp4"), slow);
    }
    sim.advance(Duration::from_millis(100));
    spoof(&mut sim, 1);
    sim.advance(Duration::from_millis(300));
    let (c, at) = newcomer(&mut sim, "/index.html");
    let deadline = at + Duration::from_secs(2);
    while !sim.conns[c].ended && sim.now < deadline {
        sim.advance(Duration::from_millis(20));
    }
    assert!(sim.conns[c].ended, "{:?}", sim.server.slot_states());
    let took = ms(at, sim.conns[c].ended_at.unwrap());
    // The half-open slot goes first (after its 200 ms grace), not a download.
    assert!(took < 500, "served after {took} ms");
    let st = sim.server.stats();
    assert_eq!((st.evicted_half_open, st.evicted_slow), (1, 0), "{st:?}");
    assert_eq!(sim.resets_from_server(), 0, "nobody was reset");
}

#[test]
fn a_client_that_vanishes_mid_download_frees_its_slot() {
    // A send deadline longer than the ARP entry's 60 s life: when the download is aborted,
    // the client's address must be resolved again for the RST, and nobody answers.
    let config = smolhttpd::Config::new().send_timeout(Duration::from_secs(70));
    let mut sim: Sim<10> = Sim::with_faults(0, 0, 0, config);
    let c = sim.open(
        &get_close("/video/Planeta.mp4"),
        Opts {
            read_rate: Some((1024, Duration::from_millis(100))),
            ..Opts::like_curl()
        },
    );
    sim.advance(Duration::from_secs(5));
    assert!(!sim.conns[c].ended);
    sim.vanish_client();
    // Aborted near 75 s; its RST waits on ARP and is given up a second later.
    sim.run_server_for(Duration::from_secs(69), 50);
    assert_eq!(sim.free_slots(), 9, "still sending at 74 s");
    sim.run_server_for(Duration::from_secs(4), 50);
    assert_eq!(sim.free_slots(), 10, "{:?}", sim.server.slot_states());
    assert_ne!(sim.server_poll_delay(), Some(Duration::ZERO));
}

/// `POST /chat` whose head arrives at once and whose body trickles one byte each `gap`.
fn trickled_post(sim: &mut Sim<10>, gap: Duration) -> usize {
    let body = "name=ana&text=".to_string() + &"a".repeat(100);
    let req = format!(
        "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let head = req.len() - body.len();
    sim.open(
        req.as_bytes(),
        Opts {
            gap: Some(gap),
            gap_after: head,
            ..Opts::default()
        },
    )
}

#[test]
fn ten_slow_bodies_give_way_to_a_newcomer() {
    let mut sim: Sim<10> = Sim::new();
    let slow: Vec<usize> = (0..10)
        .map(|_| trickled_post(&mut sim, Duration::from_secs(4)))
        .collect();
    sim.advance(Duration::from_secs(3));
    let (c, at) = newcomer(&mut sim, "/index.html");
    let deadline = at + Duration::from_secs(2);
    while !sim.conns[c].ended && sim.now < deadline {
        sim.advance(Duration::from_millis(20));
    }
    assert!(sim.conns[c].ended, "{:?}", sim.server.slot_states());
    assert!(ms(at, sim.conns[c].ended_at.unwrap()) < 2000);
    assert!(
        sim.server.stats().evicted_body >= 1,
        "{:?}",
        sim.server.stats()
    );
    // The one evicted was told why: 408.
    let told = slow
        .iter()
        .filter_map(|&i| Response::parse(&sim.conns[i].received))
        .filter(|r| r.status == 408)
        .count();
    assert!(told >= 1);
}

#[test]
fn a_body_has_a_deadline_however_steadily_it_trickles() {
    let mut sim: Sim<10> = Sim::new();
    // One byte every 2 s never meets the 5 s gap deadline; the whole body's 10 s does.
    let c = trickled_post(&mut sim, Duration::from_secs(2));
    let start = sim.now;
    while Response::parse(&sim.conns[c].received).is_none()
        && sim.now < start + Duration::from_secs(30)
    {
        sim.advance(Duration::from_millis(100));
    }
    let r = Response::parse(&sim.conns[c].received).expect("an answer");
    assert_eq!(r.status, 408);
    let at = ms(start, sim.conns[c].last_rx.unwrap());
    assert!((9_900..11_000).contains(&at), "408 after {at} ms");
}

#[test]
fn a_healthy_upload_is_never_cut() {
    let mut sim: Sim<10> = Sim::new();
    // Nine slots hold slow downloads (readers at 40 KB/s, above the minimum rate); one slot
    // takes an upload at about 4 KB/s; clients keep arriving meanwhile.
    let reader = Opts {
        read_rate: Some((4096, Duration::from_millis(100))),
        ..Opts::like_curl()
    };
    for _ in 0..9 {
        sim.open(&get_close("/video/Planeta.mp4"), reader);
    }
    sim.advance(Duration::from_millis(50));
    let up = trickled_post(&mut sim, Duration::from_micros(250));
    let waiting: Vec<usize> = (0..3)
        .map(|_| sim.open(&get_close("/index.html"), Opts::like_curl()))
        .collect();
    assert!(
        sim.run(Duration::from_secs(120)),
        "{:?}",
        sim.server.slot_states()
    );
    let r = Response::parse(&sim.conns[up].received).expect("the upload's answer");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for i in waiting {
        assert_eq!(Response::parse(&sim.conns[i].received).unwrap().status, 200);
    }
    let st = sim.server.stats();
    assert_eq!((st.evicted_body, st.evicted_slow), (0, 0), "{st:?}");
}
