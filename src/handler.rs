//! Handlers and the router: what a firmware or host program plugs into the server.
//!
//! A [`Handler`] sees a parsed [`Request`] (method, normalised path, query, headers and a body
//! the server has already collected) and answers with a [`Reply`]: status, content type, a few
//! header lines and a [`Body`] that is either static bytes or rendered on demand. The server
//! does all of HTTP around it: HEAD, `Range`/`If-Range`, `If-None-Match` and 304 when the reply
//! names an ETag, keep-alive, pipelining, deadlines and every error status. A handler never
//! writes raw HTTP and never allocates: it returns, and the server sends (only a `Body::Stream`
//! keeps its slot, for as long as the stream is open).
//!
//! A [`Router`] is a list of [`Route`]s the caller lends (like smoltcp's `SocketSet`): each is
//! a set of [`Methods`], an exact path or a path prefix, and a handler. The first route whose
//! path and method match answers; a path that matches only with other methods is 405 with
//! `Allow`; no match at all is 404.
//!
//! This module decides nothing about sockets or time.

use core::fmt::{self, Write as _};

use managed::ManagedSlice;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

pub use crate::http::{Method, Methods, Request, Status};
use crate::json::{Full, Sink};
use crate::server::{SlotInfo, Stats};

/// What a rendered body is rendered from: a handler's own small note (ids, an index into its
/// own storage). The server keeps it with the slot and hands it back on each send.
pub type Token = [u64; 4];

/// The body of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Bytes that live as long as the program (a file of the image, a fixed text). The server
    /// answers `Range` requests on these.
    Static(&'static [u8]),
    /// `len` bytes that [`Handler::render`] writes when asked, as often as the socket's send
    /// buffer needs, each time skipping what was already sent. `len` must be exact.
    Rendered { len: usize, token: Token },
    /// An open-ended stream (Server-Sent Events): no `Content-Length`, the connection ends
    /// with it. The server calls [`Handler::stream`] whenever it can send and the handler has
    /// more; such a response is the first to give way when a client waits for a slot, and at
    /// most `Config::max_streams` are open at once (then 503).
    Stream { token: Token },
    /// Accepts a WebSocket upgrade (feature `ws`): the server checks the handshake (400
    /// otherwise), answers 101 and from then on hands this route's handler the connection's
    /// messages ([`Handler::ws_message`]) and pulls what it sends ([`Handler::stream`], whole
    /// frames). Counts with the streams toward `Config::max_streams`. See [`crate::ws`].
    #[cfg(feature = "ws")]
    WebSocket { token: Token },
}

impl Body {
    /// The body's length in bytes (0 for a stream, whose length is not known).
    pub const fn len(&self) -> usize {
        match self {
            Body::Static(data) => data.len(),
            Body::Rendered { len, .. } => *len,
            Body::Stream { .. } => 0,
            #[cfg(feature = "ws")]
            Body::WebSocket { .. } => 0,
        }
    }

    /// True for a body of no bytes.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Room for the header lines a reply formats at run time ([`Reply::header`]).
pub const REPLY_HEADERS: usize = 192;

/// A response as a handler decides it; the server writes the HTTP.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// `Content-Type` value; empty for none.
    pub content_type: &'static str,
    /// Strong ETag, quotes included. With one, `If-None-Match` gives 304 and `If-Range` is
    /// honoured.
    pub etag: Option<&'static str>,
    /// Last modification, seconds since 1970: `Last-Modified`, and `If-Modified-Since` gives
    /// 304 (when the request has no `If-None-Match`, which wins).
    pub last_modified: Option<u64>,
    /// More fixed header lines, each ending in CRLF (`"Cache-Control: no-store\r\n"`).
    pub headers: &'static str,
    /// Header lines formatted at run time by [`Reply::header`].
    pub dynamic: heapless::String<REPLY_HEADERS>,
    /// The body.
    pub body: Body,
    /// A header did not fit; the server answers 500 instead.
    pub(crate) overflow: bool,
}

/// `Content-Type` of JSON replies.
pub const JSON: &str = "application/json";
/// `Content-Type` of plain text replies.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `Content-Type` of HTML replies.
pub const HTML: &str = "text/html; charset=utf-8";

