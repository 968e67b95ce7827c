//! The server: a fixed array of slots, each one smoltcp TCP socket listening on the HTTP port,
//! its request buffer and its state, driven by [`Server::poll`].
//!
//! This is the only module that touches sockets. It owns no device and reads no clock: the
//! caller passes both to `poll`, and asks `poll_at`/`poll_delay` when to call again. Nothing
//! here allocates; every buffer is in the slot or lent by the caller.

use core::fmt::Write as _;

use smoltcp::iface::{
    Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet, SocketStorage,
};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::chat::{Chat, ChatReply};
use crate::config::{Config, MAX_HEADERS, REQUEST_BUF, RESPONSE_HEAD};
use crate::gate::{Filter, Gate};
use crate::http::{self, Method, Parse, Request, Status, Version};
use crate::json::{Counter, Window};
pub use crate::route::{parse_range, RangeSpec};
use crate::route::{route, Content, ContentRange, Location, Reply, Route};

/// Why [`Server::new`] could not set up the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// Fewer socket storage entries than slots.
    SocketStorage,
    /// A receive or transmit buffer slab too small to give each slot at least 1 KiB.
    Buffers,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::SocketStorage => f.write_str("fewer socket storage entries than slots"),
            SetupError::Buffers => f.write_str("socket buffer slab smaller than 1 KiB per slot"),
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
    /// 5xx responses.
    pub server_errors: u32,
    /// Connections closed or aborted by a deadline.
    pub timeouts: u32,
    /// SYNs held off because every slot was busy.
    pub held_off: u32,
}

/// What a slot is doing. One `match` per poll in the slot's service step.
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
    /// Reading a request body; `last_read` starts the body deadline.
    Body { last_read: Instant },
    /// Sending a response; `progress` is the last time bytes went into the socket.
    Send { progress: Instant, keep_alive: bool },
    /// Response queued: the send half is closed and input is drained until the peer closes.
    /// `progress` is the last time the send queue shrank or the TCP state moved on.
    Close {
        progress: Instant,
        queued: usize,
        tcp: tcp::State,
    },
}

/// The body a slot is sending.
// The status snapshot makes one variant larger; without a heap it lives in place, and a
// few hundred bytes per slot is the price of rendering `/status` without allocating.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Body {
    /// Static bytes from the image (or a status text), from an offset.
    Static { data: &'static [u8], sent: usize },
    /// Chat JSON, rendered again from the ring on each send, skipping what was sent.
    Chat {
        reply: ChatReply,
        sent: usize,
        len: usize,
    },
    /// `/status` JSON, rendered again from its snapshot on each send.
    Status {
        snap: Snapshot,
        sent: usize,
        len: usize,
    },
}

/// One connection slot.
struct Slot {
    handle: SocketHandle,
    state: State,
    /// Request bytes read and not yet consumed.
    buf: heapless::Vec<u8, REQUEST_BUF>,
    /// Response head being sent.
    out: heapless::Vec<u8, RESPONSE_HEAD>,
    out_sent: usize,
    body: Body,
    peer: Option<IpEndpoint>,
    /// Requests on the current connection.
    requests: u32,
    /// The current request, for its log line.
    log: LogLine,
    /// Responses completed by this slot since start.
    served: u32,
}

/// The HTTP server: `N` slots (default [`crate::SLOTS`]) over one smoltcp interface.
pub struct Server<'a, const N: usize = { crate::SLOTS }> {
    iface: Interface,
    sockets: SocketSet<'a>,
    slots: [Slot; N],
    config: Config,
    stats: Stats,
    /// Until this time, clients are known to be waiting for a slot.
    crowded_until: Option<Instant>,
    chat: Chat,
    /// Unix seconds at an instant, from [`Server::set_wall_clock`].
    wall_clock: Option<(u64, Instant)>,
    /// First poll.
    started: Option<Instant>,
}

/// How long after a held-off SYN its client counts as waiting (its TCP retries the SYN after
/// 1 s, then 2 s...).
const CROWDED_FOR: Duration = Duration::from_secs(3);
/// While clients wait, a keep-alive connection idle this long is closed to make room. (A
/// client reusing its connection sends its next request well within it.)
const IDLE_GRACE: Duration = Duration::from_millis(200);

