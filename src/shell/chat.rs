//! `chat`: the command-line client for smolhttpd's group chat (the lab02 seed's
//! `Client1.py SERVER_IP PORT`).
//!
//! ```text
//! chat 192.168.69.1 80 --name ana        # interactive: shows messages, posts each line typed
//! printf 'hola\nchao\n' | chat 192.168.69.1 80   # posts each line read, then exits
//! chat 192.168.69.1 80 --listen --for 5  # prints the messages there are and arrive in 5 s
//! chat 192.168.69.1 80 --once            # prints all kept messages and exits
//! ```
//!
//! It speaks the chat API of the server (`POST /chat` with a form body, `GET /chat?since=N`
//! answered with JSON, and the `GET /chat/events` Server-Sent Events stream that `--listen`
//! and the interactive mode follow, reopened from the last id when it ends, with polling as
//! the fallback) over a deliberately tiny HTTP/1.1 client: one `TcpStream` per request with
//! `Connection: close`, so the server's idle-connection closing never bites. Replies
//! are read with serde_json. The HTTP client stays hand-written: the retry rule (`post`) must
//! tell a connection closed before any byte of reply from one cut mid-reply, a distinction a
//! general client's errors do not promise.
//!
//! Names and texts come from other people: control characters in them are replaced by U+FFFD
//! before printing, so a message cannot move the cursor or change colours.
//!
//! Exit status: 0 ok, 1 an error (a post failed, the server could not be reached), 2 bad usage.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Connect timeout of each request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read and write timeout of each request: longer than the server's 10 s send deadline, so on
/// a lossy link the server gives up first (with a reset) rather than the client mid-reply.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Times a post is sent when the server provably did not take it (see `post`).
const POST_ATTEMPTS: u32 = 3;
/// Pause before the second attempt of a post; doubled for each further one.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How often new messages are asked for while the event stream cannot be had.
const POLL: Duration = Duration::from_secs(1);
/// How long one read of the event stream waits before the deadline is looked at again.
const STREAM_TICK: Duration = Duration::from_millis(250);
/// Pause before a stream that ended (the server made room for a visitor, say) is opened
/// again from the last id seen, as a browser's EventSource does.
const RECONNECT: Duration = Duration::from_millis(250);
/// Longest wait between retries while the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Limits on what is accepted from the server.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The server's limits (bytes of UTF-8), used to explain a 413.
const MAX_NAME: usize = 32;
const MAX_TEXT: usize = 256;
/// Messages shown when the interactive client starts.
const HISTORY: usize = 10;
/// What to try when the server cannot be reached.
const HINT: &str = "is smolhttpd running? sudo scripts/tap-up.sh && cargo run";

#[derive(Parser, Debug)]
#[command(version, about = "Command-line client for the smolhttpd group chat")]
struct Args {
    /// Server address (IP or host name), e.g. 192.168.69.1
    server: String,
    /// Server TCP port, e.g. 80
    port: u16,
    /// Name shown with your messages [default: $USER, or "anon"]
    #[arg(short, long)]
    name: Option<String>,
    /// Post nothing; print the kept messages, then new ones as they arrive
    #[arg(long, visible_alias = "follow", conflicts_with = "once")]
    listen: bool,
    /// With --listen: stop after SECONDS and exit
    #[arg(long = "for", value_name = "SECONDS", requires = "listen")]
    for_secs: Option<u64>,
    /// Print all kept messages and exit
    #[arg(long)]
    once: bool,
    /// Report each successful post (with its id) on stderr
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let server = Server {
        host: args.server.clone(),
        port: args.port,
    };
    let name = args.name.clone().unwrap_or_else(default_name);
    let ok = if args.once {
        once(&server)
    } else if args.listen {
        listen(&server, args.for_secs.map(Duration::from_secs))
    } else if io::stdin().is_terminal() {
        interactive(&server, &name)
    } else {
        post_lines(&server, &name, io::stdin().lock(), args.verbose)
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn default_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "anon".to_string())
}

// ---------------------------------------------------------------------------------------------
// Modes

/// `--once`: prints every kept message.
fn once(server: &Server) -> bool {
    match fetch(server, 0) {
        Ok(batch) => {
            let mut out = io::stdout().lock();
            for m in &batch.messages {
                let _ = writeln!(out, "{}", format_message(m));
            }
            true
        }
        Err(e) => {
            eprintln!("chat: {e}");
            false
        }
    }
}

