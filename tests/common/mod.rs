//! Whole-server test harness: the server on one smoltcp interface, clients on a second one,
//! joined by an in-memory Ethernet wire (optionally through smoltcp's FaultInjector), on a
//! simulated clock that jumps to the next frame or the next `poll_at`. Every loop is bounded by
//! a simulated deadline. Responses are parsed with httparse, not with the server's own code.
//!
//! One parameter picks the IP family of the whole network: `SMOLHTTPD_TEST_FAMILY=ipv6 cargo
//! test` runs every suite over IPv6 (server fd69::1, client fd69::100, neighbour discovery
//! instead of ARP); unset or `ipv4`, over IPv4 (192.168.69.1 and .100). CI runs both.
#![allow(dead_code)]

pub mod handlers;
pub mod ws;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smolhttpd::chat::{self, ChatRoom};
use smolhttpd::files::Files;
use smolhttpd::gate::Gate;
use smolhttpd::handler::{Handler, Methods, Route, Router};
use smolhttpd::status::StatusPage;
use smolhttpd::{Config, Server};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, FaultInjector, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address,
};

/// The IP family the simulated network runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// The family this run of the suites uses: `SMOLHTTPD_TEST_FAMILY` (`ipv4`, the default, or
/// `ipv6`); anything else is a mistake and stops the test.
pub fn family() -> Family {
    match std::env::var("SMOLHTTPD_TEST_FAMILY").as_deref() {
        Err(_) | Ok("") | Ok("ipv4") => Family::Ipv4,
        Ok("ipv6") => Family::Ipv6,
        Ok(other) => panic!("SMOLHTTPD_TEST_FAMILY={other}: expected ipv4 or ipv6"),
    }
}

/// Host `n` of the test network in this run's family: 192.168.69.n/24 or fd69::n/64 (n in hex,
/// as the contract writes fd69::100 for the host side).
pub fn host_ip(n: u16) -> IpAddress {
    match family() {
        Family::Ipv4 => IpAddress::Ipv4(Ipv4Address::new(192, 168, 69, n as u8)),
        Family::Ipv6 => IpAddress::Ipv6(Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, n)),
    }
}

/// The server: 192.168.69.1 or fd69::1.
pub fn server_ip() -> IpAddress {
    host_ip(1)
}

/// The client: 192.168.69.100 or fd69::100.
pub fn client_ip() -> IpAddress {
    host_ip(0x100)
}

/// The prefix length of the test network.
fn prefix_len() -> u8 {
    match family() {
        Family::Ipv4 => 24,
        Family::Ipv6 => 64,
    }
}
const MTU: usize = 1500;
/// Frames a wire keeps ready, so the server's path through it allocates nothing.
const POOL: usize = 2048;

struct Queues {
    /// frames[0]: towards the server; frames[1]: towards the client.
    frames: [VecDeque<Vec<u8>>; 2],
    pool: Vec<Vec<u8>>,
    /// Reordering and duplication, beside smoltcp's FaultInjector (which can do neither).
    chaos: Chaos,
    /// TCP segments with RST sent towards the client.
    resets_to_client: u32,
    /// The client host is gone: frames towards it vanish and it sends nothing.
    client_gone: bool,
}

/// Percentages of frames the wire delivers out of order or twice, from a seeded xorshift.
#[derive(Clone, Copy, Default)]
pub struct Chaos {
    pub reorder_pct: u32,
    pub duplicate_pct: u32,
    state: u32,
    /// Frames duplicated and reordered so far.
    pub duplicated: u32,
    pub reordered: u32,
}

impl Chaos {
    pub fn new(seed: u32, reorder_pct: u32, duplicate_pct: u32) -> Chaos {
        Chaos {
            reorder_pct,
            duplicate_pct,
            state: seed.max(1),
            ..Chaos::default()
        }
    }

    fn roll(&mut self, pct: u32) -> bool {
        if pct == 0 {
            return false;
        }
        // xorshift32
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x % 100 < pct
    }
}

impl Queues {
    /// Queues a frame towards `to`, maybe twice, maybe ahead of the one before it.
    fn deliver(&mut self, to: usize, frame: Vec<u8>) {
        if to == 1 && is_rst(&frame) {
            self.resets_to_client += 1;
        }
        if to == 1 && self.client_gone {
            self.pool.push(frame);
            return;
        }
        if self.chaos.roll(self.chaos.duplicate_pct) {
            let mut copy = self.pool.pop().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&frame);
            self.frames[to].push_back(copy);
            self.chaos.duplicated += 1;
        }
        let q = &mut self.frames[to];
        q.push_back(frame);
        if q.len() >= 2 && self.chaos.roll(self.chaos.reorder_pct) {
            let n = q.len();
            q.swap(n - 1, n - 2);
            self.chaos.reordered += 1;
        }
    }
}