impl<'a, const N: usize> Server<'a, N> {
    /// Sets up `N` slots on `iface`. The caller lends the socket storage (at least `N`
    /// entries) and two buffer slabs, split evenly between the slots' receive and transmit
    /// buffers.
    pub fn new(
        iface: Interface,
        storage: &'a mut [SocketStorage<'a>],
        rx: &'a mut [u8],
        tx: &'a mut [u8],
        config: Config,
    ) -> Result<Self, SetupError> {
        if storage.len() < N {
            return Err(SetupError::SocketStorage);
        }
        let (rx_each, tx_each) = (rx.len() / N, tx.len() / N);
        if rx_each < 1024 || tx_each < 1024 {
            return Err(SetupError::Buffers);
        }
        let mut sockets = SocketSet::new(storage);
        let mut handles = heapless::Vec::<SocketHandle, N>::new();
        for (rx, tx) in rx
            .chunks_exact_mut(rx_each)
            .zip(tx.chunks_exact_mut(tx_each))
            .take(N)
        {
            let mut socket =
                tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            socket.set_nagle_enabled(false);
            // Ignoring the error is right: port 0 is the only failure and Config rejects it below.
            let _ = socket.listen(config.port);
            let _ = handles.push(sockets.add(socket));
        }
        let slots = core::array::from_fn(|i| Slot {
            handle: handles[i],
            state: State::Listen,
            buf: heapless::Vec::new(),
            out: heapless::Vec::new(),
            out_sent: 0,
            body: Body::Static { data: &[], sent: 0 },
            peer: None,
            requests: 0,
            log: LogLine::new(),
            served: 0,
        });
        Ok(Server {
            iface,
            sockets,
            slots,
            config,
            stats: Stats::default(),
            crowded_until: None,
            chat: Chat::new(),
            wall_clock: None,
            started: None,
        })
    }

    /// The interface, e.g. to change addresses.
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Gives the server a wall clock: `unix_secs` seconds since 1970 at `at`. Responses then
    /// carry a `Date` header. The core still reads no clock; it counts on from `at`.
    pub fn set_wall_clock(&mut self, unix_secs: u64, at: Instant) {
        self.wall_clock = Some((unix_secs, at));
    }

    /// The chat.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The state of each slot.
    pub fn slot_states(&self) -> [State; N] {
        core::array::from_fn(|i| self.slots[i].state)
    }

    /// Processes frames from `device`, services every slot, and sends what is queued.
    /// Returns true when something happened (a frame came in or a slot changed).
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        let mut busy = false;
        self.iface.poll_maintenance(now);
        for _ in 0..self.config.rx_budget {
            // Judged per frame from the sockets themselves: a SYN in this batch may have
            // taken the last listening one.
            let sockets = &self.sockets;
            let socket = |slot: &Slot| sockets.get::<tcp::Socket>(slot.handle);
            let open = self.slots.iter().any(|s| socket(s).is_listening());
            let mut known = heapless::Vec::<IpEndpoint, N>::new();
            if !open {
                for ep in self
                    .slots
                    .iter()
                    .filter_map(|s| socket(s).remote_endpoint())
                {
                    let _ = known.push(ep);
                }
            }
            let filter = Filter {
                open,
                port: self.config.port,
                known: &known,
            };
            let mut gate = Gate::new(device, filter);
            let result = self
                .iface
                .poll_ingress_single(now, &mut gate, &mut self.sockets);
            if gate.held {
                self.stats.held_off += 1;
                self.crowded_until = Some(now + CROWDED_FOR);
                log::debug!("all {N} slots busy: SYN held off");
            }
            match result {
                PollIngressSingleResult::None => break,
                _ => busy = true,
            }
        }
        busy |= self.service(now);
        while self.iface.poll_egress(now, device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {
            busy = true;
        }
        busy
    }

    /// Services every slot once.
    fn service(&mut self, now: Instant) -> bool {
        let started = *self.started.get_or_insert(now);
        let mut slots = heapless::Vec::<SlotInfo, STATUS_SLOTS>::new();
        for slot in &self.slots {
            let _ = slots.push(SlotInfo::of(slot));
        }
        let mut cx = Cx {
            now,
            unix: self
                .wall_clock
                .map(|(unix, at)| unix + ((now - at).total_millis() / 1000)),
            config: &self.config,
            stats: &mut self.stats,
            chat: &mut self.chat,
            // Someone was held off lately and no slot is free for their retry: only then does a
            // connection make room, one at a time (none while one is still closing). A free
            // slot will take the retry, so then nobody is pushed out.
            crowded: self.crowded_until.is_some_and(|t| now < t)
                && !self.slots.iter().any(|s| {
                    matches!(s.state, State::Close { .. })
                        || self.sockets.get::<tcp::Socket>(s.handle).is_listening()
                }),
            slots: &slots,
            uptime: now - started,
        };
        let mut changed = false;
        for slot in &mut self.slots {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            changed |= slot.service(socket, &mut cx);
        }
        changed
    }

    /// When to call [`Server::poll`] next at the latest (None: only when a frame arrives).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.iface.poll_at(now, &self.sockets);
        for slot in &self.slots {
            if let Some(t) = slot.deadline(&self.config) {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        }
        at
    }

    /// How long the caller may wait for a frame before calling [`Server::poll`] again.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.poll_at(now)
            .map(|t| if t > now { t - now } else { Duration::ZERO })
    }
}

