//! The whole server: arbitrary bytes arrive on a connection (half at once, half trickled).
//! Nothing may panic, and once the client is gone and the deadlines passed, every slot must
//! listen again. One simulated network serves all inputs of a run, so state carries over the
//! way it does in a long-running server.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;

use common::{Opts, Sim};
use libfuzzer_sys::fuzz_target;
use smoltcp::time::Duration;

thread_local! {
    static SIM: RefCell<Sim<2>> = RefCell::new(Sim::new());
}

fuzz_target!(|data: &[u8]| {
    SIM.with(|sim| {
        let mut sim = sim.borrow_mut();
        let cut = data.len() / 2;
        sim.open(&data[..cut], Opts::default());
        sim.advance(Duration::from_millis(300));
        sim.open(
            &data[cut..],
            Opts {
                gap: Some(Duration::from_millis(7)),
                ..Opts::default()
            },
        );
        sim.run(Duration::from_secs(60));
        sim.advance(Duration::from_secs(30));
        assert_eq!(sim.free_slots(), 2, "{:?}", sim.server.slot_states());
        sim.clear_clients();
    });
});