/// One end of the wire.
pub struct End {
    q: Rc<RefCell<Queues>>,
    /// Which queue this end reads (0: server, 1: client).
    side: usize,
}

pub struct EndRx {
    q: Rc<RefCell<Queues>>,
    frame: Vec<u8>,
}

pub struct EndTx {
    q: Rc<RefCell<Queues>>,
    to: usize,
}

impl phy::RxToken for EndRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        let mut frame = self.frame;
        frame.clear();
        // Injected frames join the pool too; past its size they are freed (a long fuzz run
        // injects millions).
        let mut q = self.q.borrow_mut();
        if q.pool.len() < POOL {
            q.pool.push(frame);
        }
        r
    }
}

impl phy::TxToken for EndTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.q.borrow_mut().pool.pop().unwrap_or_default();
        frame.resize(len, 0);
        let r = f(&mut frame);
        self.q.borrow_mut().deliver(self.to, frame);
        r
    }
}

impl Device for End {
    type RxToken<'a> = EndRx;
    type TxToken<'a> = EndTx;

    fn receive(&mut self, _: Instant) -> Option<(EndRx, EndTx)> {
        let frame = self.q.borrow_mut().frames[self.side].pop_front()?;
        Some((
            EndRx {
                q: self.q.clone(),
                frame,
            },
            EndTx {
                q: self.q.clone(),
                to: 1 - self.side,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<EndTx> {
        Some(EndTx {
            q: self.q.clone(),
            to: 1 - self.side,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        caps
    }
}

/// True for an IPv4 TCP segment with RST set.
fn is_rst(frame: &[u8]) -> bool {
    smolhttpd::gate::tcp_segment(frame).is_some_and(|(_, tcp)| tcp.rst())
}

/// What a test client connection does.
pub struct Conn {
    handle: SocketHandle,
    /// Bytes to send.
    request: Vec<u8>,
    sent: usize,
    /// With a gap, one byte is sent each `gap` (after the first `gap_after` bytes).
    gap: Option<Duration>,
    gap_after: usize,
    next_send: Instant,
    /// Close our side after this many complete responses (None: wait for the server to close).
    close_after: Option<usize>,
    no_read: bool,
    read_rate: Option<(usize, Duration)>,
    next_read: Instant,
    again: usize,
    /// Requests sent so far.
    rounds: usize,
    /// All bytes received.
    pub received: Vec<u8>,
    /// The server closed (FIN) or reset.
    pub ended: bool,
    /// The connection was reset or refused.
    pub reset: bool,
    /// When the last byte arrived.
    pub last_rx: Option<Instant>,
    /// When the connection ended.
    pub ended_at: Option<Instant>,
    connected: bool,
}

/// Options for one client connection.
#[derive(Clone, Copy, Default)]
pub struct Opts {
    pub gap: Option<Duration>,
    /// Bytes sent at once before the gap applies (a head sent whole, a body trickled).
    pub gap_after: usize,
    /// Never read: the receive window fills and stays shut.
    pub no_read: bool,
    /// Send the request this many more times on the same connection, each once the previous
    /// response is complete (a keep-alive client like wrk).
    pub again: usize,
    pub close_after: Option<usize>,
    /// Read at most this many bytes each this long (a slow reader).
    pub read_rate: Option<(usize, Duration)>,
    /// The client socket's receive buffer (default 64 KiB).
    pub rx_buffer: Option<usize>,
}

impl Opts {
    /// Like curl: done once one complete response is in (by Content-Length), whether or not
    /// the server's FIN made it through.
    pub fn like_curl() -> Opts {
        Opts {
            close_after: Some(1),
            ..Opts::default()
        }
    }
}

/// The simulated network: a server with `N` slots and a client interface.
pub struct Sim<
    const N: usize = { smolhttpd::SLOTS },
    const REQ: usize = { smolhttpd::config::REQUEST_BUF },
    const HEAD: usize = { smolhttpd::config::RESPONSE_HEAD },
> {
    pub now: Instant,
    pub server: Server<'static, N, REQ, HEAD>,
    server_iface: Interface,
    /// The server's socket set: its slots, and any socket a test adds beside them.
    pub server_sockets: SocketSet<'static>,
    server_dev: Gate<FaultInjector<End>, N>,
    client: Interface,
    client_dev: FaultInjector<End>,
    pub client_sockets: SocketSet<'static>,
    next_port: u16,
    pub conns: Vec<Conn>,
    /// Called with true before and false after each server poll (allocation counting).
    pub around_server: Option<fn(bool)>,
    q: Rc<RefCell<Queues>>,
}

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![v; n].into_boxed_slice())
}

/// Leaks `h` for a route of the simulated server.
pub fn leak_handler<H: Handler + 'static>(h: H) -> &'static mut dyn Handler {
    Box::leak(Box::new(h))
}

/// The binary's routes: the chat, `/status`, and the built-in image as the catch-all.
pub fn site_routes<const N: usize>() -> Vec<Route<'static>> {
    vec![
        Route::prefix(
            Methods::GET | Methods::POST,
            "/chat",
            leak_handler(ChatRoom::<{ chat::MESSAGES }>::new()),
        )
        .max_body(chat::MAX_FORM),
        Route::exact(
            Methods::GET | Methods::HEAD,
            "/status",
            leak_handler(StatusPage::<N>::new()),
        ),
        Route::prefix(
            Methods::GET | Methods::HEAD,
            "/",
            leak_handler(Files::new(smolhttpd::site::FILES)),
        ),
    ]
}

impl<const N: usize, const REQ: usize, const HEAD: usize> Sim<N, REQ, HEAD> {
    pub fn new() -> Self {
        Self::with_faults(0, 0, 0, Config::new())
    }

    /// A network that drops and corrupts frames in each direction with these percentages.
    pub fn with_faults(seed: u32, drop_pct: u8, corrupt_pct: u8, config: Config) -> Self {
        Self::with_routes(seed, drop_pct, corrupt_pct, config, site_routes::<N>())
    }

    /// A network whose server answers through `routes` (leaked for the test's lifetime).
    pub fn with_routes(
        seed: u32,
        drop_pct: u8,
        corrupt_pct: u8,
        config: Config,
        routes: Vec<Route<'static>>,
    ) -> Self {
        let q = Rc::new(RefCell::new(Queues {
            frames: [VecDeque::with_capacity(POOL), VecDeque::with_capacity(POOL)],
            pool: (0..POOL).map(|_| Vec::with_capacity(MTU + 14)).collect(),
            chaos: Chaos::default(),
            resets_to_client: 0,
            client_gone: false,
        }));
        let mut server_dev = FaultInjector::new(
            End {
                q: q.clone(),
                side: 0,
            },
            seed,
        );
        let mut client_dev = FaultInjector::new(
            End {
                q: q.clone(),
                side: 1,
            },
            seed,
        );
        // Faults on the server's device act on both directions (its rx and its tx), so each
        // direction loses `drop_pct` percent of frames.
        server_dev.set_drop_chance(drop_pct);
        server_dev.set_corrupt_chance(corrupt_pct);
        let now = Instant::from_millis(0);
        let iface = |dev: &mut FaultInjector<End>, mac: u8, ip: IpAddress| {
            let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress([
                2, 0, 0, 0, 0, mac,
            ])));
            cfg.random_seed = u64::from(seed) + u64::from(mac);
            let mut iface = Interface::new(cfg, dev, now);
            iface.update_ip_addrs(|a| {
                a.push(IpCidr::new(ip, prefix_len())).unwrap();
            });
            iface
        };
        let server_iface = iface(&mut server_dev, 1, server_ip());
        let client = iface(&mut client_dev, 2, client_ip());
        // Room for the slots and two sockets of a test's own.
        let storage: Vec<SocketStorage> = (0..N + 2).map(|_| SocketStorage::EMPTY).collect();
        let mut server_sockets = SocketSet::new(Box::leak(storage.into_boxed_slice()));
        let router = Router::new(Box::leak(routes.into_boxed_slice()));
        let server = Server::<N, REQ, HEAD>::new(
            router,
            &mut server_sockets,
            leak(0u8, N * smolhttpd::config::RX_BUFFER),
            leak(0u8, N * smolhttpd::config::TX_BUFFER),
            Box::leak(Box::new(smolhttpd::server::Slots::new())),
            config,
        )
        .expect("server setup");
        Sim {
            now,
            server,
            server_iface,
            server_sockets,
            server_dev: Gate::new(server_dev),
            client,
            client_dev,
            client_sockets: SocketSet::new(Vec::new()),
            next_port: 49152,
            conns: Vec::new(),
            around_server: None,
            q,
        }
    }

    /// Opens a client connection that will send `request`; returns its index.
    pub fn open(&mut self, request: &[u8], opts: Opts) -> usize {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; opts.rx_buffer.unwrap_or(65536)]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let handle = self.client_sockets.add(socket);
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(49152);
        let socket = self.client_sockets.get_mut::<tcp::Socket>(handle);
        socket
            .connect(self.client.context(), (server_ip(), 80), port)
            .unwrap();
        self.conns.push(Conn {
            handle,
            request: request.to_vec(),
            sent: 0,
            gap: opts.gap,
            gap_after: opts.gap_after,
            next_send: self.now,
            close_after: opts.close_after,
            no_read: opts.no_read,
            read_rate: opts.read_rate,
            next_read: self.now,
            again: opts.again,
            rounds: 1,
            received: Vec::new(),
            ended: false,
            reset: false,
            last_rx: None,
            ended_at: None,
            connected: false,
        });
        self.conns.len() - 1
    }