impl Slot {
    fn set_state(&mut self, new: State) {
        log::trace!("slot {}: {:?} => {:?}", self.handle, self.state, new);
        self.state = new;
    }

    /// The time by which this slot must be looked at again.
    fn deadline(&self, config: &Config) -> Option<Instant> {
        match self.state {
            State::Listen => None,
            State::Head {
                first_byte: Some(t),
                ..
            } => Some(t + config.head_timeout),
            State::Head { idle_since, .. } => Some(idle_since + config.idle_timeout),
            State::Body { last_read, .. } => Some(last_read + config.body_timeout),
            State::Send { progress, .. } => Some(progress + config.send_timeout),
            State::Close {
                progress,
                tcp: tcp::State::FinWait2,
                ..
            } => Some(progress + config.linger_timeout),
            // Free it on the very next poll.
            State::Close {
                progress,
                tcp: tcp::State::TimeWait,
                ..
            } => Some(progress),
            State::Close { progress, .. } => Some(progress + config.send_timeout),
        }
    }

    /// Frees the slot and listens again. Also used on TIME-WAIT, so that a connection the
    /// server closed does not pin its slot for smoltcp's 10 s.
    fn relisten(&mut self, socket: &mut tcp::Socket, port: u16) {
        if socket.is_open() && socket.state() != tcp::State::Listen {
            socket.abort();
        }
        // Cannot fail: the socket is closed (or in TIME-WAIT, which listen() resets) and the
        // port is non-zero.
        let _ = socket.listen(port);
        self.buf.clear();
        self.peer = None;
        self.requests = 0;
        self.set_state(State::Listen);
    }

