//! One connection slot: a TCP socket listening on the HTTP port, its request buffer, its
//! response head buffer and its state. One `match` per step; a step either waits for the
//! network or moves the slot on, and [`Slot::service`] runs steps in a bounded loop (a
//! pipelined request is one more step, never one more stack frame).

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use super::log::{LogLine, PeerDisplay};
use super::respond::{self, Answer, Outcome};
use super::{SlotInfo, State, Stats};
use crate::config::{Config, MAX_HEADERS, RATE_WINDOW, RESET_GIVE_UP};
use crate::handler::{Body, Context, Reply, Router, Token};
use crate::http::{self, Method, Parse, Request, Status, Version};
use crate::json::Window;

#[cfg(feature = "ws")]
mod ws;

/// While clients wait, a keep-alive connection idle this long is closed to make room. (A
/// client reusing its connection sends its next request well within it.)
const IDLE_GRACE: Duration = Duration::from_millis(200);
/// While clients wait, a request head (or a new connection's silence) this old makes room, and
/// so does a request body this old arriving slower than `Config::min_rate`.
const HEAD_GRACE: Duration = Duration::from_millis(500);
/// While clients wait, a handshake not completed this long after its SYN makes room. A real
/// client's ACK follows the SYN-ACK within a round trip.
const HALF_OPEN_GRACE: Duration = Duration::from_millis(200);
/// Steps one slot takes per poll at most; a slot cut short asks to be polled again at once.
const MAX_STEPS: usize = 32;

/// The body a slot is sending.
#[derive(Debug, Clone, Copy)]
enum Sending {
    /// Nothing (a fresh slot; all-zero bits, so an array of slots can live in `.bss`).
    Nothing,
    /// Static bytes, from an offset.
    Static { data: &'static [u8], sent: usize },
    /// Rendered by the handler of `route` again on each send, skipping what was sent.
    Rendered {
        route: usize,
        token: Token,
        sent: usize,
        len: usize,
    },
    /// An open-ended stream of the handler of `route`; `last` is when it last sent bytes.
    Stream {
        route: usize,
        token: Token,
        last: Instant,
    },
    /// A WebSocket of the handler of `route`, after its 101.
    #[cfg(feature = "ws")]
    WebSocket {
        route: usize,
        token: Token,
        conn: ws::Conn,
    },
}

/// The result of one step.
enum Step {
    /// Nothing more to do until the network moves; true if something changed.
    Wait(bool),
    /// The slot moved on and may go further right away.
    Again,
}

/// A rendered body can no longer be rendered the same (its data is gone).
struct Stale;

/// What a slot's step needs from the server.
pub(crate) struct Cx<'c, 'a> {
    pub(crate) now: Instant,
    /// Wall clock, seconds since 1970, when the host gave one.
    pub(crate) unix: Option<u64>,
    pub(crate) config: &'c Config,
    pub(crate) stats: &'c mut Stats,
    pub(crate) router: &'c mut Router<'a>,
    pub(crate) slots: &'c [SlotInfo],
    pub(crate) uptime: Duration,
    /// Waiting clients still without room after this poll's evictions: a response that ends
    /// with nothing more queued closes its connection for one of them.
    pub(crate) room_wanted: usize,
    /// Clients wait for a slot: a closing connection whose FIN is acknowledged frees its
    /// slot at once instead of lingering.
    pub(crate) pressure: bool,
    /// Streams open now.
    pub(crate) streams: usize,
    /// A WebSocket message was handed to a handler: streams may have news.
    pub(crate) news: bool,
}

impl<'c> Cx<'c, '_> {
    fn context(&self, slot: usize, peer: Option<IpEndpoint>) -> Context<'c> {
        Context {
            peer,
            now: self.now,
            uptime: self.uptime,
            slot,
            stats: *self.stats,
            slots: self.slots,
            streams: self.streams,
        }
    }
}

/// No client: 0.0.0.0:0, all zero bytes (a connected peer never has port 0).
const NO_PEER: IpEndpoint = IpEndpoint {
    addr: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
    port: 0,
};