impl Reply {
    /// A reply with this status, type and body, no other headers.
    pub const fn new(status: Status, content_type: &'static str, body: Body) -> Reply {
        Reply {
            status,
            content_type,
            etag: None,
            last_modified: None,
            headers: "",
            dynamic: heapless::String::new(),
            body,
            overflow: false,
        }
    }

    /// 200 with a static plain text body.
    pub const fn text(text: &'static str) -> Reply {
        Reply::new(Status::Ok, TEXT, Body::Static(text.as_bytes()))
    }

    /// `status` with JSON that is never cached (`Cache-Control: no-store`).
    pub const fn json(status: Status, body: Body) -> Reply {
        Reply::new(status, JSON, body).with_headers("Cache-Control: no-store\r\n")
    }

    /// The server's plain text reply for an error status (`404 Not Found\n`).
    pub const fn error(status: Status) -> Reply {
        Reply::new(status, TEXT, Body::Static(status.text().as_bytes()))
    }

    /// Accepts a WebSocket upgrade with `token` (the connection's note, given back to
    /// [`Handler::ws_open`], [`Handler::ws_message`] and [`Handler::stream`]). The server
    /// turns it into `101 Switching Protocols`, or 400 when the request is not a valid
    /// handshake (503 when `Config::max_streams` are open): keep per-connection state from
    /// `ws_open` on, not from `handle`, since a refused upgrade gets no `ws_open` or
    /// `ws_close`.
    #[cfg(feature = "ws")]
    pub const fn websocket(token: Token) -> Reply {
        Reply::new(Status::SwitchingProtocols, "", Body::WebSocket { token })
    }

    /// Sets fixed header lines, each ending in CRLF.
    pub const fn with_headers(mut self, lines: &'static str) -> Reply {
        self.headers = lines;
        self
    }

    /// Sets the ETag (quotes included).
    pub const fn with_etag(mut self, etag: &'static str) -> Reply {
        self.etag = Some(etag);
        self
    }

    /// Sets the last modification time (seconds since 1970).
    pub const fn with_last_modified(mut self, unix: u64) -> Reply {
        self.last_modified = Some(unix);
        self
    }

    /// Adds `name: value` formatted now (a `Location` with an id in it, say). When the lines
    /// outgrow [`REPLY_HEADERS`] bytes the server answers 500 instead, and logs why.
    pub fn header(mut self, name: &str, value: impl fmt::Display) -> Reply {
        let mark = self.dynamic.len();
        if write!(self.dynamic, "{name}: {value}\r\n").is_err() {
            self.dynamic.truncate(mark);
            self.overflow = true;
        }
        self
    }
}

/// A handler could not answer: the client gets 500 and the connection lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub &'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What a handler may know about the server when it answers.
#[derive(Debug, Clone, Copy)]
pub struct Context<'c> {
    /// The client's address and port, IPv4 or IPv6 (`None` only if the socket no longer knows
    /// it, e.g. it was reset while the request was read).
    pub peer: Option<IpEndpoint>,
    /// The time the server was polled with.
    pub now: Instant,
    /// Time since the first poll.
    pub uptime: Duration,
    /// The slot answering this request (0..N), e.g. to index per-slot storage.
    pub slot: usize,
    /// Counters since start.
    pub stats: Stats,
    /// Every slot's state as the server sees it.
    pub slots: &'c [SlotInfo],
    /// Streams open now (slots sending a [`Body::Stream`]).
    pub streams: usize,
}

/// Code that answers requests on a route. All methods run inside [`crate::Server::poll`] and
/// must return promptly; they must not allocate.
pub trait Handler {
    /// Answers `req`. `Err` gives the client a 500; the slot serves on.
    fn handle(&mut self, req: &Request<'_>, cx: &Context<'_>) -> Result<Reply, Error>;

