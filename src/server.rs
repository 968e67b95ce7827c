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

use crate::config::{Config, MAX_HEADERS, REQUEST_BUF, RESPONSE_HEAD};
use crate::gate::{Filter, Gate};
use crate::http::{self, Method, Parse, PathError, Request, Status, Version};
use crate::image::{self, Entry, File};

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

/// What a slot is doing. One `match` per poll in [`Slot::service`].
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
#[derive(Debug, Clone, Copy)]
enum Body {
    /// Static bytes from the image (or a status text), from an offset.
    Static { data: &'static [u8], sent: usize },
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
}

/// How long after a held-off SYN idle keep-alive connections are closed to make room.
const CROWDED_FOR: Duration = Duration::from_secs(3);

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
        });
        Ok(Server {
            iface,
            sockets,
            slots,
            config,
            stats: Stats::default(),
            crowded_until: None,
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
            let mut known = heapless::Vec::<IpEndpoint, N>::new();
            let open = self.slots.iter().any(|s| s.state == State::Listen);
            if !open {
                for slot in &self.slots {
                    let socket = self.sockets.get::<tcp::Socket>(slot.handle);
                    if let Some(ep) = socket.remote_endpoint() {
                        let _ = known.push(ep);
                    }
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
            // A SYN may have taken the last listening socket: re-evaluate the gate.
            busy |= self.service(now);
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
        let crowded = self.crowded_until.is_some_and(|t| now < t);
        let mut changed = false;
        for slot in &mut self.slots {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            changed |= slot.service(socket, now, &self.config, &mut self.stats, crowded);
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
            State::Send { progress, .. } => Some(progress + config.send_timeout),
            State::Close {
                progress,
                tcp: tcp::State::FinWait2,
                ..
            } => Some(progress + config.linger_timeout),
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
    fn service(
        &mut self,
        socket: &mut tcp::Socket,
        now: Instant,
        config: &Config,
        stats: &mut Stats,
        crowded: bool,
    ) -> bool {
        let before = self.state;
        match self.state {
            // A listening socket that left LISTEN got a SYN: a new connection.
            State::Listen => {
                if socket.state() == tcp::State::Listen {
                    return false;
                }
                if socket.is_active() {
                    stats.connections += 1;
                    self.peer = socket.remote_endpoint();
                    self.set_state(State::Head {
                        first_byte: None,
                        idle_since: now,
                    });
                    return self.service(socket, now, config, stats, crowded);
                }
                self.relisten(socket, config.port);
            }
            // Reading a head: fill the buffer, parse, answer or wait.
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
                    } else if now >= idle_since + config.idle_timeout
                        || (crowded && self.requests > 0)
                    {
                        if !crowded {
                            stats.timeouts += 1;
                        }
                        log::debug!("{}: idle keep-alive connection closed", self.peer_display());
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
                let full = self.buf.is_full();
                let parsed = http::parse::<MAX_HEADERS>(&self.buf, full);
                match parsed {
                    Parse::Partial if peer_closed(socket) => {
                        // The peer ended its side mid-head: nothing to answer.
                        self.close(socket, now);
                    }
                    Parse::Partial if now >= first_byte + config.head_timeout => {
                        stats.timeouts += 1;
                        self.reject(socket, now, stats, Status::RequestTimeout);
                    }
                    Parse::Partial => {}
                    Parse::Reject(status) => self.reject(socket, now, stats, status),
                    Parse::Done(req) => {
                        let reply = route(&req);
                        let head_len = req.head_len;
                        let has_body = req.content_length.unwrap_or(0) > 0 || req.transfer_encoding;
                        let keep_alive = req.keep_alive
                            && !has_body
                            && (!reply.status.is_error() || reply.keeps_connection());
                        self.log_request(&req, &reply);
                        self.start(
                            reply,
                            req.method == Method::Head,
                            req.version,
                            keep_alive,
                            now,
                            stats,
                        );
                        // The head is answered: drop it, keep what was pipelined behind it.
                        let rest = self.buf.len() - head_len;
                        self.buf.copy_within(head_len.., 0);
                        self.buf.truncate(rest);
                        return self.service(socket, now, config, stats, crowded);
                    }
                }
            }
            // Sending: push head and body into the socket as space allows.
            State::Send {
                progress,
                keep_alive,
            } => {
                if !socket.may_send() {
                    // The peer reset or closed its receive side.
                    self.relisten(socket, config.port);
                    return true;
                }
                let sent = self.write(socket);
                if self.is_sent() {
                    self.requests += 1;
                    if keep_alive {
                        self.set_state(State::Head {
                            first_byte: None,
                            idle_since: now,
                        });
                        if !self.buf.is_empty() {
                            return self.service(socket, now, config, stats, crowded);
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
                    stats.timeouts += 1;
                    log::debug!("{}: send made no progress, aborted", self.peer_display());
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
                    tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen => {
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
                        stats.timeouts += 1;
                        log::debug!("{}: close made no progress, aborted", self.peer_display());
                        self.relisten(socket, config.port);
                    }
                    _ => {}
                }
            }
        }
        self.state != before
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
    fn write(&mut self, socket: &mut tcp::Socket) -> usize {
        let mut total = 0;
        if self.out_sent < self.out.len() {
            let n = socket.send_slice(&self.out[self.out_sent..]).unwrap_or(0);
            self.out_sent += n;
            total += n;
            if self.out_sent < self.out.len() {
                return total;
            }
        }
        match &mut self.body {
            Body::Static { data, sent } => {
                if *sent < data.len() {
                    let n = socket.send_slice(&data[*sent..]).unwrap_or(0);
                    *sent += n;
                    total += n;
                }
            }
        }
        total
    }

    fn is_sent(&self) -> bool {
        self.out_sent == self.out.len()
            && match self.body {
                Body::Static { data, sent } => sent == data.len(),
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

    /// Answers a request that could not be parsed, then closes.
    fn reject(
        &mut self,
        socket: &mut tcp::Socket,
        now: Instant,
        stats: &mut Stats,
        status: Status,
    ) {
        log::info!(
            "{} - - {} (bad request)",
            self.peer_display(),
            status.code()
        );
        let reply = Reply::error(status);
        self.start(reply, false, Version::V11, false, now, stats);
        self.buf.clear();
        let _ = self.write(socket);
    }

    /// Formats the response head into `out` and enters `Send`.
    fn start(
        &mut self,
        reply: Reply,
        head_only: bool,
        version: Version,
        keep_alive: bool,
        now: Instant,
        stats: &mut Stats,
    ) {
        stats.requests += 1;
        match reply.status.code() {
            400..=499 => stats.client_errors += 1,
            500..=599 => stats.server_errors += 1,
            _ => {}
        }
        let body = if head_only || matches!(reply.status, Status::NotModified) {
            &[][..]
        } else {
            reply.body
        };
        stats.bytes += body.len() as u64;
        self.body = Body::Static {
            data: body,
            sent: 0,
        };
        self.out.clear();
        self.out_sent = 0;
        if version == Version::V09 {
            // A simple request gets the body alone.
            self.set_state(State::Send {
                progress: now,
                keep_alive: false,
            });
            return;
        }
        let mut head = HeadWriter(&mut self.out);
        let ok = head.put(reply.status.line())
            && head.put(reply.headers)
            && head.put(reply.extra)
            && reply.content_range.is_none_or(|(a, b, len)| match (a, b) {
                (Some(a), Some(b)) => {
                    write!(head, "Content-Range: bytes {a}-{b}/{len}\r\n").is_ok()
                }
                _ => write!(head, "Content-Range: bytes */{len}\r\n").is_ok(),
            })
            && reply
                .location
                .is_none_or(|l| head.put("Location: ") && head.put(l) && head.put("/\r\n"))
            && (matches!(reply.status, Status::NotModified)
                || write!(head, "Content-Length: {}\r\n", reply.body.len()).is_ok())
            && head.put(match (keep_alive, version) {
                (false, _) => "Connection: close\r\n",
                (true, Version::V10) => "Connection: keep-alive\r\n",
                (true, _) => "",
            })
            && head.put("\r\n");
        // Every header line is bounded (paths by the image, numbers by their type) and the
        // buffer is sized for the longest; an overflow would be a bug, so fail loudly in debug.
        debug_assert!(ok, "response head overflow");
        self.set_state(State::Send {
            progress: now,
            keep_alive,
        });
    }

    fn log_request(&self, req: &Request, reply: &Reply) {
        log::info!(
            "{} {} {} {} {}",
            self.peer_display(),
            req.method_str,
            req.target,
            reply.status.code(),
            reply.body.len()
        );
    }

    fn peer_display(&self) -> PeerDisplay {
        PeerDisplay(self.peer)
    }
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

/// A response, decided before any byte is written.
#[derive(Debug, Clone, Copy)]
struct Reply {
    status: Status,
    /// Ready-made header lines (a file's block or a status's content type).
    headers: &'static str,
    /// More fixed header lines (`Allow`, `Content-Encoding`...).
    extra: &'static str,
    /// `Location` without its trailing slash (a directory redirect).
    location: Option<&'static str>,
    /// `Content-Range`: `(first, last, length)`, or `(None, None, length)` for 416.
    content_range: Option<(Option<u64>, Option<u64>, u64)>,
    body: &'static [u8],
}

const TEXT_PLAIN: &str = "Content-Type: text/plain; charset=utf-8\r\n";

impl Reply {
    fn error(status: Status) -> Reply {
        Reply {
            status,
            headers: TEXT_PLAIN,
            extra: "",
            location: None,
            content_range: None,
            body: status.text().as_bytes(),
        }
    }

    fn not_found() -> Reply {
        match image::find("/404.html") {
            Some(f) => Reply {
                status: Status::NotFound,
                headers: "Content-Type: text/html; charset=utf-8\r\n",
                body: f.body,
                ..Reply::error(Status::NotFound)
            },
            None => Reply::error(Status::NotFound),
        }
    }

    /// Error statuses after which the connection may stay open.
    fn keeps_connection(&self) -> bool {
        matches!(
            self.status,
            Status::NotFound | Status::MethodNotAllowed | Status::RangeNotSatisfiable
        )
    }
}

/// Decides the response to a parsed request.
fn route(req: &Request) -> Reply {
    if req.method == Method::Unknown {
        return Reply::error(Status::NotImplemented);
    }
    let (path, _query) = match http::split_target(req.target) {
        Ok(p) => p,
        Err(status) => return Reply::error(status),
    };
    let mut norm = heapless::Vec::<u8, { image::MAX_PATH_LEN + 1 }>::new();
    match http::normalize(path, &mut norm) {
        Ok(()) => {}
        Err(PathError::Invalid) => return Reply::error(Status::BadRequest),
        Err(PathError::TooLong) => return method_check(req, Reply::not_found()),
    }
    // normalize() checked UTF-8.
    let norm = core::str::from_utf8(&norm).unwrap_or("/");
    match image::lookup(norm) {
        None => method_check(req, Reply::not_found()),
        Some(Entry::Directory) => {
            let file = image::FILES.iter().find(|f| f.path.starts_with(norm));
            // The redirect target is the directory's own prefix inside a static path.
            let location = file.map(|f| &f.path[..norm.len()]);
            method_check(
                req,
                Reply {
                    status: Status::MovedPermanently,
                    location,
                    ..Reply::error(Status::MovedPermanently)
                },
            )
        }
        Some(Entry::File(file)) => method_check(req, serve_file(req, file)),
    }
}

/// Files and redirects allow GET and HEAD only.
fn method_check(req: &Request, reply: Reply) -> Reply {
    match req.method {
        Method::Get | Method::Head => reply,
        _ => Reply {
            extra: "Allow: GET, HEAD\r\n",
            ..Reply::error(Status::MethodNotAllowed)
        },
    }
}

/// 200, 206, 304 or 416 for a file, with gzip when the client takes it.
fn serve_file(req: &Request, file: &'static File) -> Reply {
    let (body, extra) = match file.gzip {
        Some(gz) if req.accept_gzip => (gz, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"),
        Some(_) => (file.body, "Vary: Accept-Encoding\r\n"),
        None => (file.body, ""),
    };
    let reply = Reply {
        status: Status::Ok,
        headers: file.headers,
        extra,
        location: None,
        content_range: None,
        body,
    };
    if let Some(inm) = req.if_none_match {
        if etag_matches(inm, file.etag) {
            return Reply {
                status: Status::NotModified,
                body: &[],
                ..reply
            };
        }
    }
    let range = req.range.filter(|_| {
        req.method == Method::Get && req.if_range.is_none_or(|v| v == file.etag.as_bytes())
    });
    match range.map(|r| parse_range(r, body.len() as u64)) {
        None | Some(RangeSpec::Ignore) => reply,
        Some(RangeSpec::Unsatisfiable) => Reply {
            status: Status::RangeNotSatisfiable,
            headers: file.headers,
            content_range: Some((None, None, body.len() as u64)),
            body: Status::RangeNotSatisfiable.text().as_bytes(),
            ..reply
        },
        Some(RangeSpec::Bytes(a, b)) => Reply {
            status: Status::PartialContent,
            content_range: Some((Some(a), Some(b), body.len() as u64)),
            body: &body[a as usize..=b as usize],
            ..reply
        },
    }
}

/// `If-None-Match`: `*` or a list containing `etag` (weak comparison, as RFC 9110 says).
fn etag_matches(header: &[u8], etag: &str) -> bool {
    http::tokens(header).any(|t| {
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        t == b"*" || t == etag.as_bytes()
    })
}

/// A `Range` header judged against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve the full representation (no valid single byte range).
    Ignore,
    /// 416.
    Unsatisfiable,
    /// Inclusive first and last byte.
    Bytes(u64, u64),
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`. Several ranges, other units and bad syntax are
/// ignored (the full 200 is sent), as RFC 9110 allows.
pub fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    let Some(spec) = value.strip_prefix(b"bytes=") else {
        return RangeSpec::Ignore;
    };
    let spec = http::trim(spec);
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (first.is_empty(), last.is_empty()) {
        // -n: the last n bytes.
        (true, false) => match num(last) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(len.saturating_sub(n), len - 1),
            None => RangeSpec::Ignore,
        },
        // a- or a-b.
        (false, _) => {
            let Some(a) = num(first) else {
                return RangeSpec::Ignore;
            };
            let b = if last.is_empty() {
                u64::MAX
            } else {
                match num(last) {
                    Some(b) if b >= a => b,
                    // Huge values saturate rather than wrap; they mean "to the end".
                    None if last.iter().all(u8::is_ascii_digit) => u64::MAX,
                    _ => return RangeSpec::Ignore,
                }
            };
            if a >= len {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes(a, b.min(len - 1))
            }
        }
        (true, true) => RangeSpec::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), RangeSpec::Bytes(0, 9));
        assert_eq!(parse_range(b"bytes=90-", 100), RangeSpec::Bytes(90, 99));
        assert_eq!(parse_range(b"bytes=-10", 100), RangeSpec::Bytes(90, 99));
        assert_eq!(parse_range(b"bytes=-1000", 100), RangeSpec::Bytes(0, 99));
        assert_eq!(parse_range(b"bytes=50-1000", 100), RangeSpec::Bytes(50, 99));
        assert_eq!(parse_range(b"bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=9-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=0-1,5-6", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"items=0-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=x-1", 100), RangeSpec::Ignore);
        assert_eq!(
            parse_range(b"bytes=0-99999999999999999999999", 100),
            RangeSpec::Bytes(0, 99)
        );
        assert_eq!(
            parse_range(b"bytes=99999999999999999999999-", 100),
            RangeSpec::Ignore
        );
    }

    #[test]
    fn etags() {
        assert!(etag_matches(b"\"a\", \"b\"", "\"b\""));
        assert!(etag_matches(b"W/\"b\"", "\"b\""));
        assert!(etag_matches(b"*", "\"b\""));
        assert!(!etag_matches(b"\"a\"", "\"b\""));
    }
}

#[cfg(test)]
mod memory {
    use super::*;

    /// The slots' own RAM (request and response-head buffers, state), without socket buffers.
    #[test]
    fn slot_ram_budget() {
        let server = core::mem::size_of::<Server<'static, { crate::SLOTS }>>();
        let socket = core::mem::size_of::<tcp::Socket<'static>>();
        let storage = core::mem::size_of::<SocketStorage<'static>>();
        std::println!(
            "Server<10>: {server} bytes; tcp::Socket {socket} bytes; SocketStorage {storage} bytes"
        );
        // 10 slots of 2 KiB request buffer + 512 B head buffer, plus the interface.
        assert!(
            server < 10 * (REQUEST_BUF + RESPONSE_HEAD + 256) + 4096,
            "{server}"
        );
    }
}