/// `--listen [--for SECONDS]`: prints the kept messages, then new ones as they arrive. True
/// when at least one poll succeeded.
fn listen(server: &Server, duration: Option<Duration>) -> bool {
    let deadline = duration.map(|d| Instant::now() + d);
    let mut follower = Follower::new(0);
    follower.follow(server, &mut io::stdout(), deadline);
    follower.ever_ok
}

/// stdin is a terminal: shows the last messages, follows new ones in a background thread, and
/// posts each line typed until end of input (Ctrl-D).
fn interactive(server: &Server, name: &str) -> bool {
    let batch = match fetch(server, 0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chat: {e}");
            return false;
        }
    };
    eprintln!(
        "chat: connected to {} as {}; type a message and press Enter, Ctrl-D to quit",
        server.authority(),
        sanitize(name)
    );
    {
        let mut out = io::stdout().lock();
        let skip = batch.messages.len().saturating_sub(HISTORY);
        if skip > 0 {
            let _ = writeln!(out, "({skip} earlier messages not shown; --once shows all)");
        }
        for m in &batch.messages[skip..] {
            let _ = writeln!(out, "{}", format_message(m));
        }
    }
    let poller = server.clone();
    let mut follower = Follower::new(batch.next);
    thread::spawn(move || follower.follow(&poller, &mut io::stdout(), None));
    for line in lines(io::stdin().lock()) {
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = post(server, name, &line) {
            eprintln!("chat: {e}");
        }
    }
    true
}

