//! Transfers through smoltcp's FaultInjector (10% drop, 2% corrupt, both directions, checksums
//! verified) stay byte-exact, over many seeds, within a bound of simulated time.

mod common;

use common::{image_files, Opts, Response, Sim};
use smolhttpd::Config;
use smoltcp::time::Duration;

#[test]
fn files_stay_byte_exact_through_loss_and_corruption() {
    let files = image_files();
    for seed in 1..=24u32 {
        // At 10% loss each way smoltcp's retransmission backoff (1, 2, 4, 8, 16 s...) can pass
        // the 10 s no-progress deadline; here the deadline is the backoff's maximum.
        let config = Config::new().send_timeout(Duration::from_secs(60));
        let mut sim: Sim = Sim::with_faults(seed, 10, 2, config);
        // Three files at once per seed, rotating through the image; the video every few seeds.
        let picks: Vec<_> = (0..3)
            .map(|k| &files[(seed as usize * 3 + k) % files.len()])
            .collect();
        for (path, _) in &picks {
            sim.open(
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
                // Like curl: done once Content-Length bytes are in, whether or not the
                // server's FIN made it through.
                Opts {
                    close_after: Some(1),
                    ..Opts::default()
                },
            );
        }
        let start = sim.now;
        let done = sim.run(Duration::from_secs(600));
        let got: Vec<_> = sim
            .conns
            .iter()
            .map(|c| (c.received.len(), c.ended))
            .collect();
        assert!(
            done,
            "seed {seed}: transfers did not finish: {got:?} {:?}",
            sim.server.stats()
        );
        for (c, (path, bytes)) in sim.conns.iter().zip(&picks) {
            let r = Response::parse(&c.received)
                .unwrap_or_else(|| panic!("seed {seed} {path}: no complete response"));
            assert_eq!(r.status, 200, "seed {seed} {path}");
            assert!(r.body == *bytes, "seed {seed} {path}: body differs");
        }
        eprintln!(
            "seed {seed}: {} files in {} simulated",
            picks.len(),
            sim.now - start
        );
        // Every slot frees up once the connections are done.
        sim.advance(Duration::from_secs(20));
        assert_eq!(
            sim.free_slots(),
            smolhttpd::SLOTS,
            "seed {seed}: slot leaked"
        );
    }
}