    fn pending_frames(&self) -> bool {
        let q = self.q.borrow();
        !q.frames[0].is_empty() || !q.frames[1].is_empty()
    }

    /// One round: poll server, poll client, run client connections.
    fn step(&mut self) {
        if let Some(f) = self.around_server {
            f(true);
        }
        self.server.poll(
            self.now,
            &mut self.server_iface,
            &mut self.server_dev,
            &mut self.server_sockets,
        );
        if let Some(f) = self.around_server {
            f(false);
        }
        if self.q.borrow().client_gone {
            return;
        }
        self.client
            .poll(self.now, &mut self.client_dev, &mut self.client_sockets);
        let now = self.now;
        for c in &mut self.conns {
            if c.ended {
                continue;
            }
            let s = self.client_sockets.get_mut::<tcp::Socket>(c.handle);
            if s.may_send() {
                c.connected = true;
            }
            if s.can_send() && c.sent < c.request.len() && now >= c.next_send {
                let end = match c.gap {
                    Some(_) if c.sent >= c.gap_after => c.sent + 1,
                    Some(_) => c.gap_after.min(c.request.len()),
                    None => c.request.len(),
                };
                c.sent += s.send_slice(&c.request[c.sent..end]).unwrap_or(0);
                if let Some(g) = c.gap {
                    c.next_send = now + g;
                }
            }
            let mut budget = match c.read_rate {
                Some((n, every)) if now >= c.next_read => {
                    c.next_read = now + every;
                    n
                }
                Some(_) => 0,
                None => usize::MAX,
            };
            while s.can_recv() && !c.no_read && budget > 0 {
                let n = s
                    .recv(|d| {
                        let n = d.len().min(budget);
                        c.received.extend_from_slice(&d[..n]);
                        (n, n)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                budget -= n;
                c.last_rx = Some(now);
            }
            if c.again > 0 && c.sent == c.request.len() && count_responses(&c.received) == c.rounds
            {
                c.again -= 1;
                c.rounds += 1;
                c.sent = 0;
            }
            if let Some(n) = c.close_after {
                if count_responses(&c.received) >= n {
                    // We have what we came for: close our side and stop watching.
                    s.close();
                    c.ended = true;
                    c.ended_at = Some(now);
                    continue;
                }
            }
            let state = s.state();
            if state == tcp::State::Closed {
                // Refused (RST to our SYN) if it never connected; else reset or fully closed.
                c.reset = !c.connected;
                c.ended = true;
                c.ended_at = Some(now);
            } else if c.connected && !s.may_recv() && !s.can_recv() {
                // The server sent FIN and we have read everything: close our side too.
                s.close();
                c.ended = true;
                c.ended_at = Some(now);
            }
        }
        self.client
            .poll(self.now, &mut self.client_dev, &mut self.client_sockets);
    }

    /// When the next thing happens: a pending frame (now), a poll_at, or a trickle send.
    fn next_time(&mut self) -> Option<Instant> {
        if self.pending_frames() {
            return Some(self.now);
        }
        let mut at = self
            .server
            .poll_at(self.now, &mut self.server_iface, &self.server_sockets);
        if self.q.borrow().client_gone {
            return at;
        }
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a: Instant| a.min(t)));
            }
        };
        consider(self.client.poll_at(self.now, &self.client_sockets));
        for c in &self.conns {
            if !c.ended && c.sent < c.request.len() && c.gap.is_some() {
                consider(Some(c.next_send));
            }
            if !c.ended && c.read_rate.is_some() {
                consider(Some(c.next_read));
            }
        }
        at
    }

    /// Runs until every connection ended or `limit` of simulated time passed.
    /// Returns true when all ended.
    pub fn run(&mut self, limit: Duration) -> bool {
        let deadline = self.now + limit;
        let mut rounds = 0u64;
        loop {
            self.step();
            rounds += 1;
            assert!(rounds < 5_000_000, "simulation did not settle");
            if self.conns.iter().all(|c| c.ended) {
                // Let the last FIN/ACKs go out.
                self.settle();
                return true;
            }
            match self.next_time() {
                Some(t) if t <= deadline => self.now = self.now.max(t),
                _ => {
                    self.now = deadline;
                    self.step();
                    return self.conns.iter().all(|c| c.ended);
                }
            }
        }
    }

    /// Runs for exactly `d` of simulated time.
    pub fn advance(&mut self, d: Duration) {
        let deadline = self.now + d;
        loop {
            self.step();
            match self.next_time() {
                Some(t) if t <= deadline => self.now = self.now.max(t),
                _ => break,
            }
        }
        self.now = deadline;
        self.step();
    }

    /// Polls without advancing time until no frame is in flight and nothing is due now.
    fn settle(&mut self) {
        for _ in 0..1000 {
            self.step();
            let due_now = self
                .server
                .poll_at(self.now, &mut self.server_iface, &self.server_sockets)
                .is_some_and(|t| t <= self.now);
            if !self.pending_frames() && !due_now {
                break;
            }
        }
    }

    /// One request on its own connection; returns the raw bytes received.
    pub fn exchange(&mut self, request: &[u8]) -> Vec<u8> {
        self.conns.clear();
        let i = self.open(request, Opts::default());
        assert!(self.run(Duration::from_secs(60)), "exchange did not finish");
        self.conns[i].received.clone()
    }

    /// `GET path` with `Connection: close`, parsed.
    pub fn get(&mut self, path: &str) -> Response {
        let raw = self.exchange(&get_close(path));
        Response::parse(&raw).unwrap_or_else(|| panic!("unparsable response to {path}: {raw:?}"))
    }

    /// One round at the current time: the server polls once, then the clients.
    pub fn step_once(&mut self) {
        self.step();
    }

    /// Queues more bytes for client connection `i` to send (a WebSocket frame, say), after
    /// what it was given so far.
    pub fn send(&mut self, i: usize, bytes: &[u8]) {
        self.conns[i].request.extend_from_slice(bytes);
    }

    /// Client connection `i` stops or resumes reading.
    pub fn set_no_read(&mut self, i: usize, no_read: bool) {
        self.conns[i].no_read = no_read;
    }

    /// Closes client connection `i` from the client's side (FIN), as a listener that leaves.
    pub fn close_client(&mut self, i: usize) {
        let handle = self.conns[i].handle;
        self.client_sockets.get_mut::<tcp::Socket>(handle).close();
    }

    /// Forgets every client connection and frees its socket.
    pub fn clear_clients(&mut self) {
        for c in self.conns.drain(..) {
            self.client_sockets.remove(c.handle);
        }
    }

    /// From now on the wire reorders and duplicates frames too.
    pub fn set_chaos(&mut self, chaos: Chaos) {
        self.q.borrow_mut().chaos = chaos;
    }

    /// RST segments the server has sent so far.
    pub fn resets_from_server(&self) -> u32 {
        self.q.borrow().resets_to_client
    }

    /// The wire's chaos settings and counters.
    pub fn chaos(&self) -> Chaos {
        self.q.borrow().chaos
    }

    /// Client connections the server has let go without telling them: connected on the
    /// client's side, no FIN received, not ended, and held by no server socket. A server that
    /// drops a connection must send FIN or RST, or a client that only reads waits forever.
    pub fn orphans(&self) -> Vec<usize> {
        let held: Vec<u16> = self
            .server_sockets
            .iter()
            .filter_map(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(t) => t.remote_endpoint().map(|e| e.port),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .collect();
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.ended && c.connected)
            .filter(|(_, c)| {
                let s = self.client_sockets.get::<tcp::Socket>(c.handle);
                let port = s.local_endpoint().map(|e| e.port);
                let open = matches!(
                    s.state(),
                    tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
                );
                open && !port.is_some_and(|p| held.contains(&p))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Queues a raw Ethernet frame towards the server, as if from the wire.
    pub fn inject(&mut self, frame: Vec<u8>) {
        self.q.borrow_mut().frames[0].push_back(frame);
    }

    /// The client host leaves the network at once: it sends nothing more, frames towards it
    /// vanish, and it answers no ARP.
    pub fn vanish_client(&mut self) {
        self.q.borrow_mut().client_gone = true;
    }

    /// What the server asks its caller for: how long it may sleep now.
    pub fn server_poll_delay(&mut self) -> Option<Duration> {
        self.server
            .poll_delay(self.now, &mut self.server_iface, &self.server_sockets)
    }

    /// Runs the server alone (the client is gone or idle) for `d` of simulated time, jumping
    /// from one `poll_at` to the next; panics if it asks to be polled again at the same time
    /// more than `spins` times in a row (a busy loop).
    pub fn run_server_for(&mut self, d: Duration, spins: u32) {
        let deadline = self.now + d;
        let mut same = 0;
        for _ in 0..1_000_000 {
            self.step();
            let next = match self.next_time() {
                Some(t) if t <= deadline => t.max(self.now),
                _ => break,
            };
            if next == self.now && !self.pending_frames() {
                same += 1;
                assert!(
                    same <= spins,
                    "the server asks to be polled again and again at {}",
                    self.now
                );
            } else {
                same = 0;
            }
            self.now = next;
        }
        self.now = deadline;
        self.step();
    }

    /// Slots in Listen state.
    pub fn free_slots(&self) -> usize {
        self.server
            .slot_states()
            .iter()
            .filter(|s| **s == smolhttpd::server::State::Listen)
            .count()
    }
}

/// A TCP SYN to the server's port 80 from `ip:port` (Ethernet source `mac`), with an MSS
/// option and valid checksums: a client, or a spoofed one; IPv4 or IPv6 as `ip` is.
pub fn syn_frame(ip: IpAddress, port: u16, mac: [u8; 6], seq: u32) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, IpRepr, TcpControl, TcpPacket,
        TcpRepr, TcpSeqNumber,
    };
    let tcp = TcpRepr {
        src_port: port,
        dst_port: 80,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let dst = server_ip();
    let ip_repr = IpRepr::new(ip, dst, IpProtocol::Tcp, tcp.buffer_len(), 64);
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        ethertype: match ip {
            IpAddress::Ipv4(_) => EthernetProtocol::Ipv4,
            IpAddress::Ipv6(_) => EthernetProtocol::Ipv6,
        },
    };
    let mut frame = vec![0u8; 14 + ip_repr.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut f);
    let payload = f.payload_mut();
    ip_repr.emit(&mut payload[..], &caps);
    let head = ip_repr.header_len();
    let mut t = TcpPacket::new_unchecked(&mut payload[head..]);
    tcp.emit(&mut t, &ip, &dst, &caps);
    frame
}

