//! The server: `N` slots, each one smoltcp TCP socket listening on the HTTP port, driven by
//! [`Server::poll`] on the caller's interface, device and socket set.
//!
//! The caller owns the network: the `Interface`, the `SocketSet` (other sockets, a DHCP client
//! or a UDP service, live in it beside the slots) and the device, wrapped in a
//! [`Gate`] that holds off connections no slot can take. The server reads
//! no clock and allocates nothing: time comes in as an argument, every buffer is in a slot or
//! lent by the caller.

mod log;
mod respond;
mod slot;

use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

pub use self::respond::{parse_range, RangeSpec};
use self::slot::{Cx, Slot};
use crate::config::{Config, REQUEST_BUF, RESPONSE_HEAD, SLOTS};
use crate::gate::Gate;
use crate::handler::Router;

/// Why [`Server::new`] could not set up the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// A receive or transmit buffer slab too small to give each slot at least 1 KiB.
    Buffers,
    /// Port 0 in the [`Config`].
    Port,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::Buffers => f.write_str("socket buffer slab smaller than 1 KiB per slot"),
            SetupError::Port => f.write_str("port 0 cannot be listened on"),
        }
    }
}

/// Counters, for the log and `/status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections: u32,
    /// Requests answered.
    pub requests: u32,
    /// Body bytes queued for sending.
    pub bytes: u64,
    /// 4xx responses.
    pub client_errors: u32,
    /// 5xx responses (and responses a handler could not finish).
    pub server_errors: u32,
    /// Connections closed or aborted by a deadline.
    pub timeouts: u32,
    /// SYNs held off because every slot was busy.
    pub held_off: u32,
    /// Open streams closed for a waiting client.
    pub evicted_stream: u32,
    /// Idle keep-alive connections closed for a waiting client.
    pub evicted_idle: u32,
    /// Incomplete request heads answered 408 (or empty connections closed) for a waiting client.
    pub evicted_head: u32,
    /// Responses read slower than `Config::min_rate` (or closing connections whose peer went
    /// silent), aborted for a waiting client.
    pub evicted_slow: u32,
    /// Half-open handshakes (SYN received, never completed) dropped for a waiting client.
    pub evicted_half_open: u32,
    /// Request bodies arriving slower than `Config::min_rate`, answered 408 for a waiting
    /// client.
    pub evicted_body: u32,
    /// Frames the caller's device lost with a peer there, as the caller reports it with
    /// [`Server::set_link_dropped`] (the binary's QEMU devices hold frames back instead: 0).
    pub link_dropped: u64,
}

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The socket listens; no connection.
    Listen,
    /// Connected, reading a request head. `first_byte` starts the head deadline; with an
    /// empty buffer the connection is idle since `idle_since`.
    Head {
        first_byte: Option<Instant>,
        idle_since: Instant,
    },
    /// Reading a request body: `last_read` starts the gap deadline (`body_timeout`), `started`
    /// the whole body's (`body_deadline`); `had` is how many request bytes were buffered then,
    /// for the body's rate.
    Body {
        last_read: Instant,
        started: Instant,
        had: usize,
    },
    /// Sending a response; `progress` is the last time bytes went into the socket.
    Send { progress: Instant, keep_alive: bool },
    /// Response queued: the send half is closed and input is drained until the peer closes.
    /// `progress` is the last time the send queue shrank or the TCP state moved on.
    Close {
        progress: Instant,
        queued: usize,
        tcp: tcp::State,
    },
    /// The connection was aborted at `since`; the socket listens again once its RST has gone
    /// out, or after [`crate::config::RESET_GIVE_UP`] when it cannot go out (the peer's
    /// address does not resolve: it could not receive it anyway).
    Reset { since: Instant },
    /// The server has stopped this slot (see [`Server::shutdown`]): its socket is closed and
    /// does not listen again.
    Off,
}

/// A slot's state in one word, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Listen,
    /// Connected, no request bytes yet.
    Idle,
    Head,
    Body,
    Send,
    /// Sending an open-ended stream.
    Stream,
    Close,
    /// Stopped with the server.
    Off,
}