    /// One step of the state machine. Returns true if the state changed or bytes moved.
    fn service(&mut self, socket: &mut tcp::Socket, cx: &mut Cx) -> bool {
        let before = self.state;
        let now = cx.now;
        let config = cx.config;
        match self.state {
            // A listening socket that left LISTEN got a SYN: a new connection.
            State::Listen => {
                if socket.state() == tcp::State::Listen {
                    return false;
                }
                if socket.is_active() {
                    cx.stats.connections += 1;
                    self.peer = socket.remote_endpoint();
                    self.set_state(State::Head {
                        first_byte: None,
                        idle_since: now,
                    });
                    return self.service(socket, cx);
                }
                self.relisten(socket, config.port);
            }
            // Reading a head: fill the buffer, then parse and answer, or wait.
            State::Head {
                first_byte,
                idle_since,
            } => {
                if !socket.is_active() {
                    self.relisten(socket, config.port);
                    return true;
                }
                let read = self.fill(socket);
                if self.buf.is_empty() {
                    if peer_closed(socket) {
                        // The peer closed between requests.
                        self.close(socket, now);
                    } else if now >= idle_since + config.idle_timeout {
                        cx.stats.timeouts += 1;
                        log::debug!("{}: idle connection closed", self.peer_display());
                        self.close(socket, now);
                    } else if cx.crowded && self.requests > 0 && now >= idle_since + IDLE_GRACE {
                        cx.crowded = false;
                        log::debug!(
                            "{}: idle keep-alive closed for a waiting client",
                            self.peer_display()
                        );
                        self.close(socket, now);
                    }
                    return self.state != before || read > 0;
                }
                let first_byte = match first_byte {
                    Some(t) => t,
                    None => {
                        self.set_state(State::Head {
                            first_byte: Some(now),
                            idle_since,
                        });
                        now
                    }
                };
                if now >= first_byte + config.head_timeout {
                    // Judged before parsing: a trickled head may be complete by now, but late.
                    if matches!(http::parse::<MAX_HEADERS>(&self.buf, false), Parse::Partial) {
                        cx.stats.timeouts += 1;
                        self.reject(socket, cx, Status::RequestTimeout);
                        return true;
                    }
                }
                self.handle(socket, cx);
            }
            // Waiting for the rest of a request body.
            State::Body { last_read } => {
                if !socket.is_active() {
                    self.relisten(socket, config.port);
                    return true;
                }
                if self.fill(socket) > 0 {
                    self.set_state(State::Body { last_read: now });
                } else if now >= last_read + config.body_timeout {
                    cx.stats.timeouts += 1;
                    self.reject(socket, cx, Status::RequestTimeout);
                    return true;
                }
                self.handle(socket, cx);
            }
            // Sending: push head and body into the socket as space allows.
            State::Send {
                progress,
                keep_alive,
            } => {
                if !socket.may_send() {
                    // The peer reset or closed its receive side.
                    self.finish_log(now, "aborted by peer");
                    self.relisten(socket, config.port);
                    return true;
                }
                let sent = match self.write(socket, cx.chat) {
                    Ok(n) => n,
                    Err(Stale) => {
                        log::debug!(
                            "{}: chat reply outran by the ring, aborted",
                            self.peer_display()
                        );
                        self.finish_log(now, "aborted");
                        self.relisten(socket, config.port);
                        return true;
                    }
                };
                if self.is_sent() {
                    self.requests += 1;
                    self.served += 1;
                    self.finish_log(now, "");
                    if keep_alive {
                        self.set_state(State::Head {
                            first_byte: None,
                            idle_since: now,
                        });
                        if !self.buf.is_empty() {
                            return self.service(socket, cx);
                        }
                    } else {
                        self.close(socket, now);
                    }
                } else if sent > 0 {
                    self.set_state(State::Send {
                        progress: now,
                        keep_alive,
                    });
                } else if now >= progress + config.send_timeout {
                    cx.stats.timeouts += 1;
                    self.finish_log(now, "send timeout");
                    self.relisten(socket, config.port);
                }
            }
            // Closing: drain input, free the slot once the peer has the FIN (or gave up).
            State::Close {
                progress,
                queued,
                tcp,
            } => {
                while socket.can_recv() {
                    if socket.recv(|d| (d.len(), ())).is_err() {
                        break;
                    }
                }
                let (now_queued, now_tcp) = (socket.send_queue(), socket.state());
                match now_tcp {
                    // TIME-WAIT seen on an earlier poll: its ACK of the peer's FIN has gone
                    // out with that poll's egress, so the slot need not wait out the 10 s.
                    tcp::State::TimeWait if tcp == tcp::State::TimeWait => {
                        self.relisten(socket, config.port);
                    }
                    tcp::State::Closed | tcp::State::Listen => {
                        self.relisten(socket, config.port);
                    }
                    _ if now_queued < queued || now_tcp != tcp => self.set_state(State::Close {
                        progress: now,
                        queued: now_queued,
                        tcp: now_tcp,
                    }),
                    // Our FIN is acknowledged and the peer does not close: give up after the
                    // linger time. Anything still unacknowledged gets the send deadline.
                    tcp::State::FinWait2 if now >= progress + config.linger_timeout => {
                        self.relisten(socket, config.port);
                    }
                    _ if now >= progress + config.send_timeout => {
                        cx.stats.timeouts += 1;
                        log::debug!("{}: close made no progress, aborted", self.peer_display());
                        self.relisten(socket, config.port);
                    }
                    _ => {}
                }
            }
        }
        self.state != before
    }

