//! `/status`: the server's counters and each slot's state as JSON, a handler like any other
//! (feature `status`).
//!
//! The reply is frozen when the request is answered (a snapshot per slot, kept here) and
//! rendered from that snapshot as the socket takes it, so its length holds while it is sent.

use core::fmt::Write as _;

use crate::handler::{self, Body, Context, Handler, Reply, Request, Status, Token};
use crate::json::{Counter, Full, Sink};
use crate::server::{SlotInfo, Stats};

/// What `/status` reports, frozen when the request is answered.
#[derive(Debug, Clone)]
struct Snapshot<const N: usize> {
    slots: heapless::Vec<SlotInfo, N>,
    stats: Stats,
    uptime_ms: u64,
}

/// The `/status` handler of an `N`-slot server (it keeps one snapshot per slot).
///
/// ```
/// # use smolhttpd::{status::StatusPage, handler::{Methods, Route}};
/// let mut status = StatusPage::<10>::new();
/// let route = Route::exact(Methods::GET, "/status", &mut status);
/// # let _ = route;
/// ```
#[derive(Debug)]
pub struct StatusPage<const N: usize = { crate::SLOTS }> {
    snapshots: [Snapshot<N>; N],
}

impl<const N: usize> StatusPage<N> {
    /// A page with empty snapshots.
    pub fn new() -> Self {
        StatusPage {
            snapshots: core::array::from_fn(|_| Snapshot {
                slots: heapless::Vec::new(),
                stats: Stats::default(),
                uptime_ms: 0,
            }),
        }
    }
}

impl<const N: usize> Default for StatusPage<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Handler for StatusPage<N> {
    fn handle(&mut self, _: &Request<'_>, cx: &Context<'_>) -> Result<Reply, handler::Error> {
        let snap = self
            .snapshots
            .get_mut(cx.slot)
            .ok_or(handler::Error("status page has fewer snapshots than slots"))?;
        snap.slots.clear();
        for s in cx.slots.iter().take(N) {
            let _ = snap.slots.push(*s);
        }
        snap.stats = cx.stats;
        snap.uptime_ms = cx.uptime.total_millis();
        let mut c = Counter(0);
        let _ = snap.write(&mut c);
        let token = [cx.slot as u64, 0, 0, 0];
        Ok(Reply::json(Status::Ok, Body::Rendered { len: c.0, token }))
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        match self.snapshots.get(token[0] as usize) {
            Some(snap) => snap.write(out),
            None => Ok(()),
        }
    }
}

impl<const N: usize> Snapshot<N> {
    fn write(&self, sink: &mut (impl Sink + ?Sized)) -> Result<(), Full> {
        sink.put(b"{\"slots\":[")?;
        for (i, s) in self.slots.iter().enumerate() {
            sink.put(if i == 0 {
                b"{\"state\":\""
            } else {
                b",{\"state\":\""
            })?;
            sink.put(s.state.name().as_bytes())?;
            sink.put(b"\"")?;
            json_field(sink, "served", u64::from(s.served))?;
            sink.put(b"}")?;
        }
        sink.put(b"]")?;
        let st = &self.stats;
        for (name, value) in [
            ("connections", u64::from(st.connections)),
            ("requests", u64::from(st.requests)),
            ("bytes", st.bytes),
            ("client_errors", u64::from(st.client_errors)),
            ("server_errors", u64::from(st.server_errors)),
            ("timeouts", u64::from(st.timeouts)),
            ("held_off", u64::from(st.held_off)),
            ("evicted_stream", u64::from(st.evicted_stream)),
            ("evicted_idle", u64::from(st.evicted_idle)),
            ("evicted_head", u64::from(st.evicted_head)),
            ("evicted_slow", u64::from(st.evicted_slow)),
            ("evicted_half_open", u64::from(st.evicted_half_open)),
            ("evicted_body", u64::from(st.evicted_body)),
            ("link_dropped", st.link_dropped),
            ("uptime_ms", self.uptime_ms),
        ] {
            json_field(sink, name, value)?;
        }
        sink.put(b"}\n")
    }
}

/// Writes `,"name":value`.
fn json_field(sink: &mut (impl Sink + ?Sized), name: &str, value: u64) -> Result<(), Full> {
    let mut num = heapless::String::<20>::new();
    // Cannot fail: u64::MAX has 20 digits.
    let _ = write!(num, "{value}");
    sink.put(b",\"")?;
    sink.put(name.as_bytes())?;
    sink.put(b"\":")?;
    sink.put(num.as_bytes())
}