/// The bytes of `GET path` over HTTP/1.1 with `Connection: close`.
pub fn get_close(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

/// `POST /chat` with the form body `form` (already encoded) and `Connection: close`.
pub fn chat_post(form: &str) -> Vec<u8> {
    format!(
        "POST /chat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .into_bytes()
}

/// A response parsed with httparse.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes of this response on the wire.
    pub len: usize,
}

impl Response {
    /// Parses one response at the start of `raw`, its body by Content-Length (or to the end).
    pub fn parse(raw: &[u8]) -> Option<Response> {
        Self::parse_with(raw, false)
    }

    pub fn parse_with(raw: &[u8], head_only: bool) -> Option<Response> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(raw).ok()? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return None,
        };
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = resp.code?;
        let cl = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let body_len = if head_only || status == 304 {
            0
        } else {
            cl.unwrap_or(raw.len() - head_len)
        };
        if raw.len() < head_len + body_len {
            return None;
        }
        Some(Response {
            status,
            headers,
            body: raw[head_len..head_len + body_len].to_vec(),
            len: head_len + body_len,
        })
    }

    /// Parses every response in `raw`, in order.
    pub fn parse_all(mut raw: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        while let Some(r) = Response::parse(raw) {
            raw = &raw[r.len..];
            out.push(r);
            if raw.is_empty() {
                break;
            }
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Complete responses at the start of `raw`.
fn count_responses(raw: &[u8]) -> usize {
    Response::parse_all(raw).len()
}

/// The files of the image, read from the source folder (independent of the server's table).
pub fn image_files() -> Vec<(String, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fs_image");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let url = format!("/{}", p.strip_prefix(&root).unwrap().to_str().unwrap());
                out.push((url, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