    /// Parses what the buffer holds and answers a complete request, or waits for more.
    fn handle(&mut self, socket: &mut tcp::Socket, cx: &mut Cx) {
        let now = cx.now;
        let full = self.buf.is_full();
        let req = match http::parse::<MAX_HEADERS>(&self.buf, full) {
            Parse::Partial if peer_closed(socket) => {
                // The peer ended its side mid-head: nothing to answer.
                self.close(socket, now);
                return;
            }
            Parse::Partial => return,
            Parse::Reject(status) => {
                self.reject(socket, cx, status);
                return;
            }
            Parse::Done(req) => req,
        };
        let body = &self.buf[req.head_len..];
        let (reply, consumed) = match route(&req, body, cx.chat) {
            Route::NeedBody if peer_closed(socket) => {
                self.close(socket, now);
                return;
            }
            Route::NeedBody => {
                if !matches!(self.state, State::Body { .. }) {
                    self.set_state(State::Body { last_read: now });
                }
                return;
            }
            Route::Reply(reply) => (reply, req.head_len),
            Route::Posted(reply, body_len) => (reply, req.head_len + body_len),
        };
        let has_body = req.content_length.unwrap_or(0) > 0 || req.transfer_encoding;
        let body_read = consumed > req.head_len;
        // While clients wait for a slot, a connection with nothing more queued is told it
        // closes after this response, so it makes room without surprising its client.
        let make_room = cx.crowded && self.buf.len() == consumed;
        let keep_alive = req.keep_alive
            && (!has_body || body_read)
            && (!reply.status.is_error() || reply.keeps_connection())
            && !make_room;
        if make_room {
            cx.crowded = false;
            log::debug!(
                "{}: closes after this response for a waiting client",
                self.peer_display()
            );
        }
        self.log.start(&req, reply.status, now);
        let (method, version) = (req.method, req.version);
        self.start(reply, method, version, keep_alive, cx);
        // The request is answered: drop it, keep what was pipelined behind it.
        let rest = self.buf.len() - consumed;
        self.buf.copy_within(consumed.., 0);
        self.buf.truncate(rest);
        self.service(socket, cx);
    }

    /// Reads what fits into the request buffer; returns the byte count.
    fn fill(&mut self, socket: &mut tcp::Socket) -> usize {
        let room = self.buf.capacity() - self.buf.len();
        if room == 0 || !socket.can_recv() {
            return 0;
        }
        let buf = &mut self.buf;
        socket
            .recv(|data| {
                let n = data.len().min(room);
                // Cannot fail: n is at most the room left.
                let _ = buf.extend_from_slice(&data[..n]);
                (n, n)
            })
            .unwrap_or(0)
    }

    /// Writes head, then body, as far as the socket takes them; returns the byte count.
    fn write(&mut self, socket: &mut tcp::Socket, chat: &Chat) -> Result<usize, Stale> {
        let mut total = 0;
        if self.out_sent < self.out.len() {
            let n = socket.send_slice(&self.out[self.out_sent..]).unwrap_or(0);
            self.out_sent += n;
            total += n;
            if self.out_sent < self.out.len() {
                return Ok(total);
            }
        }
        let n = match &mut self.body {
            Body::Static { data, sent } => {
                let n = socket.send_slice(&data[*sent..]).unwrap_or(0);
                *sent += n;
                n
            }
            Body::Chat { reply, sent, len } => {
                if *sent < *len && !reply.still_valid(chat) {
                    return Err(Stale);
                }
                send_rendered(socket, sent, *len, |w| reply.write(chat, w))
            }
            Body::Status { snap, sent, len } => {
                send_rendered(socket, sent, *len, |w| snap.write(w))
            }
        };
        self.log.bytes += n;
        Ok(total + n)
    }