/// One connection slot; `REQ` and `HEAD` are its request and response head buffer sizes.
pub(crate) struct Slot<const REQ: usize, const HEAD: usize> {
    index: usize,
    /// The slot's socket (None only before [`Slot::attach`]).
    handle: Option<SocketHandle>,
    /// The port the socket listens on.
    port: u16,
    /// The socket was let go while smoltcp waited for its peer's address to resolve: the
    /// server re-adds it to the socket set, so the next connection on it does not wait out
    /// that address's ARP silence (smoltcp keeps it per socket, across `listen`).
    pub(crate) renew: bool,
    /// The server is stopping: a freed slot closes its socket instead of listening again.
    stopping: bool,
    pub(crate) state: State,
    /// Request bytes read and not yet consumed.
    buf: heapless::Vec<u8, REQ>,
    /// Response head being sent.
    out: heapless::Vec<u8, HEAD>,
    out_sent: usize,
    body: Sending,
    /// The client's endpoint, or [`NO_PEER`] (so an empty slot is all zero bytes and a static
    /// array of slots stays in .bss on firmware: `None` of an `Option<IpEndpoint>` is not
    /// zero once IPv6 is in the enum).
    peer: IpEndpoint,
    /// Requests on the current connection.
    requests: u32,
    /// The current request, for its log line.
    log: LogLine,
    /// Responses completed by this slot since start.
    pub(crate) served: u32,
    /// The step bound cut the last service short: poll again at once.
    again: bool,
    /// Bytes of the current response put into the socket (head and body).
    pushed: u64,
    /// Start of the read-rate window: its time and the bytes acknowledged by then.
    window: (Instant, u64),
    /// The read rate over the last full window, bytes per second.
    rate: Option<u32>,
}

/// Why a slot makes room for a waiting client, in the order slots are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Evict {
    /// A half-open handshake (SYN received, no ACK): dropped without a word, nothing to flush
    /// (a spoofed or vanished peer; a real one that ACKs later gets a RST).
    HalfOpen,
    /// An open stream: closed cleanly, between events (its client reconnects and resumes).
    Stream,
    /// A keep-alive connection between requests: closed cleanly.
    Idle,
    /// A request head not complete (or not begun) after a grace time: 408, then closed.
    Head,
    /// A request body arriving slower than `Config::min_rate` after a grace time: 408.
    Body,
    /// A response read slower than `Config::min_rate`, or a closing connection whose peer
    /// has gone silent: aborted.
    Slow,
}

impl<const REQ: usize, const HEAD: usize> Slot<REQ, HEAD> {
    /// A slot with no socket yet: const, so whole arrays of slots can be built at compile time.
    pub(crate) const EMPTY: Self = Slot {
        index: 0,
        handle: None,
        port: 0,
        renew: false,
        stopping: false,
        state: State::Listen,
        buf: heapless::Vec::new(),
        out: heapless::Vec::new(),
        out_sent: 0,
        body: Sending::Nothing,
        peer: NO_PEER,
        requests: 0,
        log: LogLine::new(),
        served: 0,
        again: false,
        pushed: 0,
        window: (Instant::ZERO, 0),
        rate: None,
    };

    /// Gives the slot its index and its socket, and forgets anything from an earlier server.
    pub(crate) fn attach(&mut self, index: usize, handle: SocketHandle, port: u16) {
        *self = Slot {
            index,
            handle: Some(handle),
            port,
            ..Self::EMPTY
        };
    }

    /// The slot's socket in the server's socket set.
    pub(crate) fn socket(&self) -> SocketHandle {
        // Always Some once the server is built (Server::new attaches every slot).
        self.handle.unwrap_or_default()
    }

    /// Gives the slot a socket handle anew (after the socket was re-added to the set).
    pub(crate) fn set_handle(&mut self, handle: SocketHandle) {
        self.handle = Some(handle);
    }

    /// Whether this slot would make room for a waiting client, and its place in the queue of
    /// candidates of its kind (smaller goes first: the oldest head, the slowest reader).
    pub(crate) fn eviction(
        &self,
        now: Instant,
        config: &Config,
        socket: &tcp::Socket,
    ) -> Option<(Evict, u64)> {
        let age = |t: Instant| (now - t).total_millis();
        match self.state {
            State::Head { idle_since, .. } if socket.state() == tcp::State::SynReceived => (now
                >= idle_since + HALF_OPEN_GRACE)
                .then(|| (Evict::HalfOpen, u64::MAX - age(idle_since))),
            // A client reusing its connection sends its next request well within the grace.
            State::Head {
                first_byte: None,
                idle_since,
            } if self.requests > 0 => {
                (now >= idle_since + IDLE_GRACE).then(|| (Evict::Idle, u64::MAX - age(idle_since)))
            }
            State::Head {
                first_byte,
                idle_since,
            } => {
                let since = first_byte.unwrap_or(idle_since);
                (now >= since + HEAD_GRACE).then(|| (Evict::Head, u64::MAX - age(since)))
            }
            State::Body { started, had, .. } if now >= started + HEAD_GRACE => {
                let got = self.buf.len().saturating_sub(had) as u64;
                let rate = got * 1000 / age(started).max(1);
                (rate < u64::from(config.min_rate)).then_some((Evict::Body, rate))
            }
            State::Send { .. } if self.is_streaming() => Some((Evict::Stream, 0)),
            State::Send { .. } => self
                .rate
                .filter(|&r| r < config.min_rate)
                .map(|r| (Evict::Slow, u64::from(r))),
            State::Close { .. } if self.stalled(now, socket) => Some((Evict::Slow, 0)),
            _ => None,
        }
    }

