//! WebSocket frames through the whole server: after a valid upgrade (to the echo of the tests
//! or to the chat), arbitrary bytes arrive, either raw or cut into masked frames with opcodes,
//! FIN bits and lengths from the input. Nothing may panic, every frame the server sends is
//! whole and unmasked, and once the client has hung up and the deadlines passed, every slot
//! listens again. The chat's JSON decoder also must agree with serde_json on what it accepts.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::ws::{frame, frames_after_head, upgrade};
use common::{Opts, Sim};
use libfuzzer_sys::fuzz_target;
use smoltcp::time::Duration;

thread_local! {
    static SIM: RefCell<(Sim, Rc<RefCell<Vec<u16>>>)> =
        RefCell::new(common::handlers::ws_sim(smolhttpd::Config::new()));
}

/// The input as masked frames: each piece is [flags, len, payload...]: flags' low nibble is the
/// opcode, bit 7 FIN, bit 6 unmasked.
fn as_frames(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let mask = (flags & 0x40 == 0).then_some([flags ^ 0x5a, *len, 0x33, 0x99]);
        out.extend(frame(flags & 0x80 != 0, flags & 0x0f, &tail[..n], mask));
        rest = &tail[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(s) = std::str::from_utf8(rest) {
        if let Ok((name, text)) = smolhttpd::chat::decode_json(s) {
            let v: serde_json::Value = serde_json::from_str(s).expect("accepted, so JSON");
            // serde_json keeps the last of repeated members, the chat the first: compare only
            // where each key is written once and plainly.
            let plain = !s.contains('\\')
                && s.matches("\"text\"").count() == 1
                && s.matches("\"name\"").count() <= 1;
            if plain {
                assert_eq!(v["text"].as_str(), Some(text.as_str()));
                assert_eq!(v["name"].as_str().unwrap_or(""), name.as_str());
            }
        }
    }
    SIM.with(|cell| {
        let (sim, closes) = &mut *cell.borrow_mut();
        let path = if mode & 1 == 0 { "/ws/echo" } else { "/chat/ws" };
        let mut bytes = upgrade(path, "");
        if mode & 2 == 0 {
            bytes.extend_from_slice(rest);
        } else {
            bytes.extend(as_frames(rest));
        }
        let i = sim.open(&bytes, Opts::default());
        sim.advance(Duration::from_millis(200));
        // Every frame the server sent parses whole (the helper panics on a masked one).
        let _ = frames_after_head(&sim.conns[i].received);
        sim.close_client(i);
        sim.run(Duration::from_secs(60));
        sim.advance(Duration::from_secs(30));
        assert_eq!(
            sim.free_slots(),
            smolhttpd::SLOTS,
            "{:?}",
            sim.server.slot_states()
        );
        sim.clear_clients();
        closes.borrow_mut().clear();
    });
});