    fn is_sent(&self) -> bool {
        self.out_sent == self.out.len()
            && match self.body {
                Body::Static { data, sent } => sent == data.len(),
                Body::Chat { sent, len, .. } | Body::Status { sent, len, .. } => sent == len,
            }
    }

    /// Starts closing: FIN after what is queued.
    fn close(&mut self, socket: &mut tcp::Socket, now: Instant) {
        socket.close();
        self.set_state(State::Close {
            progress: now,
            queued: socket.send_queue(),
            tcp: socket.state(),
        });
    }

    /// Answers a request that could not be parsed or came too slowly, then closes.
    fn reject(&mut self, socket: &mut tcp::Socket, cx: &mut Cx, status: Status) {
        let req = Request::EMPTY;
        self.log.start(&req, status, cx.now);
        self.start(Reply::error(status), req.method, req.version, false, cx);
        self.buf.clear();
        // Cannot be stale: the body is static.
        let _ = self.write(socket, cx.chat);
        if self.is_sent() {
            self.finish_log(cx.now, "");
            self.close(socket, cx.now);
        }
    }

    /// Formats the response head into `out` and enters `Send`.
    fn start(
        &mut self,
        reply: Reply,
        method: Method,
        version: Version,
        keep_alive: bool,
        cx: &mut Cx,
    ) {
        let head_only = method == Method::Head || reply.status == Status::NotModified;
        let (body, length) = match reply.content {
            Content::Chat(r) => {
                let len = r.len(cx.chat);
                let body = Body::Chat {
                    reply: r,
                    sent: 0,
                    len,
                };
                (body, len)
            }
            Content::Status => {
                let snap = Snapshot::new(cx);
                let len = snap.len();
                (Body::Status { snap, sent: 0, len }, len)
            }
            Content::Static(data) => (Body::Static { data, sent: 0 }, data.len()),
            // The body is written with the head.
            c @ Content::Created(_) => (Body::Static { data: &[], sent: 0 }, c.len(cx.chat)),
        };
        self.body = if head_only {
            Body::Static { data: &[], sent: 0 }
        } else {
            body
        };
        let stats = &mut *cx.stats;
        stats.requests += 1;
        match reply.status.code() {
            400..=499 => stats.client_errors += 1,
            500..=599 => stats.server_errors += 1,
            _ => {}
        }
        if !head_only {
            stats.bytes += length as u64;
        }
        self.out.clear();
        self.out_sent = 0;
        self.log.bytes = 0;
        let keep_alive = keep_alive && version != Version::V09;
        self.set_state(State::Send {
            progress: cx.now,
            keep_alive,
        });
        if version == Version::V09 {
            // A simple request gets the body alone.
            if let Content::Created(id) = reply.content {
                let _ = writeln!(HeadWriter(&mut self.out), "{{\"id\":{id}}}");
            }
            return;
        }
        let mut head = HeadWriter(&mut self.out);
        let ok = head.put(reply.status.line())
            && cx
                .unix
                .is_none_or(|unix| http::write_date(&mut head, unix).is_ok())
            && head.put(reply.headers)
            && head.put(reply.extra)
            && match reply.content_range {
                Some(ContentRange::Bytes(a, b, len)) => {
                    write!(head, "Content-Range: bytes {a}-{b}/{len}\r\n").is_ok()
                }
                Some(ContentRange::Unsatisfied(len)) => {
                    write!(head, "Content-Range: bytes */{len}\r\n").is_ok()
                }
                None => true,
            }
            && match reply.location {
                Location::None => true,
                Location::Directory(dir) => write!(head, "Location: {dir}/\r\n").is_ok(),
                Location::Message(id) => write!(head, "Location: /chat?since={id}\r\n").is_ok(),
            }
            && (reply.status == Status::NotModified
                || write!(head, "Content-Length: {length}\r\n").is_ok())
            && head.put(match (keep_alive, version) {
                (false, _) => "Connection: close\r\n",
                (true, Version::V10) => "Connection: keep-alive\r\n",
                (true, _) => "",
            })
            && head.put("\r\n")
            && match reply.content {
                Content::Created(id) if !head_only => writeln!(head, "{{\"id\":{id}}}").is_ok(),
                _ => true,
            };
        // Every header line is bounded (paths by the image, numbers by their type) and the
        // buffer is sized for the longest; an overflow would be a bug, so fail loudly in debug.
        debug_assert!(ok, "response head overflow");
    }