/// stdin is not a terminal: posts each non-empty line in order. False if any post failed.
fn post_lines(server: &Server, name: &str, input: impl BufRead, verbose: bool) -> bool {
    let mut ok = true;
    for line in lines(input) {
        if line.trim().is_empty() {
            continue;
        }
        match post(server, name, &line) {
            Ok(id) if verbose => eprintln!("chat: posted message {id}"),
            Ok(_) => {}
            Err(e) => {
                eprintln!("chat: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// The lines of `input` without their `\n` / `\r\n`; bytes that are not UTF-8 become U+FFFD.
/// Stops at end of input or at a read error.
fn lines(input: impl BufRead) -> impl Iterator<Item = String> {
    input.split(b'\n').map_while(Result::ok).map(|mut l| {
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        String::from_utf8_lossy(&l).into_owned()
    })
}

/// Polls for new messages and prints them; reports lost and regained connections once each.
struct Follower {
    since: u64,
    failing: bool,
    backoff: Duration,
    ever_ok: bool,
}

impl Follower {
    fn new(since: u64) -> Follower {
        Follower {
            since,
            failing: false,
            backoff: POLL,
            ever_ok: false,
        }
    }

    /// Asks once for messages after `since`, prints them, and returns how long to wait before
    /// the next step.
    fn step(&mut self, server: &Server, out: &mut impl Write) -> Duration {
        match fetch(server, self.since) {
            Ok(batch) => {
                if self.failing {
                    eprintln!("chat: the server answers again");
                }
                self.failing = false;
                self.ever_ok = true;
                self.backoff = POLL;
                if batch.next < self.since {
                    // Ids never go back: the server was restarted with a fresh chat.
                    eprintln!(
                        "chat: the server was restarted; showing its messages from the start"
                    );
                    self.since = 0;
                    return Duration::ZERO;
                }
                for line in self.lines_for(&batch) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
                POLL
            }
            Err(e) => {
                if self.failing {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                } else {
                    eprintln!("chat: {e} (retrying)");
                    self.failing = true;
                    self.backoff = POLL;
                }
                self.backoff
            }
        }
    }

    /// Follows the chat until `deadline` (None: for ever): the event stream, opened again from
    /// the last id whenever it ends; while it cannot be had (refused, or an older server),
    /// one poll of `/chat` at a time with its delay.
    fn follow(&mut self, server: &Server, out: &mut impl Write, deadline: Option<Instant>) {
        loop {
            let delay = match self.stream(server, out, deadline) {
                Ok(()) => RECONNECT,
                Err(_) => self.step(server, out),
            };
            let now = Instant::now();
            match deadline {
                Some(end) if now >= end => return,
                Some(end) => thread::sleep(delay.min(end - now)),
                None => thread::sleep(delay),
            }
        }
    }

    /// Reads `GET /chat/events?since=N` and prints each message as it arrives, until the
    /// server ends the stream or `deadline`. Err when no stream could be opened.
    fn stream(
        &mut self,
        server: &Server,
        out: &mut impl Write,
        deadline: Option<Instant>,
    ) -> Result<(), NetError> {
        let mut stream = server.connect()?;
        let io = |e: io::Error| NetError::Io(io_reason(&e));
        stream.set_read_timeout(Some(STREAM_TICK)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let request = format!(
            "GET /chat/events?since={} HTTP/1.1\r\nHost: {}\r\nUser-Agent: smolhttpd-chat/{}\r\n\
             Accept: text/event-stream\r\nConnection: close\r\n\r\n",
            self.since,
            server.authority(),
            env!("CARGO_PKG_VERSION")
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut buf = Vec::new();
        let mut events: Option<usize> = None;
        let opened = Instant::now();
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return if events.is_some() {
                        Ok(())
                    } else {
                        Err(NetError::Unanswered)
                    }
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if events.is_none() && opened.elapsed() > IO_TIMEOUT {
                        return Err(NetError::Io("no answer to the stream request".into()));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if events.is_some() { Ok(()) } else { Err(io(e)) },
            }
            let start = match events {
                Some(at) => at,
                None => match parse_head(&buf)? {
                    None if buf.len() > MAX_HEAD => {
                        return Err(NetError::Protocol("head too long".into()))
                    }
                    None => continue,
                    Some(head) if head.status != 200 => {
                        return Err(NetError::Protocol(format!(
                            "stream refused: {}",
                            head.status
                        )))
                    }
                    Some(head) => {
                        if self.failing {
                            eprintln!("chat: the server answers again");
                        }
                        self.failing = false;
                        self.ever_ok = true;
                        head.len
                    }
                },
            };
            let used = self.events(&buf[start..], out);
            buf.drain(..start + used);
            events = Some(0);
            if buf.len() > MAX_BODY {
                return Err(NetError::Protocol("event too long".into()));
            }
        }
    }

    /// Prints the complete events at the start of `data`; returns the bytes they took.
    fn events(&mut self, data: &[u8], out: &mut impl Write) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8_lossy(&data[used..used + end]).into_owned();
            used += end + 2;
            let mut kind = "message";
            let mut payload = "";
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    payload = v;
                }
            }
            match (kind, serde_json::from_str::<Message>(payload)) {
                ("gap", _) => {
                    let _ = writeln!(out, "(older messages were dropped)");
                }
                ("message", Ok(m)) if m.id > self.since => {
                    self.since = m.id;
                    let _ = writeln!(out, "{}", format_message(&m));
                }
                _ => {}
            }
        }
        let _ = out.flush();
        used
    }

    /// The lines to print for `batch` (new messages, and a note when some were missed), and
    /// `since` moved past them.
    fn lines_for(&mut self, batch: &Batch) -> Vec<String> {
        let mut lines = Vec::new();
        let fresh = batch.messages.iter().filter(|m| m.id > self.since);
        for (i, m) in fresh.enumerate() {
            if i == 0 && self.since > 0 && m.id > self.since + 1 {
                lines.push("(older messages were dropped)".to_string());
            }
            lines.push(format_message(m));
        }
        let last = batch.messages.last().map_or(0, |m| m.id);
        self.since = self.since.max(batch.next).max(last);
        lines
    }
}

// ---------------------------------------------------------------------------------------------
// The chat API

/// `{"id":..,"name":"..","text":".."}`, as in `/chat` replies and stream events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Message {
    id: u64,
    #[serde(default)]
    name: String,
    text: String,
}

/// A reply to `GET /chat?since=N`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Batch {
    next: u64,
    messages: Vec<Message>,
}

/// `GET /chat?since=N`.
fn fetch(server: &Server, since: u64) -> Result<Batch, String> {
    let resp = server
        .request("GET", &format!("/chat?since={since}"), None)
        .map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(status_error(&resp));
    }
    let body = std::str::from_utf8(&resp.body).map_err(|_| bad_reply("the JSON is not UTF-8"))?;
    parse_batch(body).map_err(|e| bad_reply(&e))
}

/// `POST /chat`; the id of the new message (0 if the server did not say).
///
/// A post is sent again (up to `POST_ATTEMPTS` times) only when the server cannot have kept it:
/// the connection was never made (timed out), it was closed without a single byte of reply
/// (smolhttpd answers every complete request before it closes), or the reply is 408 (RFC 9110
/// 15.5.9: the request was not received whole; the client may repeat it). Anything else, a
/// read timeout or a reset after the request went out included, is reported and not repeated,
/// so a message is never posted twice.
fn post(server: &Server, name: &str, text: &str) -> Result<u64, String> {
    let form = form_encode(&[("name", name), ("text", text)]);
    let mut attempt = 1;
    let resp = loop {
        let result = server.request("POST", "/chat", Some(&form));
        let unapplied = match &result {
            Ok(resp) => resp.status == 408,
            Err(e) => e.not_received(),
        };
        if !unapplied || attempt == POST_ATTEMPTS {
            break result.map_err(|e| e.to_string())?;
        }
        thread::sleep(RETRY_PAUSE * 2u32.pow(attempt - 1));
        attempt += 1;
    };
    match resp.status {
        200 | 201 => Ok(std::str::from_utf8(&resp.body)
            .ok()
            .and_then(|b| parse_posted_id(b).ok())
            .unwrap_or(0)),
        _ => Err(post_error(&resp, name, text)),
    }
}