    /// A closing connection whose peer has acknowledged nothing for a rate window: it waits on
    /// a peer that may be gone.
    fn stalled(&self, now: Instant, socket: &tcp::Socket) -> bool {
        matches!(self.state, State::Close { progress, .. } if now >= progress + RATE_WINDOW)
            && matches!(
                socket.state(),
                tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck
            )
    }

    /// Whether the slot will take a waiting client without anyone being evicted: it listens,
    /// its RST leaves with this poll's egress, or it closes without waiting on its peer.
    pub(crate) fn coming_free(&self, now: Instant, socket: &tcp::Socket) -> bool {
        match self.state {
            _ if socket.is_listening() => true,
            State::Reset { since } => since == now,
            State::Close { .. } => {
                matches!(socket.state(), tcp::State::TimeWait | tcp::State::FinWait2)
                    || !self.stalled(now, socket)
            }
            _ => false,
        }
    }

    /// True while the slot sends an open-ended stream.
    pub(crate) fn is_streaming(&self) -> bool {
        matches!(self.state, State::Send { .. }) && self.body.is_open_ended()
    }

    /// Makes room for a waiting client now.
    pub(crate) fn evict(&mut self, why: Evict, socket: &mut tcp::Socket, cx: &mut Cx) {
        let now = cx.now;
        crate::logging::info!(
            "{}: {} closed for a waiting client",
            self.peer(),
            match why {
                Evict::HalfOpen => "half-open handshake",
                Evict::Stream => "open stream",
                Evict::Idle => "idle keep-alive connection",
                Evict::Head => "slow request head",
                Evict::Body => "slow request body",
                Evict::Slow => "slow reader",
            }
        );
        match why {
            Evict::HalfOpen => {
                cx.stats.evicted_half_open += 1;
                self.drop_half_open(socket, cx.config.port);
            }
            Evict::Stream => {
                cx.stats.evicted_stream += 1;
                self.log
                    .finish(self.peer_ep(), now, "stream closed for a waiting client");
                #[cfg(feature = "ws")]
                if matches!(self.body, Sending::WebSocket { .. }) {
                    self.ws_going_away(socket, cx.router);
                }
                self.close(socket, now);
            }
            Evict::Idle => {
                cx.stats.evicted_idle += 1;
                self.close(socket, now);
            }
            Evict::Head => {
                cx.stats.evicted_head += 1;
                if self.buf.is_empty() {
                    self.close(socket, now);
                } else {
                    self.reject(socket, cx, Status::RequestTimeout);
                }
            }
            Evict::Body => {
                cx.stats.evicted_body += 1;
                self.reject(socket, cx, Status::RequestTimeout);
            }
            Evict::Slow => {
                cx.stats.evicted_slow += 1;
                self.log.finish(self.peer_ep(), now, "evicted: slow reader");
                self.relisten(socket, cx.config.port, now);
            }
        }
        // Look again on the very next poll, once the FIN (or the 408) has gone out.
        self.again = true;
    }

    /// Updates the read rate of the response being sent.
    fn measure(&mut self, socket: &tcp::Socket, now: Instant) {
        let acked = self.pushed.saturating_sub(socket.send_queue() as u64);
        let (start, at_start) = self.window;
        if now >= start + RATE_WINDOW {
            let ms = (now - start).total_millis().max(1);
            self.rate =
                Some(((acked - at_start.min(acked)) * 1000 / ms).min(u64::from(u32::MAX)) as u32);
            self.window = (now, acked);
        }
    }

    fn set_state(&mut self, new: State) {
        crate::logging::trace!("slot {}: {:?} => {:?}", self.index, self.state, new);
        self.state = new;
    }

    /// The client's endpoint, if the slot has one.
    fn peer_ep(&self) -> Option<IpEndpoint> {
        (self.peer.port != 0).then_some(self.peer)
    }

    fn peer(&self) -> PeerDisplay {
        PeerDisplay(self.peer_ep())
    }

