//! A server that says goodbye: `Server::shutdown` closes open streams and idle connections
//! with a FIN at once, lets a response in flight finish, refuses new connections, and stops
//! within its grace; past the grace, what is left is aborted.

mod common;

use common::{get_close, Opts, Response, Sim};
use smoltcp::time::Duration;

fn file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fs_image{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn streams_and_idle_connections_get_a_fin_and_a_download_finishes() {
    let mut sim: Sim = Sim::new();
    let streams: Vec<usize> = (0..3)
        .map(|_| {
            sim.open(
                b"GET /chat/events HTTP/1.1\r\nHost: t\r\n\r\n",
                Opts::default(),
            )
        })
        .collect();
    let idle = sim.open(
        b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts::default(),
    );
    // A download read slowly enough to be in flight when the stop begins.
    let slow = sim.open(
        &get_close("/video/Planeta.mp4"),
        Opts {
            read_rate: Some((64 * 1024, Duration::from_millis(100))),
            ..Opts::like_curl()
        },
    );
    sim.advance(Duration::from_millis(500));
    assert!(streams.iter().all(|&i| !sim.conns[i].ended));
    let t0 = sim.now;
    sim.server.shutdown(t0, Duration::from_secs(5));
    sim.advance(Duration::from_millis(100));
    for &i in streams.iter().chain([idle].iter()) {
        let c = &sim.conns[i];
        assert!(
            c.ended && !c.reset,
            "conn {i}: ended {} reset {}",
            c.ended,
            c.reset
        );
        assert!((c.ended_at.unwrap() - t0).total_millis() <= 100);
    }
    // A newcomer is refused (RST), not held.
    let late = sim.open(&get_close("/index.html"), Opts::like_curl());
    sim.advance(Duration::from_millis(100));
    assert!(
        sim.conns[late].reset,
        "a new connection is refused while stopping"
    );
    // The download finishes, whole, within the grace, and then the server has stopped.
    let mut waited = 0;
    while !sim.server.is_stopped() && waited < 80 {
        sim.advance(Duration::from_millis(100));
        waited += 1;
    }
    assert!(sim.server.is_stopped(), "{:?}", sim.server.slot_states());
    assert_eq!(
        Response::parse(&sim.conns[slow].received).unwrap().body,
        file("/video/Planeta.mp4")
    );
    assert!((sim.now - t0) < Duration::from_secs(5));
    assert_eq!(
        sim.resets_from_server(),
        1,
        "only the refused newcomer got a RST"
    );
}

#[test]
fn what_is_left_after_the_grace_is_aborted() {
    let mut sim: Sim = Sim::new();
    // A reader that never reads: its response can never finish.
    let stuck = sim.open(
        &get_close("/video/Planeta.mp4"),
        Opts {
            no_read: true,
            ..Opts::default()
        },
    );
    sim.advance(Duration::from_millis(300));
    let t0 = sim.now;
    sim.server.shutdown(t0, Duration::from_secs(2));
    let mut waited = 0;
    while !sim.server.is_stopped() && waited < 60 {
        sim.advance(Duration::from_millis(100));
        waited += 1;
    }
    assert!(sim.server.is_stopped(), "{:?}", sim.server.slot_states());
    let took = sim.now - t0;
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(4),
        "{took}"
    );
    assert!(sim.conns[stuck].ended, "told by a RST");
    assert!(sim.resets_from_server() >= 1);
    assert!(sim.orphans().is_empty());
}