fn bad_reply(what: &str) -> String {
    format!("bad reply from the server: {what}")
}

/// Explains a failed post in plain words, deciding by what was sent.
fn post_error(resp: &Response, name: &str, text: &str) -> String {
    match resp.status {
        413 if name.len() > MAX_NAME => format!("name too long (max {MAX_NAME} bytes)"),
        413 if text.len() > MAX_TEXT => format!("message too long (max {MAX_TEXT} bytes)"),
        413 => format!("name or message too long (max {MAX_NAME} / {MAX_TEXT} bytes)"),
        400 if text.trim().is_empty() => "empty message".to_string(),
        400 => format!("the server rejected the message{}", detail(&resp.body)),
        _ => status_error(resp),
    }
}

/// A reply that is not the expected one, as `server replied 415 Unsupported Media Type: ...`.
fn status_error(resp: &Response) -> String {
    let reason = sanitize(resp.reason.trim());
    let sep = if reason.is_empty() { "" } else { " " };
    format!(
        "server replied {}{sep}{reason}{}",
        resp.status,
        detail(&resp.body)
    )
}

/// `": "` and the first line of an error body (short plain text), or nothing.
fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return String::new();
    }
    let mut short: String = line.chars().take(120).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    format!(": {}", sanitize(&short))
}

/// `name: text`, safe to print on a terminal.
fn format_message(m: &Message) -> String {
    format!("{}: {}", sanitize(&m.name), sanitize(&m.text))
}

/// Replaces control characters (C0, DEL, C1: what can drive a terminal) by U+FFFD.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// `application/x-www-form-urlencoded` (the WHATWG serializer: space as `+`).
fn form_encode(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// `{"next":M,"messages":[{"id":..,"name":"..","text":".."},...]}` (unknown fields ignored).
fn parse_batch(body: &str) -> Result<Batch, String> {
    serde_json::from_str(body).map_err(|e| e.to_string())
}

/// `{"id":ID}`.
fn parse_posted_id(body: &str) -> Result<u64, String> {
    #[derive(serde::Deserialize)]
    struct Posted {
        id: u64,
    }
    serde_json::from_str::<Posted>(body)
        .map(|p| p.id)
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1: one request per connection.

#[derive(Debug, Clone)]
struct Server {
    host: String,
    port: u16,
}

/// A reply: status, reason phrase and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: String,
    body: Vec<u8>,
}

#[derive(Debug)]
enum NetError {
    /// The address could not be resolved or reached.
    Connect(String, String),
    /// No connection to the address within `CONNECT_TIMEOUT`.
    ConnectTimedOut(String),
    /// The connection failed after it was made.
    Io(String),
    /// The server closed the connection without a single byte of reply.
    Unanswered,
    /// The server's reply is not HTTP as expected.
    Protocol(String),
}

impl NetError {
    /// True when the server cannot have acted on the request: no connection was made in
    /// time, or it was closed before any reply (a refused connection is final: nobody
    /// listens).
    fn not_received(&self) -> bool {
        match self {
            NetError::ConnectTimedOut(_) | NetError::Unanswered => true,
            NetError::Connect(..) | NetError::Io(_) | NetError::Protocol(_) => false,
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Connect(addr, why) => write!(f, "cannot connect to {addr}: {why} ({HINT})"),
            NetError::ConnectTimedOut(addr) => {
                write!(f, "cannot connect to {addr}: timed out ({HINT})")
            }
            NetError::Io(why) => write!(f, "connection to the server failed: {why}"),
            NetError::Unanswered => {
                write!(
                    f,
                    "bad reply from the server: connection closed without a reply"
                )
            }
            NetError::Protocol(why) => write!(f, "bad reply from the server: {why}"),
        }
    }
}

/// An I/O error in a few words: "Connection refused", "timed out" (without "(os error 111)").
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

impl Server {
    /// `host:port` (`[v6]:port`), for messages and the Host header.
    fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn connect(&self) -> Result<TcpStream, NetError> {
        let fail = |why: String| NetError::Connect(self.authority(), why);
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| fail(io_reason(&e)))?;
        let mut last = fail("no address found".to_string());
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = NetError::ConnectTimedOut(self.authority());
                }
                Err(e) => last = fail(io_reason(&e)),
            }
        }
        Err(last)
    }

    /// Sends one request (`Connection: close`; with a form body when `form` is given) and
    /// reads the whole reply.
    fn request(&self, method: &str, path: &str, form: Option<&str>) -> Result<Response, NetError> {
        let mut stream = self.connect()?;
        let io = |e: io::Error| NetError::Io(io_reason(&e));
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        let request = build_request(method, &self.authority(), path, form);
        stream.write_all(request.as_bytes()).map_err(io)?;
        read_response(stream)
    }
}