    /// The time by which this slot must be looked at again.
    pub(crate) fn deadline(&self, config: &Config) -> Option<Instant> {
        if self.again {
            return Some(Instant::ZERO);
        }
        match self.state {
            State::Listen | State::Off => None,
            // The RST normally leaves with the egress of the poll that aborted; the slot is
            // looked at again when it is time to give up on it.
            State::Reset { since } => Some(since + RESET_GIVE_UP),
            State::Head {
                first_byte: Some(t),
                ..
            } => Some(t + config.head_timeout),
            State::Head { idle_since, .. } => Some(idle_since + config.idle_timeout),
            State::Body {
                last_read, started, ..
            } => Some((last_read + config.body_timeout).min(started + config.body_deadline)),
            // A stream wakes for its heartbeat; pending bytes meet the send deadline then.
            State::Send { .. } if self.is_streaming() => match self.body {
                Sending::Stream { last, .. } => Some(last + config.stream_heartbeat),
                #[cfg(feature = "ws")]
                Sending::WebSocket { conn, .. } => Some(conn.deadline(config)),
                _ => None,
            },
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

    /// Frees the slot: aborts the connection (its client gets a RST) and listens again.
    fn relisten(&mut self, socket: &mut tcp::Socket, port: u16, now: Instant) {
        if socket.is_open() && socket.state() != tcp::State::Listen {
            socket.abort();
        }
        self.forget();
        self.rearm(socket, port, now);
    }

    /// Drops a half-open handshake without a RST (there is no connection to tell, and the peer
    /// may not even exist): the socket forgets it and listens again at once.
    fn drop_half_open(&mut self, socket: &mut tcp::Socket, port: u16) {
        crate::logging::debug!("{}: half-open handshake dropped", self.peer());
        socket.abort();
        // Cannot fail: the socket is closed and Config::validate rejected port 0. Listening
        // forgets the connection before a RST is sent.
        let _ = socket.listen(port);
        self.forget();
        self.renew = true;
        self.reopened(socket);
    }

    /// Frees the slot of a connection whose peer has acknowledged our FIN, and so every byte
    /// before it, without a RST: the peer knows the connection ended, and a RST now would
    /// turn its reading of the response into an error. Its own FIN, when it comes, is
    /// answered with a RST by the stack. Also used on TIME-WAIT, so that a connection the
    /// server closed does not pin its slot for smoltcp's 10 s.
    fn release(&mut self, socket: &mut tcp::Socket, port: u16) {
        if socket.is_open() {
            socket.abort();
        }
        // Cannot fail: the socket is closed (or in TIME-WAIT, which listen() resets) and
        // Config::validate rejected port 0. Listening forgets the aborted connection.
        let _ = socket.listen(port);
        self.forget();
        self.reopened(socket);
    }

    /// After `listen()`: the slot listens, or, while the server stops, the socket is closed
    /// for good (listening first forgot the old connection, so no RST goes out).
    fn reopened(&mut self, socket: &mut tcp::Socket) {
        if self.stopping {
            socket.abort();
            self.set_state(State::Off);
        } else {
            self.set_state(State::Listen);
        }
    }

    /// The server stops (see [`crate::Server::shutdown`]): no new connection on this slot, an
    /// open stream or an idle or unfinished request is closed now with a FIN, a response in
    /// flight finishes and then closes; past the grace, whatever is left is aborted.
    pub(crate) fn stop(
        &mut self,
        socket: &mut tcp::Socket,
        router: &mut Router,
        now: Instant,
        past_grace: bool,
    ) {
        let _ = &router;
        self.stopping = true;
        match self.state {
            State::Off | State::Reset { .. } => {}
            State::Listen if socket.state() == tcp::State::Listen => {
                socket.abort();
                self.set_state(State::Off);
            }
            _ if past_grace => {
                self.log.finish(self.peer_ep(), now, "cut: server stopped");
                #[cfg(feature = "ws")]
                self.ws_abort(router);
                self.relisten(socket, self.port, now);
            }
            State::Listen => {}
            State::Head { .. } | State::Body { .. } => self.close(socket, now),
            State::Send { .. } if self.is_streaming() => {
                self.log
                    .finish(self.peer_ep(), now, "stream closed: server stopping");
                #[cfg(feature = "ws")]
                self.ws_going_away(socket, router);
                self.close(socket, now);
            }
            State::Send { progress, .. } => self.set_state(State::Send {
                progress,
                keep_alive: false,
            }),
            State::Close { .. } => {}
        }
    }

    fn forget(&mut self) {
        self.buf.clear();
        self.peer = NO_PEER;
        self.requests = 0;
    }

    /// Listens again, unless the socket still has a RST to send: `listen()` would forget the
    /// connection before the RST went out, and a client that only reads (a stream listener)
    /// would wait forever on a connection nobody holds. Then the slot waits in `Reset` for
    /// the next egress, or [`RESET_GIVE_UP`] when the RST cannot go out (the peer's address
    /// does not resolve, so it could not receive it).
    fn rearm(&mut self, socket: &mut tcp::Socket, port: u16, now: Instant) {
        let rst_pending =
            socket.state() == tcp::State::Closed && socket.remote_endpoint().is_some();
        let since = match self.state {
            State::Reset { since } => since,
            _ => now,
        };
        if rst_pending && now < since + RESET_GIVE_UP {
            if self.state != (State::Reset { since }) {
                self.set_state(State::Reset { since });
            }
            return;
        }
        if rst_pending {
            self.renew = true;
            crate::logging::debug!(
                "slot {}: its RST could not be sent within {} ms (unreachable peer); listening again",
                self.index,
                RESET_GIVE_UP.total_millis()
            );
        }
        // Cannot fail: the socket is closed (or in TIME-WAIT, which listen() resets) and
        // Config::validate rejected port 0.
        let _ = socket.listen(port);
        self.reopened(socket);
    }

    /// After an egress: a reset slot's RST is out (or it waited long enough), so it listens
    /// again (then true).
    pub(crate) fn after_egress(
        &mut self,
        socket: &mut tcp::Socket,
        port: u16,
        now: Instant,
    ) -> bool {
        if !matches!(self.state, State::Reset { .. }) {
            return false;
        }
        self.rearm(socket, port, now);
        self.state == State::Listen
    }

    /// Runs steps until the slot waits for the network, at most [`MAX_STEPS`]. Returns true
    /// if the state changed or bytes moved.
    pub(crate) fn service(&mut self, socket: &mut tcp::Socket, cx: &mut Cx) -> bool {
        let mut changed = false;
        for _ in 0..MAX_STEPS {
            match self.step(socket, cx) {
                Step::Wait(c) => {
                    self.again = false;
                    return changed | c;
                }
                Step::Again => changed = true,
            }
        }
        self.again = true;
        changed
    }

    /// One step of the state machine.
    fn step(&mut self, socket: &mut tcp::Socket, cx: &mut Cx) -> Step {
        let before = self.state;
        let now = cx.now;
        let config = cx.config;
        match self.state {
            State::Reset { .. } => self.rearm(socket, config.port, now),
            // Stopped for good.
            State::Off => return Step::Wait(false),
            // A listening socket that left LISTEN got a SYN: a new connection.
            State::Listen => {
                if socket.state() == tcp::State::Listen {
                    return Step::Wait(false);
                }
                if socket.is_active() {
                    cx.stats.connections += 1;
                    self.peer = socket.remote_endpoint().unwrap_or(NO_PEER);
                    self.set_state(State::Head {
                        first_byte: None,
                        idle_since: now,
                    });
                    return Step::Again;
                }
                self.relisten(socket, config.port, now);
            }
            // Reading a head: fill the buffer, then parse and answer, or wait.
            State::Head {
                first_byte,
                idle_since,
            } => {
                if !socket.is_active() {
                    self.relisten(socket, config.port, now);
                    return Step::Wait(true);
                }
                let read = self.fill(socket);
                if self.buf.is_empty() {
                    if peer_closed(socket) {
                        // The peer closed between requests.
                        self.close(socket, now);
                    } else if now >= idle_since + config.idle_timeout {
                        cx.stats.timeouts += 1;
                        crate::logging::debug!("{}: idle connection closed", self.peer());
                        self.close(socket, now);
                    }
                    return Step::Wait(self.state != before || read > 0);
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
                        return Step::Wait(true);
                    }
                }
                return self.handle(socket, cx, before);
            }
            // Waiting for the rest of a request body.
            State::Body {
                last_read,
                started,
                had,
            } => {
                if !socket.is_active() {
                    self.relisten(socket, config.port, now);
                    return Step::Wait(true);
                }
                if self.fill(socket) > 0 {
                    self.set_state(State::Body {
                        last_read: now,
                        started,
                        had,
                    });
                } else if now >= last_read + config.body_timeout {
                    cx.stats.timeouts += 1;
                    self.reject(socket, cx, Status::RequestTimeout);
                    return Step::Wait(true);
                }
                return self.handle(socket, cx, before);
            }
            // Sending: push head and body into the socket as space allows.
            #[cfg(feature = "ws")]
            State::Send { .. } if matches!(self.body, Sending::WebSocket { .. }) => {
                return self.ws_step(socket, cx);
            }
            State::Send {
                progress,
                keep_alive,
            } => {
                if !socket.may_send() {
                    // The peer reset or closed its receive side.
                    self.log.finish(self.peer_ep(), now, "aborted by peer");
                    self.relisten(socket, config.port, now);
                    return Step::Wait(true);
                }
                if self.is_streaming() && peer_closed(socket) {
                    // The listener went away (EventSource closed): end the stream.
                    self.log.finish(self.peer_ep(), now, "");
                    self.close(socket, now);
                    return Step::Wait(true);
                }
                let sent = match self.write(socket, cx.router, now, config) {
                    Ok(n) => n,
                    Err(Stale) => {
                        crate::logging::debug!(
                            "{}: rendered body outrun by its data, aborted",
                            self.peer()
                        );
                        self.log.finish(self.peer_ep(), now, "aborted");
                        self.relisten(socket, config.port, now);
                        return Step::Wait(true);
                    }
                };
                if !self.is_streaming() {
                    self.measure(socket, now);
                }
                if self.is_sent() {
                    self.requests += 1;
                    self.served += 1;
                    self.log.finish(self.peer_ep(), now, "");
                    if keep_alive {
                        self.set_state(State::Head {
                            first_byte: None,
                            idle_since: now,
                        });
                        if !self.buf.is_empty() {
                            // A pipelined request waits in the buffer.
                            return Step::Again;
                        }
                    } else {
                        self.close(socket, now);
                    }
                } else if sent > 0 {
                    self.set_state(State::Send {
                        progress: now,
                        keep_alive,
                    });
                } else if now >= progress + config.send_timeout
                    && (!self.is_streaming() || socket.send_queue() > 0)
                {
                    cx.stats.timeouts += 1;
                    self.log.finish(self.peer_ep(), now, "send timeout");
                    self.relisten(socket, config.port, now);
                } else if self.render_stuck(socket) {
                    crate::logging::error!(
                        "{}: handler rendered less than its length",
                        self.peer()
                    );
                    cx.stats.server_errors += 1;
                    self.log.finish(self.peer_ep(), now, "aborted: short body");
                    self.relisten(socket, config.port, now);
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
                        self.release(socket, config.port);
                    }
                    tcp::State::Closed | tcp::State::Listen => {
                        self.relisten(socket, config.port, now);
                    }
                    // A client waits: our FIN is acknowledged (so is every byte before it), so
                    // the slot is freed at once, without waiting for the peer's close.
                    tcp::State::FinWait2 if cx.pressure => self.release(socket, config.port),
                    _ if now_queued < queued || now_tcp != tcp => self.set_state(State::Close {
                        progress: now,
                        queued: now_queued,
                        tcp: now_tcp,
                    }),
                    // The peer has our FIN but does not close: give up after the linger time.
                    // Anything still unacknowledged gets the send deadline.
                    tcp::State::FinWait2 if now >= progress + config.linger_timeout => {
                        self.release(socket, config.port);
                    }
                    _ if now >= progress + config.send_timeout => {
                        cx.stats.timeouts += 1;
                        crate::logging::debug!("{}: close made no progress, aborted", self.peer());
                        self.relisten(socket, config.port, now);
                    }
                    _ => {}
                }
            }
        }
        Step::Wait(self.state != before)
    }