    /// Logs the finished (or abandoned) request, one line at info.
    fn finish_log(&mut self, now: Instant, note: &str) {
        let l = &self.log;
        if l.status == 0 {
            return;
        }
        let ms = (now - l.start).total_millis();
        log::info!(
            "{} {} {} {} {} {}ms{}{}",
            PeerDisplay(self.peer),
            l.method,
            l.target,
            l.status,
            l.bytes,
            ms,
            if note.is_empty() { "" } else { " " },
            note
        );
        self.log.status = 0;
    }

    fn peer_display(&self) -> PeerDisplay {
        PeerDisplay(self.peer)
    }
}

/// What the request log line says about the current request.
#[derive(Debug)]
struct LogLine {
    method: heapless::String<8>,
    /// The target, cut at 64 bytes.
    target: heapless::String<64>,
    /// 0: nothing to log.
    status: u16,
    /// Body bytes queued so far.
    bytes: usize,
    start: Instant,
}

impl LogLine {
    const fn new() -> Self {
        LogLine {
            method: heapless::String::new(),
            target: heapless::String::new(),
            status: 0,
            bytes: 0,
            start: Instant::ZERO,
        }
    }

    fn start(&mut self, req: &Request, status: Status, now: Instant) {
        self.method.clear();
        self.target.clear();
        let method = if req.method_str.is_empty() {
            "-"
        } else {
            req.method_str
        };
        let target = if req.target.is_empty() {
            "-"
        } else {
            req.target
        };
        for c in method.chars() {
            if self.method.push(c).is_err() {
                break;
            }
        }
        for c in target.chars() {
            if self.target.push(c).is_err() {
                break;
            }
        }
        self.status = status.code();
        self.bytes = 0;
        self.start = now;
    }
}

/// Sends more of a body that is rendered again on each call, skipping the `sent` bytes.
fn send_rendered(
    socket: &mut tcp::Socket,
    sent: &mut usize,
    len: usize,
    render: impl FnOnce(&mut Window) -> Result<(), crate::json::Full>,
) -> usize {
    if *sent >= len {
        return 0;
    }
    let skip = *sent;
    let n = socket
        .send(|buf| {
            let room = buf.len().min(len - skip);
            let mut w = Window {
                skip,
                out: &mut buf[..room],
                written: 0,
            };
            // Full only means the socket buffer is; the rest goes next time.
            let _ = render(&mut w);
            (w.written, w.written)
        })
        .unwrap_or(0);
    *sent += n;
    n
}

/// Slots `/status` can list.
const STATUS_SLOTS: usize = 16;

/// One slot as `/status` shows it.
#[derive(Debug, Clone, Copy)]
struct SlotInfo {
    /// Index into [`SlotInfo::NAMES`].
    state: u8,
    served: u32,
}

impl SlotInfo {
    const NAMES: [&'static str; 6] = ["listen", "idle", "head", "body", "send", "close"];

    fn of(slot: &Slot) -> SlotInfo {
        let state = match slot.state {
            State::Listen => 0,
            State::Head {
                first_byte: None, ..
            } => 1,
            State::Head { .. } => 2,
            State::Body { .. } => 3,
            State::Send { .. } => 4,
            State::Close { .. } => 5,
        };
        SlotInfo {
            state,
            served: slot.served,
        }
    }

    fn name(&self) -> &'static str {
        Self::NAMES[usize::from(self.state)]
    }
}

/// What `/status` reports, frozen when the request is answered.
#[derive(Debug, Clone)]
struct Snapshot {
    slots: heapless::Vec<SlotInfo, STATUS_SLOTS>,
    stats: Stats,
    messages: u32,
    uptime_ms: i64,
}