fn build_request(method: &str, authority: &str, path: &str, form: Option<&str>) -> String {
    let body_headers = form.map_or(String::new(), |body| {
        format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        )
    });
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: smolhttpd-chat/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n{body_headers}\r\n{}",
        env!("CARGO_PKG_VERSION"),
        form.unwrap_or("")
    )
}

/// The parsed head of a reply.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Bytes up to and including the blank line.
    len: usize,
    status: u16,
    reason: String,
    content_length: Option<usize>,
}

/// Parses a reply head; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, NetError> {
    let bad = |why: String| NetError::Protocol(why);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("malformed head ({e})"))),
    };
    let mut content_length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| bad("bad Content-Length".to_string()))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(bad("conflicting Content-Length headers".to_string()));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("Transfer-Encoding is not supported".to_string()));
        }
    }
    Ok(Some(Head {
        len,
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or("").to_string(),
        content_length,
    }))
}

/// Reads a whole reply: the head, then the body by Content-Length (without one: to the end).
fn read_response(mut r: impl Read) -> Result<Response, NetError> {
    let mut buf = Vec::with_capacity(4096);
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Err(NetError::Protocol("head too long".to_string()));
        }
        if read_some(&mut r, &mut buf)? == 0 {
            return Err(if buf.is_empty() {
                NetError::Unanswered
            } else {
                NetError::Protocol("connection closed in the middle of the head".to_string())
            });
        }
    };
    let mut body = buf.split_off(head.len);
    let no_body = head.status < 200 || head.status == 204 || head.status == 304;
    match head.content_length {
        _ if no_body => body.clear(),
        Some(n) if n > MAX_BODY => return Err(NetError::Protocol("body too long".to_string())),
        Some(n) => {
            while body.len() < n {
                if read_some(&mut r, &mut body)? == 0 {
                    return Err(NetError::Protocol(format!(
                        "connection closed after {} of {n} body bytes",
                        body.len()
                    )));
                }
            }
            body.truncate(n);
        }
        None => {
            while read_some(&mut r, &mut body)? > 0 {
                if body.len() > MAX_BODY {
                    return Err(NetError::Protocol("body too long".to_string()));
                }
            }
        }
    }
    Ok(Response {
        status: head.status,
        reason: head.reason,
        body,
    })
}