    /// Parses what the buffer holds and answers a complete request, or waits for more.
    fn handle(&mut self, socket: &mut tcp::Socket, cx: &mut Cx, before: State) -> Step {
        let now = cx.now;
        let full = self.buf.is_full();
        let req = match http::parse::<MAX_HEADERS>(&self.buf, full) {
            Parse::Partial if peer_closed(socket) => {
                // The peer ended its side mid-head: nothing to answer.
                self.close(socket, now);
                return Step::Wait(true);
            }
            Parse::Partial => return Step::Wait(self.state != before),
            Parse::Reject(status) => {
                self.reject(socket, cx, status);
                return Step::Wait(true);
            }
            Parse::Done(req) => req,
        };
        let rest = &self.buf[req.head_len..];
        let room = REQ - req.head_len;
        let context = cx.context(self.index, self.peer_ep());
        let (answer, body_len) = match respond::answer(&req, rest, room, cx.router, &context) {
            Outcome::NeedBody if peer_closed(socket) => {
                self.close(socket, now);
                return Step::Wait(true);
            }
            Outcome::NeedBody => {
                match self.state {
                    // Judged after reading: a body complete by now is answered, late or not.
                    State::Body { started, .. } if now >= started + cx.config.body_deadline => {
                        cx.stats.timeouts += 1;
                        crate::logging::debug!(
                            "{}: request body not complete in time",
                            self.peer()
                        );
                        self.reject(socket, cx, Status::RequestTimeout);
                        return Step::Wait(true);
                    }
                    State::Body { .. } => {}
                    _ => self.set_state(State::Body {
                        last_read: now,
                        started: now,
                        had: self.buf.len(),
                    }),
                }
                return Step::Wait(self.state != before);
            }
            Outcome::Reply(answer, body_len) => (answer, body_len),
        };
        let mut answer = answer;
        if answer.reply.body.is_open_ended() && req.method != Method::Head {
            if cx.streams >= cx.config.max_streams {
                crate::logging::debug!(
                    "{}: {} streams open, answered 503",
                    self.peer(),
                    cx.streams
                );
                answer.reply = Reply::error(Status::ServiceUnavailable).header("Retry-After", 5);
            } else {
                cx.streams += 1;
            }
        }
        let stream = answer.reply.body.is_open_ended();
        let consumed = req.head_len + body_len;
        let has_body = req.content_length.unwrap_or(0) > 0 || req.transfer_encoding;
        let body_read = body_len > 0;
        // While clients wait for a slot, a connection with nothing more queued is told it
        // closes after this response, so it makes room without surprising its client.
        let make_room = cx.room_wanted > 0 && self.buf.len() == consumed;
        let status = answer.reply.status;
        let keep_alive = req.keep_alive
            && (!has_body || body_read)
            && (!status.is_error() || keeps_connection(status))
            && !make_room
            && !stream;
        if make_room {
            cx.room_wanted -= 1;
            crate::logging::debug!(
                "{}: closes after this response for a waiting client",
                self.peer()
            );
        }
        self.log.start(&req, status, now);
        let (method, version) = (req.method, req.version);
        self.start(answer, method, version, keep_alive, cx);
        // The request is answered: drop it, keep what was pipelined behind it.
        let rest = self.buf.len() - consumed;
        self.buf.copy_within(consumed.., 0);
        self.buf.truncate(rest);
        Step::Again
    }