impl Snapshot {
    fn new(cx: &Cx) -> Snapshot {
        let mut slots = heapless::Vec::new();
        for s in cx.slots {
            let _ = slots.push(*s);
        }
        Snapshot {
            slots,
            stats: *cx.stats,
            messages: cx.chat.last_id(),
            uptime_ms: cx.uptime.total_millis() as i64,
        }
    }

    fn write(&self, sink: &mut impl crate::json::Sink) -> Result<(), crate::json::Full> {
        sink.put(b"{\"slots\":[")?;
        for (i, s) in self.slots.iter().enumerate() {
            sink.put(if i == 0 {
                b"{\"state\":\""
            } else {
                b",{\"state\":\""
            })?;
            sink.put(s.name().as_bytes())?;
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
            ("chat_messages", u64::from(self.messages)),
            ("uptime_ms", self.uptime_ms.max(0) as u64),
        ] {
            json_field(sink, name, value)?;
        }
        sink.put(b"}\n")
    }

    fn len(&self) -> usize {
        let mut c = Counter(0);
        let _ = self.write(&mut c);
        c.0
    }
}

/// Writes `,"name":value`.
fn json_field(
    sink: &mut impl crate::json::Sink,
    name: &str,
    value: u64,
) -> Result<(), crate::json::Full> {
    let mut num = heapless::String::<20>::new();
    // Cannot fail: u64::MAX has 20 digits.
    let _ = write!(num, "{value}");
    sink.put(b",\"")?;
    sink.put(name.as_bytes())?;
    sink.put(b"\":")?;
    sink.put(num.as_bytes())
}

/// A chat reply lost messages to newer posts while it was being sent.
#[derive(Debug, Clone, Copy)]
struct Stale;

/// What a slot's service step needs from the server.
struct Cx<'c> {
    now: Instant,
    /// Wall clock, seconds since 1970, when the host gave one.
    unix: Option<u64>,
    /// Every slot as `/status` shows it.
    slots: &'c [SlotInfo],
    uptime: Duration,
    config: &'c Config,
    stats: &'c mut Stats,
    chat: &'c mut Chat,
    /// Clients wait for a slot: idle keep-alive connections make room.
    crowded: bool,
}

/// The peer sent its FIN (or the connection is gone): no more request bytes will come.
fn peer_closed(socket: &tcp::Socket) -> bool {
    !socket.may_recv() && socket.state() != tcp::State::SynReceived
}

/// `peer` or `-` in log lines.
struct PeerDisplay(Option<IpEndpoint>);

impl core::fmt::Display for PeerDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(ep) => write!(f, "{ep}"),
            None => f.write_str("-"),
        }
    }
}

/// Appends to a response head; reports overflow instead of panicking.
struct HeadWriter<'b>(&'b mut heapless::Vec<u8, RESPONSE_HEAD>);

impl HeadWriter<'_> {
    fn put(&mut self, s: &str) -> bool {
        self.0.extend_from_slice(s.as_bytes()).is_ok()
    }
}

impl core::fmt::Write for HeadWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.put(s) {
            Ok(())
        } else {
            Err(core::fmt::Error)
        }
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    /// The server's own RAM (slots, chat ring, interface), without socket storage and buffers.
    #[test]
    fn ram_budget() {
        let server = core::mem::size_of::<Server<'static, { crate::SLOTS }>>();
        let slot = core::mem::size_of::<Slot>();
        let chat = core::mem::size_of::<Chat>();
        let socket = core::mem::size_of::<tcp::Socket<'static>>();
        let storage = core::mem::size_of::<SocketStorage<'static>>();
        std::println!(
            "Server<10>: {server} bytes (slot {slot}, chat {chat}); tcp::Socket {socket}; SocketStorage {storage}"
        );
        // Each slot: its 2 KiB request buffer, 512 B head buffer and ~512 B of state (the
        // largest part is the frozen `/status` snapshot a slot may be sending).
        assert!(slot < REQUEST_BUF + RESPONSE_HEAD + 512, "{slot}");
        assert!(
            chat < crate::chat::MESSAGES * (crate::chat::MAX_NAME + crate::chat::MAX_TEXT + 32),
            "{chat}"
        );
        assert!(server < 10 * slot + chat + 4096, "{server}");
    }
}
