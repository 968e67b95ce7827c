//! Ten slots that never stall: a held-off SYN is kept and answered the moment a slot frees,
//! and while a client waits with no slot free, slots make room in a fixed order (an idle
//! keep-alive connection, the oldest slow request head, the slowest reader); without a waiting
//! client nobody is cut, and nobody is let go without a FIN or RST. Simulated time, 2 or 3
//! slots to exhaust them cheaply.

mod common;

use common::{get_close, Opts, Response, Sim};
use smoltcp::time::{Duration, Instant};

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fs_image{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn ms(a: Instant, b: Instant) -> i64 {
    (b - a).total_millis() as i64 * if b >= a { 1 } else { -1 }
}

#[test]
fn a_held_syn_is_answered_when_a_slot_frees() {
    let mut sim: Sim<2> = Sim::new();
    let video = file("/video/Planeta.mp4");
    let a = sim.open(&get_close("/video/Planeta.mp4"), Opts::like_curl());
    let b = sim.open(&get_close("/video/Planeta.mp4"), Opts::like_curl());
    let c = sim.open(&get_close("/index.html"), Opts::like_curl());
    assert!(sim.run(Duration::from_secs(30)));
    assert!(sim.server.stats().held_off >= 1, "{:?}", sim.server.stats());
    for i in [a, b] {
        assert_eq!(Response::parse(&sim.conns[i].received).unwrap().body, video);
    }
    assert_eq!(Response::parse(&sim.conns[c].received).unwrap().status, 200);
    // The waiting client is done within moments of the first download, not after its TCP's
    // one-second SYN retry.
    let first_free = sim.conns[a].ended_at.min(sim.conns[b].ended_at).unwrap();
    let waited = ms(first_free, sim.conns[c].ended_at.unwrap());
    assert!(waited < 100, "served {waited} ms after a slot freed");
    assert_eq!(sim.resets_from_server(), 0);
}

#[test]
fn idle_keep_alive_makes_room_at_once() {
    let mut sim: Sim<2> = Sim::new();
    // Two keep-alive clients take their page and keep the connection open.
    let keep = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
    let a = sim.open(keep, Opts::default());
    let b = sim.open(keep, Opts::default());
    sim.advance(Duration::from_secs(1));
    let opened = sim.now;
    let c = sim.open(&get_close("/img/car.jpeg"), Opts::like_curl());
    sim.run(Duration::from_secs(3));
    let r = Response::parse(&sim.conns[c].received).expect("the new client was served");
    assert_eq!(r.body, file("/img/car.jpeg"));
    let took = ms(opened, sim.conns[c].ended_at.unwrap());
    assert!(took < 100, "new client served after {took} ms");
    let stats = sim.server.stats();
    assert_eq!(stats.evicted_idle, 1, "{stats:?}");
    // The evicted one had its answer and was closed cleanly, not reset.
    let evicted = [a, b].into_iter().find(|&i| sim.conns[i].ended).unwrap();
    assert!(!sim.conns[evicted].reset);
    assert_eq!(
        Response::parse(&sim.conns[evicted].received)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn slow_heads_make_room_oldest_first_with_408() {
    let mut sim: Sim<2> = Sim::new();
    let slow = Opts {
        gap: Some(Duration::from_millis(300)),
        ..Opts::default()
    };
    let head = b"GET /index.html HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let old = sim.open(head, slow);
    sim.advance(Duration::from_millis(200));
    let young = sim.open(head, slow);
    sim.advance(Duration::from_millis(1000));
    let opened = sim.now;
    let c = sim.open(&get_close("/index.html"), Opts::like_curl());
    sim.advance(Duration::from_millis(500));
    assert!(sim.conns[c].ended, "the new client waits");
    assert!(ms(opened, sim.conns[c].ended_at.unwrap()) < 100);
    let r = Response::parse(&sim.conns[old].received).expect("the oldest head got an answer");
    assert_eq!(r.status, 408);
    assert!(
        sim.conns[young].received.is_empty(),
        "the younger head was cut too"
    );
    assert_eq!(sim.server.stats().evicted_head, 1);
}

#[test]
fn the_slowest_reader_makes_room_and_only_under_pressure() {
    let mut sim: Sim<2> = Sim::new();
    let reader = |bytes| Opts {
        read_rate: Some((bytes, Duration::from_millis(100))),
        rx_buffer: Some(2048),
        ..Opts::like_curl()
    };
    // 1 KB/s and 1.5 KB/s readers of the video: both under the 2 KB/s minimum.
    let slowest = sim.open(&get_close("/video/Planeta.mp4"), reader(100));
    let slow = sim.open(&get_close("/video/Planeta.mp4"), reader(150));
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.server.stats().evicted_slow, 0, "cut without pressure");
    let opened = sim.now;
    let c = sim.open(&get_close("/index.html"), Opts::like_curl());
    sim.advance(Duration::from_millis(500));
    assert!(sim.conns[c].ended && ms(opened, sim.conns[c].ended_at.unwrap()) < 100);
    assert_eq!(sim.server.stats().evicted_slow, 1);
    assert!(
        sim.conns[slowest].ended,
        "the slowest reader was not the one cut"
    );
    assert!(!sim.conns[slow].ended, "the faster of the two was cut");
}

#[test]
fn a_lone_slow_reader_gets_every_byte() {
    let mut sim: Sim<2> = Sim::new();
    let car = file("/img/car.jpeg");
    let i = sim.open(
        &get_close("/img/car.jpeg"),
        Opts {
            read_rate: Some((100, Duration::from_millis(100))),
            rx_buffer: Some(2048),
            ..Opts::like_curl()
        },
    );
    assert!(sim.run(Duration::from_secs(60)));
    let r = Response::parse(&sim.conns[i].received).unwrap();
    assert_eq!(r.body, car);
    let took = ms(Instant::from_millis(0), sim.conns[i].ended_at.unwrap());
    assert!(took > 10_000, "read in {took} ms: not a slow reader");
    assert_eq!(sim.server.stats().evicted_slow, 0);
}

/// Two clients that got their answers but have not read them yet hold both slots past their
/// FINs (acknowledged; the peers have not closed). A new client is let in at once: both slots
/// are freed without a RST (a RST would turn the reading of a complete response into an error
/// on Linux), and the freed slot takes the held SYN in the same poll.
#[test]
fn lingering_closes_give_way_at_once() {
    let mut sim: Sim<2> = Sim::new();
    let lazy = Opts {
        no_read: true,
        ..Opts::default()
    };
    let a = sim.open(&get_close("/text/text.htm"), lazy);
    let b = sim.open(&get_close("/text/text.htm"), lazy);
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.free_slots(), 0);
    let opened = sim.now;
    let c = sim.open(&get_close("/index.html"), Opts::like_curl());
    sim.advance(Duration::from_millis(500));
    assert_eq!(Response::parse(&sim.conns[c].received).unwrap().status, 200);
    let waited = ms(opened, sim.conns[c].ended_at.unwrap());
    assert!(waited < 50, "served {waited} ms after it came");
    assert_eq!(sim.resets_from_server(), 0, "a lingering client was reset");
    assert_eq!(sim.orphans(), Vec::<usize>::new(), "{a} {b}");
}

/// A stream gives way for two clients whose SYNs arrive with the ACK of another connection's
/// FIN: that slot frees in the same poll, the first held SYN takes it at once, and the stream's
/// slot (closed in this very poll, its FIN not yet out) must still tell its listener: a FIN,
/// never silence. A listener only reads, so a connection dropped without FIN or RST would
/// leave it waiting forever while messages go by.
#[test]
fn a_stream_that_gives_way_is_told_even_when_slots_free_in_the_same_poll() {
    let mut sim: Sim<3> = Sim::new();
    let listen = || "GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n".as_bytes();
    let a = sim.open(listen(), Opts::default());
    let b = sim.open(listen(), Opts::default());
    sim.advance(Duration::from_millis(100));
    // The third slot answers and closes; the client's ACK of that FIN is still to come.
    let g = sim.open(&get_close("/text/text.htm"), Opts::default());
    for _ in 0..1000 {
        if Response::parse(&sim.conns[g].received).is_some() {
            break;
        }
        sim.step_once();
    }
    let c = sim.open(&get_close("/index.html"), Opts::like_curl());
    let d = sim.open(&get_close("/index.html"), Opts::like_curl());
    sim.advance(Duration::from_millis(300));
    for i in [c, d] {
        assert_eq!(Response::parse(&sim.conns[i].received).unwrap().status, 200);
    }
    assert_eq!(
        sim.server.stats().evicted_stream,
        1,
        "{:?}",
        sim.server.stats()
    );
    assert_eq!(
        sim.orphans(),
        Vec::<usize>::new(),
        "dropped without FIN or RST"
    );
    let gone: Vec<usize> = [a, b].into_iter().filter(|&i| sim.conns[i].ended).collect();
    assert_eq!(gone.len(), 1, "one stream gives way");
    assert!(
        !sim.conns[gone[0]].reset,
        "the stream was reset, not closed between events"
    );
}