    /// Writes a [`Body::Rendered`] body of this handler into `out`, from its first byte: the
    /// server skips what it sent before and stops when `out` is full (`Err(Full)`), so write
    /// everything and return the sink's error. The bytes must be the same each time.
    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        let _ = (token, out);
        Ok(())
    }

    /// False once a rendered body can no longer be rendered the same (its data is gone); the
    /// server then aborts the response rather than send wrong bytes.
    fn still_valid(&self, token: Token) -> bool {
        let _ = token;
        true
    }

    /// Writes what a [`Body::Stream`] has ready after `token` into `out`, whole events only
    /// (what does not fit waits for the next call), moves `token` on past it, and returns the
    /// bytes written. `idle` says nothing was sent for `Config::stream_heartbeat`: write a
    /// keep-alive then (the chat sends an SSE `ping` event).
    fn stream(&self, token: &mut Token, out: &mut [u8], idle: bool) -> usize {
        let _ = (token, out, idle);
        0
    }

    /// A WebSocket this handler accepted ([`Reply::websocket`]) is open: its 101 is queued.
    /// `tx` sends to this connection alone (a greeting, say).
    #[cfg(feature = "ws")]
    fn ws_open(&mut self, token: &mut Token, tx: &mut crate::ws::Sender<'_, '_>) {
        let _ = (token, tx);
    }

    /// A whole message came on a WebSocket of this handler, borrowed from the slot's buffer.
    /// `tx` sends to this connection (it has room for a reply as large as a message); to send
    /// to every connection of the route, keep the message in the handler's own storage and let
    /// [`Handler::stream`] hand it to each (frames written with [`crate::ws::put_message`]).
    /// On a WebSocket, `stream` is asked for more whenever the socket has room, `idle` always
    /// false (the server pings by itself).
    #[cfg(feature = "ws")]
    fn ws_message(
        &mut self,
        token: &mut Token,
        msg: crate::ws::Message<'_>,
        tx: &mut crate::ws::Sender<'_, '_>,
    ) {
        let _ = (token, msg, tx);
    }

    /// A WebSocket of this handler ended: `code` is the close code sent or received
    /// ([`crate::ws::close`]; 1006 when the connection ended without a close frame).
    #[cfg(feature = "ws")]
    fn ws_close(&mut self, token: Token, code: u16) {
        let _ = (token, code);
    }
}

/// How a route matches paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathMatch {
    Exact(&'static str),
    Prefix(&'static str),
}

/// One entry of a [`Router`].
pub struct Route<'a> {
    methods: Methods,
    path: PathMatch,
    max_body: usize,
    handler: &'a mut dyn Handler,
}

impl<'a> Route<'a> {
    /// `handler` answers `methods` on exactly `path` (normalised, e.g. `/api/sensor`).
    pub fn exact(methods: Methods, path: &'static str, handler: &'a mut dyn Handler) -> Self {
        Route {
            methods,
            path: PathMatch::Exact(path),
            max_body: usize::MAX,
            handler,
        }
    }

    /// `handler` answers `methods` on `prefix` and below: `/api` matches `/api` and `/api/x`
    /// (not `/apix`); `/` matches every path.
    pub fn prefix(methods: Methods, prefix: &'static str, handler: &'a mut dyn Handler) -> Self {
        Route {
            methods,
            path: PathMatch::Prefix(prefix),
            max_body: usize::MAX,
            handler,
        }
    }

    /// Bodies over `bytes` get 413 before the handler runs. Without it, the limit is what fits
    /// in the slot's request buffer after the head.
    pub const fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    fn matches_path(&self, path: &str) -> bool {
        match self.path {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                path.starts_with(p)
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
        }
    }
}

/// The outcome of looking a request up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// This route answers; its body limit.
    Route(usize, usize),
    /// The path exists with these methods only (405).
    NotAllowed(Methods),
    /// No route has the path (404).
    Nothing,
}

/// The routes of a server, in the order they are tried. The caller lends the storage.
pub struct Router<'a> {
    routes: ManagedSlice<'a, Route<'a>>,
}

impl<'a> Router<'a> {
    /// A router over `routes`, e.g. `Router::new(&mut routes[..])`.
    pub fn new(routes: impl Into<ManagedSlice<'a, Route<'a>>>) -> Self {
        Router {
            routes: routes.into(),
        }
    }