    /// Reads what fits into the request buffer; returns the byte count. Twice at most: the
    /// socket hands out the contiguous part of its ring at a time, and what waits past the
    /// ring's end would otherwise stay unread until the next segment arrives.
    fn fill(&mut self, socket: &mut tcp::Socket) -> usize {
        let mut total = 0;
        for _ in 0..2 {
            let room = self.buf.capacity() - self.buf.len();
            if room == 0 || !socket.can_recv() {
                break;
            }
            let buf = &mut self.buf;
            total += socket
                .recv(|data| {
                    let n = data.len().min(room);
                    // Cannot fail: n is at most the room left.
                    let _ = buf.extend_from_slice(&data[..n]);
                    (n, n)
                })
                .unwrap_or(0);
        }
        total
    }

    /// Writes head, then body, as far as the socket takes them; returns the byte count.
    fn write(
        &mut self,
        socket: &mut tcp::Socket,
        router: &Router,
        now: Instant,
        config: &Config,
    ) -> Result<usize, Stale> {
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
            Sending::Nothing => 0,
            Sending::Static { data, sent } => {
                let n = socket.send_slice(&data[*sent..]).unwrap_or(0);
                *sent += n;
                n
            }
            Sending::Rendered {
                route,
                token,
                sent,
                len,
            } => {
                if *sent < *len && !router.still_valid(*route, *token) {
                    return Err(Stale);
                }
                let (route, token, len, skip) = (*route, *token, *len, *sent);
                let n = socket
                    .send(|buf| {
                        let room = buf.len().min(len.saturating_sub(skip));
                        let mut w = Window {
                            skip,
                            out: &mut buf[..room],
                            written: 0,
                        };
                        router.render(route, token, &mut w);
                        (w.written, w.written)
                    })
                    .unwrap_or(0);
                *sent += n;
                n
            }
            Sending::Stream { route, token, last } => {
                let idle = now >= *last + config.stream_heartbeat;
                let n = socket
                    .send(|buf| {
                        let n = router.stream(*route, token, buf, idle);
                        (n, n)
                    })
                    .unwrap_or(0);
                if n > 0 || idle {
                    *last = now;
                }
                n
            }
            // Frames go out in the WebSocket step.
            #[cfg(feature = "ws")]
            Sending::WebSocket { .. } => 0,
        };
        self.log.bytes += n;
        self.pushed += (total + n) as u64;
        Ok(total + n)
    }

    /// A rendered body that wrote nothing although the socket had room: its handler renders
    /// fewer bytes than it said, and the response can never complete.
    fn render_stuck(&self, socket: &tcp::Socket) -> bool {
        self.out_sent == self.out.len()
            && matches!(self.body, Sending::Rendered { sent, len, .. } if sent < len)
            && socket.send_capacity() > socket.send_queue()
    }

    fn is_sent(&self) -> bool {
        self.out_sent == self.out.len()
            && match self.body {
                Sending::Nothing => true,
                Sending::Static { data, sent } => sent == data.len(),
                Sending::Rendered { sent, len, .. } => sent == len,
                Sending::Stream { .. } => false,
                #[cfg(feature = "ws")]
                Sending::WebSocket { .. } => false,
            }
    }

    /// Starts closing: FIN after what is queued. A handshake that never completed has nothing
    /// to flush and is dropped at once.
    fn close(&mut self, socket: &mut tcp::Socket, now: Instant) {
        if socket.state() == tcp::State::SynReceived {
            self.drop_half_open(socket, self.port);
            return;
        }
        socket.close();
        self.set_state(State::Close {
            progress: now,
            queued: socket.send_queue(),
            tcp: socket.state(),
        });
    }

    /// Answers a request that could not be parsed or came too slowly, then closes.
    fn reject(&mut self, socket: &mut tcp::Socket, cx: &mut Cx, status: Status) {
        crate::logging::debug!(
            "{}: bad, too large or too slow request, answered {}",
            self.peer(),
            status.code()
        );
        let req = Request::EMPTY;
        // The log line names the method and target when the request line got that far.
        let (method, target) = http::line_start(&self.buf);
        let seen = Request {
            method_str: method,
            target,
            ..req
        };
        self.log.start(&seen, status, cx.now);
        let answer = Answer {
            reply: Reply::error(status),
            route: usize::MAX,
            ranges: false,
        };
        self.start(answer, req.method, req.version, false, cx);
        self.buf.clear();
        // Cannot be stale: the body is static.
        let _ = self.write(socket, cx.router, cx.now, cx.config);
        if self.is_sent() {
            self.log.finish(self.peer_ep(), cx.now, "");
            self.close(socket, cx.now);
        }
    }

    /// Formats the response head into `out` and enters `Send`.
    fn start(
        &mut self,
        mut answer: Answer,
        method: Method,
        version: Version,
        keep_alive: bool,
        cx: &mut Cx,
    ) {
        let status = answer.reply.status;
        let head_only = method == Method::Head || status == Status::NotModified;
        let length = answer.reply.body.len();
        self.body = match answer.reply.body {
            _ if head_only => Sending::Static { data: &[], sent: 0 },
            Body::Static(data) => Sending::Static { data, sent: 0 },
            Body::Rendered { len, token } => Sending::Rendered {
                route: answer.route,
                token,
                sent: 0,
                len,
            },
            Body::Stream { token } => Sending::Stream {
                route: answer.route,
                token,
                last: cx.now,
            },
            #[cfg(feature = "ws")]
            Body::WebSocket { token } => Sending::WebSocket {
                route: answer.route,
                token,
                conn: ws::Conn::new(cx.now),
            },
        };
        let stats = &mut *cx.stats;
        stats.requests += 1;
        match status.code() {
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
        self.pushed = 0;
        self.window = (cx.now, 0);
        self.rate = None;
        let keep_alive = keep_alive && version != Version::V09;
        self.set_state(State::Send {
            progress: cx.now,
            keep_alive,
        });
        if version == Version::V09 {
            // A simple request gets the body alone.
            return;
        }
        if !respond::write_head(&mut self.out, &answer, length, keep_alive, version, cx.unix) {
            // Handler headers that overflow the head buffer: say so rather than send half.
            crate::logging::error!(
                "{}: response head over {HEAD} bytes, answered 500",
                self.peer()
            );
            answer.reply = Reply::error(Status::InternalServerError);
            answer.ranges = false;
            self.body = Sending::Static {
                data: if head_only {
                    &[]
                } else {
                    answer.reply.body_bytes()
                },
                sent: 0,
            };
            self.out.clear();
            let length = answer.reply.body.len();
            let ok = respond::write_head(&mut self.out, &answer, length, false, version, cx.unix);
            debug_assert!(ok, "error head overflow");
            self.set_state(State::Send {
                progress: cx.now,
                keep_alive: false,
            });
        }
    }

    /// Logs a request still being answered as cut (the server is stopping).
    pub(crate) fn cut(&mut self, now: Instant) {
        if matches!(self.state, State::Send { .. }) {
            self.log.finish(self.peer_ep(), now, "cut: server stopped");
        }
    }

    /// The slot as `/status` shows it.
    pub(crate) fn info(&self) -> SlotInfo {
        SlotInfo {
            state: if self.is_streaming() {
                super::SlotState::Stream
            } else {
                super::SlotState::of(self.state)
            },
            served: self.served,
        }
    }
}