/// One `read` appended to `buf`; 0 at end of stream.
fn read_some(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<usize, NetError> {
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NetError::Io(io_reason(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn resp(status: u16, reason: &str, body: &str) -> Response {
        Response {
            status,
            reason: reason.to_string(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn msg(id: u64, name: &str, text: &str) -> Message {
        Message {
            id,
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("name", "ana"), ("text", "hola mundo")]),
            "name=ana&text=hola+mundo"
        );
        assert_eq!(
            form_encode(&[("text", "a+b&c=d%e/f?g#h")]),
            "text=a%2Bb%26c%3Dd%25e%2Ff%3Fg%23h"
        );
        assert_eq!(form_encode(&[("t", "-._*~AZaz09")]), "t=-._*%7EAZaz09");
        assert_eq!(
            form_encode(&[("t", "ñ€😀")]),
            "t=%C3%B1%E2%82%AC%F0%9F%98%80"
        );
        assert_eq!(form_encode(&[("t", "<\"'\n\t>")]), "t=%3C%22%27%0A%09%3E");
        assert_eq!(form_encode(&[("name", ""), ("text", "x")]), "name=&text=x");
    }

    #[test]
    fn json_batch() {
        let b = parse_batch(
            r#"{"next":3,"messages":[{"id":2,"name":"ana","text":"hola"},{"id":3,"name":"bo","text":"chao"}]}"#,
        )
        .unwrap();
        assert_eq!(b.next, 3);
        assert_eq!(
            b.messages,
            vec![msg(2, "ana", "hola"), msg(3, "bo", "chao")]
        );
        let b = parse_batch(" {\"next\" : 0 , \"messages\" : [ ] }\n").unwrap();
        assert_eq!(
            b,
            Batch {
                next: 0,
                messages: vec![]
            }
        );
        // Unknown fields and field order do not matter.
        let b = parse_batch(
            r#"{"messages":[{"text":"t","extra":[1,{"a":null}],"name":"n","id":7}],"v":true,"next":7}"#,
        )
        .unwrap();
        assert_eq!(b.messages, vec![msg(7, "n", "t")]);
        assert_eq!(parse_posted_id("{\"id\":42}\n"), Ok(42));
    }

    #[test]
    fn json_tricky_strings() {
        let body = r#"{"next":9,"messages":[{"id":9,"name":"a\"b\\c,}:{","text":"\u003c/script\u003e \u0026 \/ \n\t\r\" \u00f1 \u2028\u2029 \ud83d\ude00 \uD83D\uDE00"}]}"#;
        let b = parse_batch(body).unwrap();
        let m = &b.messages[0];
        assert_eq!(m.name, "a\"b\\c,}:{");
        assert_eq!(m.text, "</script> & / \n\t\r\" ñ \u{2028}\u{2029} 😀 😀");
        // Raw (unescaped) non-ASCII and the escapes the server does not use pass through.
        let b =
            parse_batch(r#"{"next":1,"messages":[{"id":1,"text":"ñ€😀 \u0000\b\f"}]}"#).unwrap();
        assert_eq!(b.messages, vec![msg(1, "", "ñ€😀 \0\u{8}\u{c}")]);
    }

    #[test]
    fn json_errors() {
        for bad in [
            "",
            "{",
            r#"{"next":1"#,
            r#"{"next":1,}"#,
            r#"{"next":01,"messages":[]}"#,
            r#"{"next":1,"messages":[]} x"#,
            r#"{"next":1}"#,
            r#"{"next":"1","messages":[]}"#,
            r#"{"next":1,"messages":[{"name":"a","text":"b"}]}"#,
            r#"{"next":-1,"messages":[]}"#,
            r#"{"next":1,"messages":[{"id":1,"text":"\x"}]}"#,
        ] {
            assert!(parse_batch(bad).is_err(), "accepted {bad:?}");
        }
        assert!(parse_posted_id(r#"{"id":"7"}"#).is_err());
    }

    #[test]
    fn response_head() {
        let raw = b"HTTP/1.1 201 Created\r\nLocation: /chat?since=5\r\ncontent-length: 8\r\n\r\n{\"id\":5}";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                len: raw.len() - 8,
                status: 201,
                reason: "Created".into(),
                content_length: Some(8),
            }
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Len")
            .unwrap()
            .is_none());
        assert!(parse_head(b"").unwrap().is_none());
        assert!(parse_head(b"HTTX/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    #[test]
    fn whole_responses() {
        let r = read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more"[..]);
        assert_eq!(r.unwrap(), resp(200, "OK", "hello"));
        let r = read_response(
            &b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nempty text\n"[..],
        );
        assert_eq!(r.unwrap(), resp(400, "Bad Request", "empty text\n"));
        // Body cut short, nothing at all, head cut short.
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello"[..]).is_err());
        assert!(read_response(&b""[..]).is_err());
        assert!(read_response(&b"HTTP/1.1 200 OK\r\n"[..]).is_err());
        // A head split over many reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 29\r\n\r\n{\"next\":0,\"messages\":[]}     ";
        let r = read_response(Trickle(raw)).unwrap();
        assert_eq!(
            parse_batch(std::str::from_utf8(&r.body).unwrap())
                .unwrap()
                .next,
            0
        );
    }

    #[test]
    fn requests() {
        assert_eq!(
            build_request("POST", "h:80", "/chat", Some("name=a&text=b")),
            format!(
                "POST /chat HTTP/1.1\r\nHost: h:80\r\nUser-Agent: smolhttpd-chat/{}\r\n\
                 Accept: application/json\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\n\
                 name=a&text=b",
                env!("CARGO_PKG_VERSION")
            )
        );
        let get = build_request("GET", "h:80", "/chat?since=3", None);
        assert!(get.starts_with("GET /chat?since=3 HTTP/1.1\r\n"));
        assert!(get.ends_with("Connection: close\r\n\r\n"));
        assert!(!get.contains("Content-Length"));
        let v6 = Server {
            host: "::1".into(),
            port: 8080,
        };
        assert_eq!(v6.authority(), "[::1]:8080");
    }

    #[test]
    fn post_error_messages() {
        let long_name = "n".repeat(33);
        let long_text = "t".repeat(257);
        let r413 = resp(413, "Payload Too Large", "too large");
        assert_eq!(
            post_error(&r413, &long_name, "hi"),
            "name too long (max 32 bytes)"
        );
        assert_eq!(
            post_error(&r413, "ana", &long_text),
            "message too long (max 256 bytes)"
        );
        // 32 × "ñ" is 64 bytes.
        assert_eq!(
            post_error(&r413, &"ñ".repeat(32), "hi"),
            "name too long (max 32 bytes)"
        );
        assert!(post_error(&r413, "ana", "hi").contains("too long"));
        let r400 = resp(400, "Bad Request", "empty text");
        assert_eq!(post_error(&r400, "ana", ""), "empty message");
        assert_eq!(
            post_error(&r400, "ana", "x"),
            "the server rejected the message: empty text"
        );
        assert_eq!(
            post_error(
                &resp(415, "Unsupported Media Type", "use a form\r\nmore"),
                "a",
                "b"
            ),
            "server replied 415 Unsupported Media Type: use a form"
        );
        assert_eq!(
            post_error(&resp(503, "", ""), "a", "b"),
            "server replied 503"
        );
        // Server text is sanitized too.
        assert_eq!(
            status_error(&resp(500, "Oops\u{1b}", "\u{1b}[31mred")),
            "server replied 500 Oops\u{FFFD}: \u{FFFD}[31mred"
        );
    }

    #[test]
    fn connect_error_message() {
        // Bind then drop to get a port that (almost certainly) refuses.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Server {
            host: "127.0.0.1".into(),
            port,
        };
        let e = server
            .request("GET", "/chat?since=0", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("cannot connect to 127.0.0.1:{port}: Connection refused ({HINT})")
        );
    }

    #[test]
    fn sanitizing() {
        assert_eq!(
            sanitize("a\u{1b}[2Jb\r\n\t\u{7f}\u{9b}c ñ"),
            "a\u{FFFD}[2Jb\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}c ñ"
        );
        assert_eq!(
            format_message(&msg(1, "a\nb", "<b>hi</b>")),
            "a\u{FFFD}b: <b>hi</b>"
        );
    }

    #[test]
    fn stream_events() {
        let mut f = Follower::new(1);
        let mut out = Vec::new();
        let data = b"retry: 2000\n\nevent: gap\ndata: {\"from\":2,\"to\":3}\n\n\
id: 1\ndata: {\"id\":1,\"name\":\"old\",\"text\":\"seen\"}\n\n\
id: 4\ndata: {\"id\":4,\"name\":\"ana\",\"text\":\"hola\"}\n\n: keep-alive\n\nid: 5\nda";
        let used = f.events(data, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(older messages were dropped)\nana: hola\n"
        );
        assert_eq!(f.since, 4);
        // The half event waits for the rest of its bytes.
        assert_eq!(&data[used..], b"id: 5\nda");
    }

    #[test]
    fn following() {
        let mut f = Follower::new(0);
        let batch = Batch {
            next: 5,
            messages: vec![msg(4, "a", "x"), msg(5, "b", "y")],
        };
        // From 0, a first id above 1 is no news: the server keeps only the newest.
        assert_eq!(f.lines_for(&batch), vec!["a: x", "b: y"]);
        assert_eq!(f.since, 5);
        let batch = Batch {
            next: 9,
            messages: vec![msg(8, "a", "z"), msg(9, "b", "w")],
        };
        assert_eq!(
            f.lines_for(&batch),
            vec!["(older messages were dropped)", "a: z", "b: w"]
        );
        assert_eq!(f.since, 9);
        let batch = Batch {
            next: 9,
            messages: vec![],
        };
        assert!(f.lines_for(&batch).is_empty());
        // Already seen messages are not printed twice.
        let batch = Batch {
            next: 10,
            messages: vec![msg(9, "b", "w"), msg(10, "c", "v")],
        };
        assert_eq!(f.lines_for(&batch), vec!["c: v"]);
    }

    /// Reads one whole request (head and Content-Length body) from `s`.
    fn read_request(s: &mut TcpStream) -> String {
        let mut req = Vec::new();
        loop {
            assert!(read_some(s, &mut req).unwrap() > 0, "client closed early");
            let mut h = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Request::new(&mut h);
            if let httparse::Status::Complete(n) = r.parse(&req).unwrap() {
                let len = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| {
                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                    });
                if req.len() >= n + len {
                    return String::from_utf8(req).unwrap();
                }
            }
        }
    }

    /// A loopback server answering one connection per entry of `replies` (`None`: read the
    /// request, then close without a byte of reply), then waiting `linger` for one more
    /// connection that should not come. Returns the server and a handle to the requests it
    /// saw and whether the unwanted extra connection came.
    fn scripted(
        replies: Vec<Option<String>>,
        linger: Duration,
    ) -> (Server, thread::JoinHandle<(Vec<String>, bool)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            for reply in replies {
                let (mut s, _) = listener.accept().unwrap();
                seen.push(read_request(&mut s));
                if let Some(reply) = reply {
                    s.write_all(reply.as_bytes()).unwrap();
                }
            }
            listener.set_nonblocking(true).unwrap();
            let end = Instant::now() + linger;
            let mut extra = false;
            while Instant::now() < end && !extra {
                extra = listener.accept().is_ok();
                thread::sleep(Duration::from_millis(20));
            }
            (seen, extra)
        });
        let server = Server {
            host: "127.0.0.1".into(),
            port,
        };
        (server, handle)
    }

    const CREATED: &str =
        "HTTP/1.1 201 Created\r\nLocation: /chat?since=7\r\nContent-Length: 8\r\n\r\n{\"id\":7}";

    /// A real exchange over loopback with a scripted server thread.
    #[test]
    fn post_and_fetch_over_tcp() {
        let json = r#"{"next":7,"messages":[{"id":7,"name":"a b","text":"1+1"}]}"#;
        let (server, handle) = scripted(
            vec![
                Some(CREATED.to_string()),
                Some(format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                )),
            ],
            Duration::ZERO,
        );
        assert_eq!(post(&server, "a b", "1+1"), Ok(7));
        let batch = fetch(&server, 6).unwrap();
        assert_eq!(batch.messages, vec![msg(7, "a b", "1+1")]);
        let (seen, _) = handle.join().unwrap();
        assert!(
            seen[0].ends_with("\r\n\r\nname=a+b&text=1%2B1"),
            "{}",
            seen[0]
        );
        assert!(seen[1].starts_with("GET /chat?since=6 HTTP/1.1\r\n"));
    }

    /// A post the server provably did not take (closed with no reply, or 408) is sent again,
    /// the same bytes each time, until it is answered.
    #[test]
    fn an_unanswered_post_is_sent_again() {
        let timeout =
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let (server, handle) = scripted(
            vec![None, Some(timeout.to_string()), Some(CREATED.to_string())],
            Duration::from_millis(300),
        );
        assert_eq!(post(&server, "ana", "hola"), Ok(7));
        let (seen, extra) = handle.join().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|r| r == &seen[0]), "{seen:?}");
        assert!(seen[0].ends_with("name=ana&text=hola"), "{}", seen[0]);
        assert!(!extra, "posted a fourth time after a 201");
    }

    /// Never more than POST_ATTEMPTS sends, and then the error is the last one seen.
    #[test]
    fn an_unanswered_post_gives_up_after_its_attempts() {
        let (server, handle) = scripted(
            vec![None; POST_ATTEMPTS as usize],
            Duration::from_millis(1200),
        );
        assert_eq!(
            post(&server, "ana", "hola"),
            Err("bad reply from the server: connection closed without a reply".to_string())
        );
        let (seen, extra) = handle.join().unwrap();
        assert_eq!(seen.len(), POST_ATTEMPTS as usize);
        assert!(!extra, "more than {POST_ATTEMPTS} attempts");
    }

    /// A reply that may mean the message was kept is final: no second post.
    #[test]
    fn a_post_that_may_have_been_kept_is_not_repeated() {
        for (reply, want) in [
            (
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                "server replied 500 Internal Server Error",
            ),
            (
                "HTTP/1.1 201 Cre",
                "bad reply from the server: connection closed in the middle of the head",
            ),
            (
                "HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\n{\"id",
                "bad reply from the server: connection closed after 4 of 8 body bytes",
            ),
        ] {
            let (server, handle) =
                scripted(vec![Some(reply.to_string())], Duration::from_millis(600));
            assert_eq!(post(&server, "ana", "hola"), Err(want.to_string()));
            let (seen, extra) = handle.join().unwrap();
            assert_eq!(seen.len(), 1);
            assert!(!extra, "{reply:?} was followed by a second post");
        }
    }
}
