//! Limits and deadlines: every tunable number of the server in one place.
//!
//! The constants are the defaults of the contract (docs/design.md); [`Config`] carries the ones that
//! may change at run time and is built with `const fn`s, so it fits in a `static` on firmware.

use smoltcp::time::Duration;

/// Connection slots: one TCP socket listening on the HTTP port each.
pub const SLOTS: usize = 10;
/// Bytes of request head a slot buffers (request line + headers). Over it: 414 or 431.
pub const REQUEST_BUF: usize = 2048;
/// Header lines httparse may return for one request; more is 431.
pub const MAX_HEADERS: usize = 32;
/// Bytes of response head a slot formats (status line + headers).
pub const RESPONSE_HEAD: usize = 512;
/// Default receive buffer of each slot's TCP socket.
pub const RX_BUFFER: usize = 4096;
/// Default transmit buffer of each slot's TCP socket.
pub const TX_BUFFER: usize = 16384;
/// Bytes of a normalised request path; a longer path is 414.
pub const MAX_PATH: usize = 256;
/// Held-off SYNs the gate keeps to replay when a slot frees (a retransmission replaces its
/// copy); more waiting clients get in on their TCP's retry.
pub const SYN_QUEUE: usize = 16;
/// Default HTTP port.
pub const HTTP_PORT: u16 = 80;

/// Runtime configuration of a [`crate::Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// TCP port the slots listen on.
    pub port: u16,
    /// A request head must be complete this long after its first byte (else 408).
    pub head_timeout: Duration,
    /// A request body may pause this long between reads (else 408).
    pub body_timeout: Duration,
    /// A request body must be complete this long after the head (else 408), however steadily
    /// it trickles.
    pub body_deadline: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// A response that makes no progress this long is aborted.
    pub send_timeout: Duration,
    /// After an error response, unread input is drained this long before the slot is freed.
    pub linger_timeout: Duration,
    /// Frames taken from the device per `poll` before the slots are serviced.
    pub rx_budget: usize,
    /// Bytes per second a client must read a response at to keep its slot while other clients
    /// wait for one (measured over [`RATE_WINDOW`]). Without waiting clients nobody is cut.
    pub min_rate: u32,
    /// Slots that may hold an open stream ([`crate::handler::Body::Stream`]) at once; one
    /// more is answered 503 with `Retry-After`.
    pub max_streams: usize,
    /// A stream that sent nothing this long is asked for a keep-alive.
    pub stream_heartbeat: Duration,
}

/// The window over which a response's read rate is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// How long an aborted slot waits for its RST to go out before it listens again anyway. A RST
/// waits only for the peer's address to resolve (ARP); a peer that does not answer ARP could
/// not receive it, and must not pin the slot.
pub const RESET_GIVE_UP: Duration = Duration::from_secs(1);

impl Config {
    /// The contract's defaults.
    pub const fn new() -> Self {
        Config {
            port: HTTP_PORT,
            head_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            body_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            rx_budget: 64,
            min_rate: 2048,
            max_streams: 6,
            stream_heartbeat: Duration::from_secs(15),
        }
    }

    /// Listen on `port` instead of 80.
    pub const fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Set the request head deadline.
    pub const fn head_timeout(mut self, d: Duration) -> Self {
        self.head_timeout = d;
        self
    }

    /// Set the body deadline (between reads).
    pub const fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// Set the deadline of a whole request body, from the end of its head.
    pub const fn body_deadline(mut self, d: Duration) -> Self {
        self.body_deadline = d;
        self
    }

    /// Set the keep-alive idle deadline.
    pub const fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Set the send-progress deadline.
    pub const fn send_timeout(mut self, d: Duration) -> Self {
        self.send_timeout = d;
        self
    }
}

impl Config {
    /// Set the minimum read rate (bytes per second) under pressure.
    pub const fn min_rate(mut self, bytes_per_sec: u32) -> Self {
        self.min_rate = bytes_per_sec;
        self
    }

    /// Set how many slots may hold open streams at once.
    pub const fn max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