impl SlotState {
    pub(crate) fn of(state: State) -> SlotState {
        match state {
            State::Listen => SlotState::Listen,
            State::Head {
                first_byte: None, ..
            } => SlotState::Idle,
            State::Head { .. } => SlotState::Head,
            State::Body { .. } => SlotState::Body,
            State::Send { .. } => SlotState::Send,
            State::Close { .. } | State::Reset { .. } => SlotState::Close,
            State::Off => SlotState::Off,
        }
    }

    /// The lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            SlotState::Listen => "listen",
            SlotState::Idle => "idle",
            SlotState::Head => "head",
            SlotState::Body => "body",
            SlotState::Send => "send",
            SlotState::Stream => "stream",
            SlotState::Close => "close",
            SlotState::Off => "off",
        }
    }
}

/// One slot as handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    pub state: SlotState,
    /// Responses completed by the slot since start.
    pub served: u32,
}

/// The slots' own memory: each slot's `REQ`-byte request buffer, `HEAD`-byte response head
/// buffer and state (about `REQ + HEAD + 320` bytes a slot, 32 more with feature `ws`). Lent to
/// [`Server::new`] like the
/// socket buffers; [`Slots::new`] is `const`, so firmware keeps it in a static built at compile
/// time rather than on its stack.
///
/// ```
/// use smolhttpd::server::Slots;
/// // Built at compile time: a `static` cell on firmware (e.g. static_cell's ConstStaticCell),
/// // a local or a Box on a host.
/// const EMPTY: Slots<10, 1024, 384> = Slots::new();
/// assert!(core::mem::size_of_val(&EMPTY) < 10 * (1024 + 384 + 368));
/// ```
pub struct Slots<
    const N: usize = SLOTS,
    const REQ: usize = REQUEST_BUF,
    const HEAD: usize = RESPONSE_HEAD,
>([Slot<REQ, HEAD>; N]);

impl<const N: usize, const REQ: usize, const HEAD: usize> Slots<N, REQ, HEAD> {
    /// `N` empty slots.
    pub const fn new() -> Self {
        Slots([const { Slot::EMPTY }; N])
    }
}

impl<const N: usize, const REQ: usize, const HEAD: usize> Default for Slots<N, REQ, HEAD> {
    fn default() -> Self {
        Self::new()
    }
}

/// The HTTP server: `N` slots (default [`SLOTS`]), each with a `REQ`-byte request buffer and a
/// `HEAD`-byte response head buffer (lent as [`Slots`]), answering through a [`Router`].
pub struct Server<
    'a,
    const N: usize = SLOTS,
    const REQ: usize = REQUEST_BUF,
    const HEAD: usize = RESPONSE_HEAD,
> {
    slots: &'a mut [Slot<REQ, HEAD>; N],
    router: Router<'a>,
    config: Config,
    stats: Stats,
    /// Unix seconds at an instant, from [`Server::set_wall_clock`].
    wall_clock: Option<(u64, Instant)>,
    /// First poll.
    started: Option<Instant>,
    /// A slot listens while SYNs wait at the gate: poll again at once to let one in.
    admit: bool,
    /// [`Server::shutdown`]: when the grace for responses in flight ends.
    stop_by: Option<Instant>,
}