/// Error statuses after which the connection may stay open: the request was read whole and
/// understood (a handler's failure included).
fn keeps_connection(status: Status) -> bool {
    matches!(
        status,
        Status::NotFound
            | Status::MethodNotAllowed
            | Status::RangeNotSatisfiable
            | Status::InternalServerError
    )
}

/// The peer sent its FIN (or the connection is gone): no more request bytes will come.
fn peer_closed(socket: &tcp::Socket) -> bool {
    !socket.may_recv() && socket.state() != tcp::State::SynReceived
}

impl Reply {
    /// The bytes of a static body (empty for a rendered one).
    fn body_bytes(&self) -> &'static [u8] {
        match self.body {
            Body::Static(data) => data,
            _ => &[],
        }
    }
}

impl Sending {
    /// A body with no end: an event stream or a WebSocket.
    fn is_open_ended(&self) -> bool {
        match self {
            Sending::Stream { .. } => true,
            #[cfg(feature = "ws")]
            Sending::WebSocket { .. } => true,
            _ => false,
        }
    }
}

impl Body {
    /// A body with no end: an event stream or a WebSocket.
    fn is_open_ended(&self) -> bool {
        match self {
            Body::Stream { .. } => true,
            #[cfg(feature = "ws")]
            Body::WebSocket { .. } => true,
            _ => false,
        }
    }
}
