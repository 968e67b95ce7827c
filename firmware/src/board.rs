//! `GET /board`: the firmware's own handler, a JSON line about the board rendered into the
//! answering slot's own buffer (no heap).

use core::fmt::Write as _;

use smolhttpd::handler::{self, Body, Context, Handler, Reply, Request, Status, Token};
use smolhttpd::json::{Full, Sink};

use crate::{clock, stack, SLOTS};

pub use crate::bsp::{CPU, NAME};

/// One rendered reply per slot.
pub struct Board {
    bodies: [heapless::String<224>; SLOTS],
}

impl Board {
    pub const fn new() -> Self {
        Board {
            bodies: [const { heapless::String::new() }; SLOTS],
        }
    }
}

impl Handler for Board {
    fn handle(&mut self, _: &Request, cx: &Context) -> Result<Reply, handler::Error> {
        let body = self
            .bodies
            .get_mut(cx.slot)
            .ok_or(handler::Error("slot out of range"))?;
        body.clear();
        writeln!(
            body,
            "{{\"board\":\"{NAME}\",\"cpu\":\"{CPU}\",\"uptime_ms\":{},\"clock_ms\":{},\"stack_peak\":{},\"requests\":{},\"slots\":{},\"held_off\":{}}}",
            cx.uptime.total_millis(),
            clock::millis(),
            stack::peak(),
            cx.stats.requests,
            cx.slots.len(),
            cx.stats.held_off
        )
        .map_err(|_| handler::Error("board JSON too long"))?;
        let token = [cx.slot as u64, 0, 0, 0];
        Ok(Reply::json(
            Status::Ok,
            Body::Rendered {
                len: body.len(),
                token,
            },
        ))
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        match self.bodies.get(token[0] as usize) {
            Some(b) => out.put(b.as_bytes()),
            None => Ok(()),
        }
    }
}