impl<'a, const N: usize, const REQ: usize, const HEAD: usize> Server<'a, N, REQ, HEAD> {
    /// Adds `N` TCP sockets listening on `config.port` to `sockets`, their receive and
    /// transmit buffers cut evenly from the `rx` and `tx` slabs, keeps each slot's state and
    /// buffers in `slots`, and answers their requests with `router`.
    ///
    /// # Panics
    /// When `sockets` has fewer than `N` free entries (smoltcp's `SocketSet::add` panics on a
    /// full borrowed set): give it room for the slots and your own sockets.
    pub fn new(
        router: Router<'a>,
        sockets: &mut SocketSet<'a>,
        rx: &'a mut [u8],
        tx: &'a mut [u8],
        slots: &'a mut Slots<N, REQ, HEAD>,
        config: Config,
    ) -> Result<Self, SetupError> {
        if config.port == 0 {
            return Err(SetupError::Port);
        }
        let (rx_each, tx_each) = (rx.len() / N.max(1), tx.len() / N.max(1));
        if rx_each < 1024 || tx_each < 1024 {
            return Err(SetupError::Buffers);
        }
        let mut rx = rx.chunks_exact_mut(rx_each);
        let mut tx = tx.chunks_exact_mut(tx_each);
        let mut handles = heapless::Vec::<_, N>::new();
        while let (Some(rx), Some(tx), false) = (rx.next(), tx.next(), handles.is_full()) {
            let mut socket =
                tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            socket.set_nagle_enabled(false);
            // Cannot fail: the port is not 0 and the socket is new.
            let _ = socket.listen(config.port);
            let _ = handles.push(sockets.add(socket));
        }
        for (i, slot) in slots.0.iter_mut().enumerate() {
            slot.attach(i, handles[i], config.port);
        }
        Ok(Server {
            slots: &mut slots.0,
            router,
            config,
            stats: Stats::default(),
            wall_clock: None,
            started: None,
            admit: false,
            stop_by: None,
        })
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records how many frames the device has lost so far (shown as `link_dropped` in
    /// [`Stats`] and `/status`). The server owns no device, so the caller counts.
    pub fn set_link_dropped(&mut self, frames: u64) {
        self.stats.link_dropped = frames;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gives the server a wall clock: `unix_secs` seconds since 1970 at `at`. Responses then
    /// carry a `Date` header. The core still reads no clock; it counts on from `at`.
    pub fn set_wall_clock(&mut self, unix_secs: u64, at: Instant) {
        self.wall_clock = Some((unix_secs, at));
    }

    /// Begins a clean stop, as a server that says goodbye: no new connections (a SYN finds no
    /// listening socket and is answered with RST, so a client retries elsewhere or later), every
    /// open stream is closed between events and every idle or unfinished request with a FIN,
    /// responses in flight may finish for up to `grace` and then close; after the grace,
    /// whatever is left is aborted (RST). Keep calling [`Server::poll`] (it sends the FINs) until
    /// [`Server::is_stopped`], which takes at most `grace` plus [`crate::config::RESET_GIVE_UP`].
    pub fn shutdown(&mut self, now: Instant, grace: Duration) {
        if self.stop_by.is_none() {
            self.stop_by = Some(now + grace);
        }
    }

    /// True once every slot's socket is closed after [`Server::shutdown`].
    pub fn is_stopped(&self) -> bool {
        self.stop_by.is_some() && self.slots.iter().all(|s| s.state == State::Off)
    }

    /// Logs every response still being sent as cut, for a clean stop (Ctrl-C).
    pub fn log_cut(&mut self, now: Instant) {
        for slot in self.slots.iter_mut() {
            slot.cut(now);
        }
    }

    /// The state of each slot.
    pub fn slot_states(&self) -> [State; N] {
        core::array::from_fn(|i| self.slots[i].state)
    }

    /// Takes frames from `device` into `iface` (through the gate), services every slot, and
    /// sends what is queued. Other sockets in `sockets` are processed by the same interface
    /// polls, so call this instead of `iface.poll`, not beside it. Returns true when something
    /// happened (a frame came in or a socket or slot changed).
    pub fn poll<D: Device>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut Gate<D, N>,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let mut busy = false;
        iface.poll_maintenance(now);
        // A slot freed by an abort listens once its RST has gone out, after the egress; while
        // SYNs wait, more passes let them in within this poll (each pass frees a slot or ends).
        if let Some(by) = self.stop_by {
            for slot in self.slots.iter_mut() {
                let socket = sockets.get_mut::<tcp::Socket>(slot.socket());
                slot.stop(socket, &mut self.router, now, now >= by);
            }
        }
        for _ in 0..=N {
            busy |= self.take_in(now, iface, device, sockets);
            while iface.poll_egress(now, device, sockets) == PollResult::SocketStateChanged {
                busy = true;
            }
            let mut rearmed = false;
            for slot in self.slots.iter_mut() {
                let socket = sockets.get_mut::<tcp::Socket>(slot.socket());
                rearmed |= slot.after_egress(socket, self.config.port, now);
            }
            self.renew(sockets);
            if !rearmed || device.waiting() == 0 {
                break;
            }
        }
        self.admit = device.waiting() > 0
            && self
                .slots
                .iter()
                .any(|s| sockets.get::<tcp::Socket>(s.socket()).is_listening());
        busy
    }

    /// Takes frames in through the gate and services every slot: the ingress half of a poll.
    fn take_in<D: Device>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut Gate<D, N>,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let mut busy = false;
        // A second round when the first freed a slot while SYNs wait: the gate feeds the kept
        // SYN to the interface, and its SYN-ACK leaves with this poll's egress.
        for _ in 0..2 {
            for _ in 0..self.config.rx_budget {
                // Judged per frame from the sockets themselves: a SYN in this batch may have
                // taken the last listening one.
                let socket = |slot: &Slot<REQ, HEAD>| sockets.get::<tcp::Socket>(slot.socket());
                // While stopping, SYNs go through to the stack, which refuses them (RST).
                let open =
                    self.stop_by.is_some() || self.slots.iter().any(|s| socket(s).is_listening());
                let known = self
                    .slots
                    .iter()
                    .filter_map(|s| socket(s).remote_endpoint());
                device.arm(now, open, self.config.port, known);
                let result = iface.poll_ingress_single(now, device, sockets);
                if device.take_held() {
                    self.stats.held_off += 1;
                    crate::logging::debug!("all {N} slots busy: SYN held off");
                }
                match result {
                    PollIngressSingleResult::None => break,
                    _ => busy = true,
                }
            }
            busy |= self.service(now, device.waiting(), sockets);
            self.renew(sockets);
            let listening = self
                .slots
                .iter()
                .any(|s| sockets.get::<tcp::Socket>(s.socket()).is_listening());
            if device.waiting() == 0 || !listening {
                break;
            }
        }
        busy
    }

    /// Services every slot once. With `waiting` clients and no slot free for them, slots make
    /// room first, one per waiting client, in the order of [`slot::Evict`]: a half-open
    /// handshake, an open stream, an idle keep-alive connection, the oldest slow request head,
    /// the slowest request body under `Config::min_rate`, then the slowest reader under it.
    fn service(&mut self, now: Instant, waiting: usize, sockets: &mut SocketSet<'_>) -> bool {
        let started = *self.started.get_or_insert(now);
        let infos: [SlotInfo; N] = core::array::from_fn(|i| self.slots[i].info());
        // Slots that will take a waiting client without anyone leaving: listening ones, and
        // ones about to listen that wait on nothing from their peer. A slot that waits on the
        // peer (an ACK of its FIN, an address that must resolve) is not counted.
        let coming_free = self
            .slots
            .iter()
            .filter(|s| s.coming_free(now, sockets.get::<tcp::Socket>(s.socket())))
            .count();
        let mut room = waiting.saturating_sub(coming_free);
        let mut victims = heapless::Vec::<(slot::Evict, u64, usize), N>::new();
        if room > 0 {
            for (i, s) in self.slots.iter().enumerate() {
                let socket = sockets.get::<tcp::Socket>(s.socket());
                if let Some((why, key)) = s.eviction(now, &self.config, socket) {
                    let _ = victims.push((why, key, i));
                }
            }
            victims.sort_unstable();
            victims.truncate(room);
            room -= victims.len();
        }
        let mut cx = Cx {
            now,
            unix: self
                .wall_clock
                .map(|(unix, at)| unix + ((now - at).total_millis() / 1000)),
            config: &self.config,
            stats: &mut self.stats,
            router: &mut self.router,
            slots: &infos,
            uptime: now - started,
            room_wanted: room,
            pressure: waiting > 0,
            streams: self.slots.iter().filter(|s| s.is_streaming()).count(),
            news: false,
        };
        let requests = cx.stats.requests;
        let mut changed = false;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.socket());
            if let Some(&(why, _, _)) = victims.iter().find(|v| v.2 == i) {
                // Serviced again on the next poll, after this one's egress sent the FIN.
                slot.evict(why, socket, &mut cx);
                changed = true;
                continue;
            }
            changed |= slot.service(socket, &mut cx);
        }
        // A request answered in this pass (a chat post, say, or a WebSocket message) may have news for the streams
        // serviced before it: they send it in this same poll.
        if cx.stats.requests != requests || cx.news {
            for slot in self.slots.iter_mut().filter(|s| s.is_streaming()) {
                let socket = sockets.get_mut::<tcp::Socket>(slot.socket());
                changed |= slot.service(socket, &mut cx);
            }
        }
        changed
    }

    /// Re-adds the sockets of slots that let go of an unreachable peer, with fresh metadata:
    /// smoltcp keeps "waiting for this neighbour" per socket, and a new connection on the
    /// same socket would wait out the old peer's ARP silence (up to a second) before its
    /// SYN-ACK could leave.
    fn renew(&mut self, sockets: &mut SocketSet<'_>) {
        for slot in self.slots.iter_mut().filter(|s| s.renew) {
            let socket = sockets.remove(slot.socket());
            slot.set_handle(sockets.add(socket));
            slot.renew = false;
        }
    }

    /// When to call [`Server::poll`] next at the latest (None: only when a frame arrives).
    pub fn poll_at(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Instant> {
        if self.admit {
            return Some(now);
        }
        let mut at = iface.poll_at(now, sockets);
        if let Some(by) = self.stop_by.filter(|_| !self.is_stopped()) {
            at = Some(at.map_or(by, |a| a.min(by)));
        }
        for slot in self.slots.iter() {
            if let Some(t) = slot.deadline(&self.config) {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        }
        at
    }

    /// How long the caller may wait for a frame before calling [`Server::poll`] again.
    pub fn poll_delay(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Duration> {
        self.poll_at(now, iface, sockets)
            .map(|t| if t > now { t - now } else { Duration::ZERO })
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    /// The server's own RAM (slots, router) and the handlers' beside it, without socket
    /// storage and socket buffers (which the caller sizes).
    #[test]
    fn ram_budget() {
        let slots = core::mem::size_of::<Slots>();
        let server = core::mem::size_of::<Server<'static>>() + slots;
        let slot = core::mem::size_of::<Slot<REQUEST_BUF, RESPONSE_HEAD>>();
        let socket = core::mem::size_of::<tcp::Socket<'static>>();
        std::println!(
            "Server<10>: {server} bytes (Slots {slots}, slot {slot}); tcp::Socket {socket}"
        );
        // Each slot: its 2 KiB request buffer, 512 B head buffer and ~300 B of state (the
        // access log line is 80 of it; the peer's address 20, 12 more with IPv6 than without).
        // Feature ws adds a WebSocket's timers and reassembly state to the body a slot sends.
        let ws = if cfg!(feature = "ws") { 32 } else { 0 };
        assert!(slot < REQUEST_BUF + RESPONSE_HEAD + 336 + ws, "{slot}");
        assert!(server < 10 * slot + 512, "{server}");
        #[allow(unused_mut)] // without the chat and status features nothing is added
        let mut with = server;
        #[cfg(feature = "chat")]
        {
            let chat = core::mem::size_of::<crate::chat::ChatRoom>();
            std::println!("ChatRoom<64>: {chat} bytes");
            assert!(chat < 64 * (32 + 256 + 32), "{chat}");
            with += chat;
        }
        #[cfg(feature = "status")]
        {
            let status = core::mem::size_of::<crate::status::StatusPage>();
            std::println!("StatusPage<10>: {status} bytes");
            assert!(status < 10 * 256, "{status}");
            with += status;
        }
        std::println!("server alone: {server} bytes; with the chat and /status handlers: {with}");
    }
}