    /// The first route whose path matches names the resource; routes with the very same path
    /// (say `GET /x` and `POST /x` registered apart) share it, and the first of them that takes
    /// the method answers. Later, wider routes (a `/` catch-all) do not.
    pub(crate) fn find(&self, method: Method, path: &str) -> Found {
        let Some(resource) = self.routes.iter().find(|r| r.matches_path(path)) else {
            return Found::Nothing;
        };
        let mut allow = Methods::NONE;
        for (i, route) in self.routes.iter().enumerate() {
            if route.path == resource.path {
                if route.methods.allows(method) {
                    return Found::Route(i, route.max_body);
                }
                allow |= route.methods;
            }
        }
        Found::NotAllowed(allow)
    }

    /// Every method some route takes, HEAD wherever GET is: the server's `Allow` for
    /// `OPTIONS *`.
    pub(crate) fn methods(&self) -> Methods {
        let all = self.routes.iter().fold(Methods::NONE, |m, r| m | r.methods);
        if all.contains(Methods::GET) {
            all | Methods::HEAD
        } else {
            all
        }
    }

    pub(crate) fn handle(
        &mut self,
        route: usize,
        req: &Request<'_>,
        cx: &Context<'_>,
    ) -> Result<Reply, Error> {
        match self.routes.get_mut(route) {
            Some(r) => r.handler.handle(req, cx),
            None => Err(Error("no such route")),
        }
    }

    pub(crate) fn render(&self, route: usize, token: Token, out: &mut dyn Sink) {
        if let Some(r) = self.routes.get(route) {
            // Full only means the sink is; the rest goes next time.
            let _ = r.handler.render(token, out);
        }
    }

    pub(crate) fn stream(
        &self,
        route: usize,
        token: &mut Token,
        out: &mut [u8],
        idle: bool,
    ) -> usize {
        self.routes
            .get(route)
            .map_or(0, |r| r.handler.stream(token, out, idle).min(out.len()))
    }

    /// The handler of `route`, for the WebSocket callbacks.
    #[cfg(feature = "ws")]
    pub(crate) fn handler(&mut self, route: usize) -> Option<&mut (dyn Handler + 'a)> {
        self.routes.get_mut(route).map(|r| &mut *r.handler)
    }

    pub(crate) fn still_valid(&self, route: usize, token: Token) -> bool {
        self.routes
            .get(route)
            .is_some_and(|r| r.handler.still_valid(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Handler for Nop {
        fn handle(&mut self, _: &Request<'_>, _: &Context<'_>) -> Result<Reply, Error> {
            Ok(Reply::text("x"))
        }
    }

    #[test]
    fn finds_routes_in_order() {
        let (mut a, mut b, mut c, mut d) = (Nop, Nop, Nop, Nop);
        let mut routes = [
            Route::exact(Methods::GET, "/hello", &mut a),
            Route::prefix(Methods::POST, "/api", &mut b).max_body(64),
            Route::prefix(Methods::DELETE, "/api", &mut d),
            Route::prefix(Methods::GET | Methods::HEAD, "/", &mut c),
        ];
        let router = Router::new(&mut routes[..]);
        let found = |m, p| router.find(m, p);
        assert_eq!(found(Method::Get, "/hello"), Found::Route(0, usize::MAX));
        assert_eq!(found(Method::Head, "/hello"), Found::Route(0, usize::MAX));
        assert_eq!(found(Method::Post, "/api/x"), Found::Route(1, 64));
        assert_eq!(found(Method::Delete, "/api/x"), Found::Route(2, usize::MAX));
        assert_eq!(found(Method::Get, "/apix"), Found::Route(3, usize::MAX));
        let api = Methods::POST | Methods::DELETE;
        assert_eq!(found(Method::Put, "/api"), Found::NotAllowed(api));
        assert_eq!(
            found(Method::Post, "/hello"),
            Found::NotAllowed(Methods::GET)
        );
        let mut none: [Route; 0] = [];
        assert_eq!(
            Router::new(&mut none[..]).find(Method::Get, "/"),
            Found::Nothing
        );
    }

    #[test]
    fn header_overflow_is_flagged() {
        let long = "x".repeat(REPLY_HEADERS);
        let r = Reply::text("a").header("Location", "/a");
        assert_eq!(r.dynamic.as_str(), "Location: /a\r\n");
        assert!(!r.overflow);
        let r = r.header("X-Long", &long);
        assert!(r.overflow);
        assert_eq!(r.dynamic.as_str(), "Location: /a\r\n");
    }
}
