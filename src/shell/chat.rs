//! `chat`: the command-line client for smolhttpd's group chat (the lab02 seed's
//! `Client1.py SERVER_IP PORT`).
//!
//! ```text
//! chat 192.168.69.1 80 --name ana        # interactive: shows messages, posts each line typed
//! printf 'hola\nchao\n' | chat 192.168.69.1 80   # posts each line read, then exits
//! chat 192.168.69.1 80 --listen --for 5  # prints the messages there are and arrive in 5 s
//! chat 192.168.69.1 80 --once            # prints all kept messages and exits
//! chat 192.168.69.1 80 --ws --name ana   # the same chat over one WebSocket (/chat/ws)
//! ```
//!
//! With `--ws` every mode but `--once` speaks to `GET /chat/ws` instead (tungstenite's client):
//! messages arrive as text frames of their JSON, each line is posted as a
//! `{"name":..,"text":..}` frame on the same connection, and a post the server cannot take
//! comes back as `{"error":..,"status":N}`. A closed socket (the server made room, or
//! restarted) is opened again a second later from the last id seen.
//!
//! It speaks the chat API of the server (`POST /chat` with a form body, `GET /chat?since=N`
//! answered with JSON, and the `GET /chat/events` Server-Sent Events stream that `--listen`
//! and the interactive mode follow, reopened from the last event id when it ends, with polling
//! as the fallback) over a deliberately tiny HTTP/1.1 client: one `TcpStream` per request with
//! `Connection: close`, so the server's idle-connection closing never bites. Replies
//! are read with serde_json. The HTTP client stays hand-written: the retry rule (`post`) must
//! tell a connection closed before any byte of reply from one cut mid-reply, a distinction a
//! general client's errors do not promise.
//!
//! The event stream is read as a browser's `EventSource` reads it (the HTML standard's "event
//! stream interpretation", `EventParser`): lines end in CR, LF or CRLF, `data:` lines are
//! joined, `id:` is sent back as `Last-Event-ID` on the next connection, `retry:` sets the
//! pause before it. A stream that is refused (404, 503, a 200 that is not
//! `text/event-stream`) is left for `/chat` polling for a while (503: its `Retry-After`); one
//! on which nothing at all arrives for twice the server's 15 s heartbeat is taken for dead and
//! opened again. Ids that go back (a message at or below the last one shown, or a `next` below
//! `since`) mean the server was restarted: the client says so and shows its messages from the
//! start.
//!
//! Every request has one deadline for all of it (connect, request, the whole reply; for the
//! stream, up to its head), and `--for` bounds them all, so `--listen --for N` ends within N
//! seconds whatever the server does.
//!
//! Names and texts come from other people: control characters and bidirectional formatting
//! characters in them are replaced by U+FFFD before printing, so a message cannot move the
//! cursor, change colours, or make the rest of a line read backwards.
//!
//! Exit status: 0 ok, 1 an error (a post failed, the server could not be reached), 2 bad usage.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Connect timeout of each request (within its whole deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of a whole request: connect, send, and the whole reply (for the event stream: up
/// to the end of its head). Longer than the server's 10 s send deadline, so on a lossy link the
/// server gives up first (with a reset) rather than the client mid-reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Times a post is sent when the server provably did not take it (see `post`).
const POST_ATTEMPTS: u32 = 3;
/// Pause before the second attempt of a post; doubled for each further one.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How often new messages are asked for while the event stream cannot be had.
const POLL: Duration = Duration::from_secs(1);
/// How long `/chat` is polled instead after the stream was refused (404, a 200 that is not an
/// event stream, a 503 without `Retry-After`) before the stream is tried again.
const STREAM_RETRY: Duration = Duration::from_secs(15);
/// The server sends a heartbeat (`event: ping`, before it a `: keep-alive` comment) after
/// this much silence on a stream.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream on which nothing at all arrives for this long is taken for dead (the server
/// vanished without a FIN or a reset) and opened again.
const STREAM_IDLE: Duration = Duration::from_secs(2 * HEARTBEAT.as_secs());
/// Pause before a stream that ended (the server made room for a visitor, say) is opened
/// again from the last id seen, until the server's `retry:` field sets another.
const RECONNECT: Duration = Duration::from_millis(250);
/// Longest wait a server can ask for (`Retry-After`, `retry:`).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);
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
    /// Speak over one WebSocket (GET /chat/ws) instead of HTTP requests and the event stream
    #[arg(long, conflicts_with = "once")]
    ws: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let server = Server::new(&args.server, args.port);
    let name = args.name.clone().unwrap_or_else(default_name);
    let ok = if args.ws {
        let mode = if args.listen {
            WsMode::Listen
        } else if io::stdin().is_terminal() {
            WsMode::Interactive
        } else {
            WsMode::Lines
        };
        let input = io::BufReader::new(io::stdin());
        ws_chat(
            &server,
            &name,
            mode,
            until(args.for_secs),
            args.verbose,
            input,
        )
    } else if args.once {
        once(&server, &mut io::stdout(), &mut io::stderr())
    } else if args.listen {
        listen(
            &server,
            until(args.for_secs),
            &mut io::stdout(),
            &mut io::stderr(),
        )
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

/// The end of `--for SECONDS` from now; None: no end (none given, or one past what the clock
/// can hold, which no run reaches).
fn until(for_secs: Option<u64>) -> Option<Instant> {
    for_secs.and_then(|s| Instant::now().checked_add(Duration::from_secs(s)))
}

/// The earlier of two optional deadlines (None: no deadline).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn past(end: Option<Instant>) -> bool {
    end.is_some_and(|end| Instant::now() >= end)
}

/// Sleeps `delay`, or until `end` if that comes first.
fn pause(delay: Duration, end: Option<Instant>) {
    let delay = match end {
        Some(end) => delay.min(end.saturating_duration_since(Instant::now())),
        None => delay,
    };
    thread::sleep(delay);
}

// ---------------------------------------------------------------------------------------------
// Modes

/// `--once`: prints every kept message.
fn once(server: &Server, out: &mut impl Write, err: &mut impl Write) -> bool {
    match fetch(server, 0, None) {
        Ok(batch) => {
            for m in &batch.messages {
                let _ = writeln!(out, "{}", format_message(m));
            }
            let _ = out.flush();
            true
        }
        Err(e) => {
            let _ = writeln!(err, "chat: {e}");
            false
        }
    }
}

/// `--listen [--for SECONDS]`: prints the kept messages, then new ones as they arrive, until
/// `end`. True when the server answered at least once.
fn listen(
    server: &Server,
    end: Option<Instant>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> bool {
    let mut follower = Follower::new(0);
    follower.follow(server, out, err, end);
    follower.ever_ok
}

/// stdin is a terminal: shows the last messages, follows new ones in a background thread, and
/// posts each line typed until end of input (Ctrl-D).
fn interactive(server: &Server, name: &str) -> bool {
    let batch = match fetch(server, 0, None) {
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
    thread::spawn(move || follower.follow(&poller, &mut io::stdout(), &mut io::stderr(), None));
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

// ---------------------------------------------------------------------------------------------
// --ws: the chat over one WebSocket.

/// What `--ws` does with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WsMode {
    /// `--listen`: print every message, post nothing.
    Listen,
    /// stdin is a terminal: print every message, post each line typed.
    Interactive,
    /// stdin is not a terminal: post each line, wait until each came back (or was refused),
    /// print nothing but errors.
    Lines,
}

/// How long one read of the socket waits before the client looks at its input again.
const WS_TICK: Duration = Duration::from_millis(100);

/// What came in on the socket: a message, a gap, or the server's refusal of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WsIn {
    Message(Message),
    Gap(u64, u64),
    Refused(String),
}

/// A text frame of `/chat/ws`.
fn parse_ws(text: &str) -> Result<WsIn, String> {
    #[derive(serde::Deserialize)]
    struct Gap {
        from: u64,
        to: u64,
    }
    #[derive(serde::Deserialize)]
    struct Frame {
        gap: Option<Gap>,
        error: Option<String>,
        status: Option<u16>,
    }
    let f: Frame = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(e) = f.error {
        let status = f.status.map(|s| format!(" ({s})")).unwrap_or_default();
        return Ok(WsIn::Refused(format!("{}{status}", sanitize(&e))));
    }
    if let Some(g) = f.gap {
        return Ok(WsIn::Gap(g.from, g.to));
    }
    serde_json::from_str(text)
        .map(WsIn::Message)
        .map_err(|e| e.to_string())
}

/// `--ws`: the chat over `GET /chat/ws` until the input ends (and, for piped lines, every post
/// came back), `end` passes, or the server cannot be reached. True when all went well.
fn ws_chat(
    server: &Server,
    name: &str,
    mode: WsMode,
    end: Option<Instant>,
    verbose: bool,
    input: impl BufRead + Send + 'static,
) -> bool {
    use std::collections::VecDeque;
    use std::sync::mpsc;

    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    if mode != WsMode::Listen {
        thread::spawn(move || {
            for line in lines(input) {
                if !line.trim().is_empty() && lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(lines_tx);
    }
    let mut since = 0;
    let mut shown_restart = false;
    let mut ok = true;
    let mut input_done = mode == WsMode::Listen;
    // Posts sent and not yet back, in order.
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut last_progress = Instant::now();
    let mut connected_once = false;
    loop {
        if past(end) {
            return ok && connected_once;
        }
        let mut ws = match ws_connect(server, since) {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("chat: {e}");
                if !connected_once || mode == WsMode::Lines {
                    return false;
                }
                pause(Duration::from_secs(1), end);
                continue;
            }
        };
        if !connected_once && mode == WsMode::Interactive {
            eprintln!(
                "chat: connected to {} over WebSocket as {}; type a message and press Enter, Ctrl-D to quit",
                server.authority(),
                sanitize(name)
            );
        }
        connected_once = true;
        let closed = loop {
            if past(end) {
                let _ = ws.close(None);
                let _ = ws.flush();
                return ok;
            }
            loop {
                match lines_rx.try_recv() {
                    Ok(line) => {
                        let body = serde_json::json!({ "name": name, "text": line }).to_string();
                        if let Err(e) = ws.send(tungstenite::Message::text(body)) {
                            eprintln!("chat: could not send: {e}");
                            ok = false;
                        } else {
                            pending.push_back(line);
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        input_done = true;
                        break;
                    }
                }
            }
            if input_done && mode != WsMode::Listen && pending.is_empty() {
                let _ = ws.close(None);
                let _ = ws.flush();
                return ok;
            }
            if !pending.is_empty() && last_progress.elapsed() > REQUEST_TIMEOUT {
                eprintln!(
                    "chat: {} posts not answered in {} s",
                    pending.len(),
                    REQUEST_TIMEOUT.as_secs()
                );
                return false;
            }
            if pending.is_empty() {
                last_progress = Instant::now();
            }
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => match parse_ws(t.as_str()) {
                    Ok(WsIn::Message(m)) => {
                        if m.id <= since && since > 0 && !shown_restart {
                            eprintln!("chat: the server was restarted; showing its messages from the start");
                            shown_restart = true;
                        }
                        since = m.id;
                        let mine = m.name == name && pending.front() == Some(&m.text);
                        if mine {
                            pending.pop_front();
                            last_progress = Instant::now();
                            if verbose {
                                eprintln!("chat: posted message {}", m.id);
                            }
                        }
                        if mode != WsMode::Lines {
                            println!("{}", format_message(&m));
                        }
                    }
                    Ok(WsIn::Gap(from, to)) => {
                        if mode != WsMode::Lines {
                            println!("(messages {from} to {to} were dropped)");
                        }
                    }
                    Ok(WsIn::Refused(why)) => {
                        eprintln!("chat: the server refused the message: {why}");
                        pending.pop_front();
                        last_progress = Instant::now();
                        ok = false;
                    }
                    Err(e) => eprintln!("chat: {}", bad_reply(&e)),
                },
                Ok(tungstenite::Message::Close(frame)) => {
                    break frame.map(|f| u16::from(f.code));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    break None;
                }
                Err(e) => {
                    eprintln!("chat: WebSocket: {e}");
                    break None;
                }
            }
        };
        // Answer the close, then open again from the last id.
        let _ = ws.flush();
        if !pending.is_empty() {
            eprintln!(
                "chat: the connection closed{} with {} posts not answered",
                closed.map(|c| format!(" ({c})")).unwrap_or_default(),
                pending.len()
            );
            pending.clear();
            ok = false;
        }
        if input_done && mode != WsMode::Listen {
            return ok;
        }
        pause(Duration::from_secs(1), end);
    }
}

/// Opens `/chat/ws?since=N`: connect and handshake within the request deadline, then reads wait
/// at most [`WS_TICK`].
fn ws_connect(server: &Server, since: u64) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    let addr = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", server.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", server.host))?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| {
        format!(
            "cannot connect to {}: {} ({HINT})",
            server.authority(),
            io_reason(&e)
        )
    })?;
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let url = format!("ws://{}/chat/ws?since={since}", server.authority());
    let (ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
            format!("{url}: the server answered {}", resp.status())
        }
        e => format!("{url}: {e}"),
    })?;
    let _ = ws.get_ref().set_read_timeout(Some(WS_TICK));
    Ok(ws)
}

/// How a try at the event stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// The stream was had and is over: the server closed it, it went silent for too long, it
    /// broke, or the deadline came. It is opened again after the reconnection delay.
    Ended,
    /// The server answered, but not with a stream: poll for this long before trying again.
    Refused(Duration),
    /// No answer to the stream request (the server cannot be reached, say).
    Failed,
}

/// Follows the chat (the event stream, or polls of `/chat` while it cannot be had) and prints
/// new messages; reports lost and regained connections once each.
struct Follower {
    /// The id of the last message shown (or the `next` of the last poll).
    since: u64,
    /// The event stream's reader; its last event id and reconnection time outlive a
    /// connection.
    parser: EventParser,
    failing: bool,
    backoff: Duration,
    ever_ok: bool,
    /// The stream was refused: `/chat` is polled instead until then.
    stream_after: Option<Instant>,
    /// How long a stream may stay silent before it is taken for dead (`STREAM_IDLE`).
    idle: Duration,
}

impl Follower {
    fn new(since: u64) -> Follower {
        let mut parser = EventParser::default();
        if since > 0 {
            parser.last_event_id = since.to_string();
        }
        Follower {
            since,
            parser,
            failing: false,
            backoff: POLL,
            ever_ok: false,
            stream_after: None,
            idle: STREAM_IDLE,
        }
    }

    /// The server answered: says so if it had not before.
    fn answered(&mut self, err: &mut impl Write) {
        if self.failing {
            let _ = writeln!(err, "chat: the server answers again");
        }
        self.failing = false;
        self.ever_ok = true;
        self.backoff = POLL;
    }

    /// Ids went back: the server was restarted with a fresh chat, shown from its start.
    fn restarted(&mut self, err: &mut impl Write) {
        let _ = writeln!(
            err,
            "chat: the server was restarted; showing its messages from the start"
        );
        self.since = 0;
    }

    /// Asks once for messages after `since`, prints them, and returns how long to wait before
    /// the next step.
    fn step(
        &mut self,
        server: &Server,
        out: &mut impl Write,
        err: &mut impl Write,
        end: Option<Instant>,
    ) -> Duration {
        if past(end) {
            return Duration::ZERO;
        }
        match fetch(server, self.since, end) {
            Ok(batch) => {
                self.answered(err);
                if batch.next < self.since {
                    // Ids never go back: the server was restarted with a fresh chat.
                    self.restarted(err);
                    self.parser.last_event_id.clear();
                    return Duration::ZERO;
                }
                for line in self.lines_for(&batch) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
                // The stream, when it is back, resumes where polling got to.
                self.parser.last_event_id = self.since.to_string();
                POLL
            }
            // Cut by the end of `--for`: nothing to report.
            Err(_) if past(end) => Duration::ZERO,
            Err(e) => {
                if self.failing {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                } else {
                    let _ = writeln!(err, "chat: {e} (retrying)");
                    self.failing = true;
                    self.backoff = POLL;
                }
                self.backoff
            }
        }
    }

    /// Follows the chat until `end` (None: for ever): the event stream, opened again from the
    /// last event id whenever it ends; while it cannot be had (refused, or an older server),
    /// one poll of `/chat` at a time with its delay.
    fn follow(
        &mut self,
        server: &Server,
        out: &mut impl Write,
        err: &mut impl Write,
        end: Option<Instant>,
    ) {
        while !past(end) {
            let delay = if self.stream_after.is_some_and(|t| Instant::now() < t) {
                self.step(server, out, err, end)
            } else {
                match self.stream(server, out, err, end) {
                    StreamEnd::Ended => self.parser.reconnection_time(),
                    StreamEnd::Refused(wait) => {
                        self.stream_after = Instant::now().checked_add(wait);
                        self.step(server, out, err, end)
                    }
                    StreamEnd::Failed => self.step(server, out, err, end),
                }
            };
            pause(delay, end);
        }
    }

    /// Reads `GET /chat/events` (from `Last-Event-ID`, else `?since=`) and prints each message
    /// as it arrives, until the stream ends, nothing arrives for `idle`, or `end`.
    fn stream(
        &mut self,
        server: &Server,
        out: &mut impl Write,
        err: &mut impl Write,
        end: Option<Instant>,
    ) -> StreamEnd {
        let mut conn = match server.open(end) {
            Ok(conn) => conn,
            Err(_) => return StreamEnd::Failed,
        };
        let mut request = format!(
            "GET /chat/events?since={} HTTP/1.1\r\nHost: {}\r\nUser-Agent: smolhttpd-chat/{}\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n",
            self.since,
            server.authority(),
            env!("CARGO_PKG_VERSION")
        );
        if !self.parser.last_event_id.is_empty() {
            request.push_str(&format!("Last-Event-ID: {}\r\n", self.parser.last_event_id));
        }
        request.push_str("Connection: close\r\n\r\n");
        let mut buf = Vec::new();
        let head = match conn
            .write_all(request.as_bytes())
            .map_err(|e| NetError::Io(io_reason(&e)))
            .and_then(|()| read_head(&mut conn, &mut buf))
        {
            Ok(head) => head,
            Err(_) => return StreamEnd::Failed,
        };
        if head.status != 200 || !head.is_event_stream() {
            return StreamEnd::Refused(match head.status {
                503 => head.retry_after.unwrap_or(STREAM_RETRY),
                _ => STREAM_RETRY,
            });
        }
        self.answered(err);
        self.parser.reconnected();
        loop {
            if self.feed(&buf, out, err).is_err() {
                // An endless line or event: the stream is of no use for now.
                return StreamEnd::Refused(STREAM_RETRY);
            }
            buf.clear();
            conn.by = earliest(Instant::now().checked_add(self.idle), end);
            match read_some(&mut conn, &mut buf) {
                Ok(n) if n > 0 => {}
                // Closed, silent for `idle`, cut at `end`, or broken.
                _ => return StreamEnd::Ended,
            }
        }
    }

    /// Reads the next bytes of the event stream and prints the messages they complete.
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<(), NetError> {
        let events = self.parser.feed(bytes)?;
        for event in events {
            self.dispatch(&event, out, err);
        }
        let _ = out.flush();
        Ok(())
    }

    /// Prints one event: a message, or a note that some were dropped. Heartbeats (`ping`) and
    /// events of other types are ignored.
    fn dispatch(&mut self, event: &Event, out: &mut impl Write, err: &mut impl Write) {
        match event.kind.as_str() {
            "message" => {
                let Ok(m) = serde_json::from_str::<Message>(&event.data) else {
                    return;
                };
                if self.since > 0 && m.id <= self.since {
                    // The stream never repeats an id: the server was restarted and resumed
                    // from its oldest message.
                    self.restarted(err);
                }
                self.since = m.id;
                let _ = writeln!(out, "{}", format_message(&m));
            }
            "gap" => {
                let _ = writeln!(out, "(older messages were dropped)");
            }
            _ => {}
        }
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
// Server-Sent Events

/// One dispatched event: its type (`message` when none was named) and its data lines joined
/// with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    kind: String,
    data: String,
}

/// The HTML standard's event stream interpretation (HTML 9.2.6), as browsers do it, fed the
/// bytes of a stream as they arrive: lines end in CR, LF or CRLF; a line `field:value` (one
/// space after the colon is dropped; a line without a colon is a field with an empty value);
/// `data` lines are joined with `\n`; `event` names the type; `id` (without NUL) sets the last
/// event id; `retry` (digits only) the reconnection time; lines starting with `:` are
/// comments; a blank line dispatches the event, unless it has no data. A leading BOM is
/// skipped; other fields are ignored.
#[derive(Debug, Default)]
struct EventParser {
    /// Bytes of the line not ended yet.
    line: Vec<u8>,
    /// The last byte was a CR: a LF right after it ends no other line.
    after_cr: bool,
    /// A line has ended on this connection (only the first may start with a BOM).
    started: bool,
    data: String,
    event: String,
    /// The `id` of the event being read (the standard's "last event ID buffer").
    id: String,
    /// The id of the last event dispatched: `Last-Event-ID` on the next connection.
    last_event_id: String,
    /// The reconnection time in ms, once a `retry` field set it.
    retry: Option<u64>,
}

impl EventParser {
    /// A new connection: what was half read on the last one is dropped (an event cut by the end
    /// of a stream is not dispatched); the last event id and reconnection time stay.
    fn reconnected(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.started = false;
        self.data.clear();
        self.event.clear();
        self.id.clear();
    }

    /// The pause before the stream is opened again: the server's `retry` (at most
    /// `MAX_SERVER_WAIT`), else `RECONNECT`.
    fn reconnection_time(&self) -> Duration {
        self.retry.map_or(RECONNECT, |ms| {
            Duration::from_millis(ms).min(MAX_SERVER_WAIT)
        })
    }

    /// Takes the next bytes of the stream; returns the events they complete. Err when a line
    /// or an event's data grows past `MAX_BODY`.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, NetError> {
        let mut events = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.process(&line, &mut events);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                    if self.line.len() + self.data.len() > MAX_BODY {
                        return Err(NetError::Protocol("event too long".to_string()));
                    }
                }
            }
        }
        Ok(events)
    }

    /// One whole line.
    fn process(&mut self, line: &[u8], events: &mut Vec<Event>) {
        let line = if self.started {
            line
        } else {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        };
        self.started = true;
        // Line ends are ASCII, so a line holds whole UTF-8 sequences (or bad bytes: U+FFFD).
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }

    /// A blank line: the event read so far is complete.
    fn dispatch(&mut self, events: &mut Vec<Event>) {
        self.last_event_id.clone_from(&self.id);
        if self.data.is_empty() {
            self.event.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let kind = if self.event.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event)
        };
        events.push(Event {
            kind,
            data: std::mem::take(&mut self.data),
        });
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

/// `GET /chat?since=N`, given up at `end` if the request's own deadline has not come first.
fn fetch(server: &Server, since: u64, end: Option<Instant>) -> Result<Batch, String> {
    let resp = server
        .request("GET", &format!("/chat?since={since}"), None, end)
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
/// 15.5.9: the request was not received whole; the client may repeat it) or 503 (15.6.4: the
/// server could not handle it now; after its `Retry-After`, at most `MAX_SERVER_WAIT`).
/// Anything else, a read timeout or a reset after the request went out included, is reported
/// and not repeated, so a message is never posted twice.
fn post(server: &Server, name: &str, text: &str) -> Result<u64, String> {
    let form = form_encode(&[("name", name), ("text", text)]);
    let mut attempt = 1;
    let resp = loop {
        let result = server.request("POST", "/chat", Some(&form), None);
        let (unapplied, wait) = match &result {
            Ok(resp) => (matches!(resp.status, 408 | 503), resp.retry_after),
            Err(e) => (e.not_received(), None),
        };
        if !unapplied || attempt == POST_ATTEMPTS {
            break result.map_err(|e| e.to_string())?;
        }
        thread::sleep(wait.unwrap_or(RETRY_PAUSE * 2u32.pow(attempt - 1)));
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

/// Replaces by U+FFFD the characters that can drive a terminal (control characters: C0, DEL,
/// C1) or reorder what follows them on the line (the bidirectional formatting characters,
/// Unicode's Bidi_Control: ALM, LRM, RLM, the embeddings and overrides U+202A-U+202E and the
/// isolates U+2066-U+2069).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if unsafe_to_print(c) { '\u{FFFD}' } else { c })
        .collect()
}

fn unsafe_to_print(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
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
    /// The deadline of one whole request (`REQUEST_TIMEOUT`).
    timeout: Duration,
}

/// A reply: status, reason phrase, `Retry-After` and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: String,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

#[derive(Debug)]
enum NetError {
    /// The address could not be resolved or reached.
    Connect(String, String),
    /// No connection to the address within `CONNECT_TIMEOUT` (or the request's deadline).
    ConnectTimedOut(String),
    /// The connection failed after it was made (its deadline passed, say).
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

/// A connection with one deadline for all that is done on it: each read and write waits at
/// most until `by` (None: no deadline), then fails with `TimedOut`. A socket timeout that fires
/// a hair before `by` is waited out again, so a `Conn` fails at `by` and not before (the caller
/// tells a request cut by the end of `--for` from a failure by the clock).
struct Conn {
    stream: TcpStream,
    by: Option<Instant>,
}

impl Conn {
    /// The time left before `by`; Err once it has come.
    fn left(&self) -> io::Result<Option<Duration>> {
        let Some(by) = self.by else {
            return Ok(None);
        };
        match by.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// A socket timeout (`SO_RCVTIMEO` reports EAGAIN).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            self.stream.set_read_timeout(left)?;
            match self.stream.read(buf) {
                Err(e) if timed_out(&e) && left.is_some() => continue,
                r => return r,
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            self.stream.set_write_timeout(left)?;
            match self.stream.write(buf) {
                Err(e) if timed_out(&e) && left.is_some() => continue,
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Server {
    fn new(host: &str, port: u16) -> Server {
        Server {
            host: host.to_string(),
            port,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// `host:port` (`[v6]:port`), for messages and the Host header.
    fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A connection whose deadline is the request's (`timeout` from now), or `end` if sooner.
    fn open(&self, end: Option<Instant>) -> Result<Conn, NetError> {
        let by = earliest(Instant::now().checked_add(self.timeout), end);
        let stream = self.connect(by)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, by })
    }

    fn connect(&self, by: Option<Instant>) -> Result<TcpStream, NetError> {
        let fail = |why: String| NetError::Connect(self.authority(), why);
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| fail(io_reason(&e)))?;
        let mut last = fail("no address found".to_string());
        for addr in addrs {
            let wait = match by {
                Some(by) => by
                    .saturating_duration_since(Instant::now())
                    .min(CONNECT_TIMEOUT),
                None => CONNECT_TIMEOUT,
            };
            if wait.is_zero() {
                last = NetError::ConnectTimedOut(self.authority());
                break;
            }
            match TcpStream::connect_timeout(&addr, wait) {
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
    /// reads the whole reply, all within `timeout` (and by `end`).
    fn request(
        &self,
        method: &str,
        path: &str,
        form: Option<&str>,
        end: Option<Instant>,
    ) -> Result<Response, NetError> {
        let mut conn = self.open(end)?;
        let request = build_request(method, &self.authority(), path, form);
        conn.write_all(request.as_bytes())
            .map_err(|e| NetError::Io(io_reason(&e)))?;
        read_response(conn)
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
    /// The media type, lower case, without parameters ("" when none was given).
    content_type: String,
    /// `Retry-After` in seconds, at most `MAX_SERVER_WAIT` (an HTTP date is not read).
    retry_after: Option<Duration>,
}

impl Head {
    /// An interim reply (100 Continue, 102, 103 Early Hints): the final one follows. 101
    /// Switching Protocols is final (and never asked for).
    fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    fn is_event_stream(&self) -> bool {
        self.content_type == "text/event-stream"
    }
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
    let mut content_type = String::new();
    let mut retry_after = None;
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
        } else if h.name.eq_ignore_ascii_case("content-type") {
            let value = String::from_utf8_lossy(h.value);
            let media = value.split(';').next().unwrap_or("");
            content_type = media.trim().to_ascii_lowercase();
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(h.value);
        }
    }
    Ok(Some(Head {
        len,
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or("").to_string(),
        content_length,
        content_type,
        retry_after,
    }))
}

/// `Retry-After: SECONDS`, at most `MAX_SERVER_WAIT`; None for anything else (an HTTP date).
fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = value.parse().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_SERVER_WAIT))
}

/// Reads up to the end of the final head, skipping interim (1xx) replies; leaves in `buf` the
/// bytes that came after it.
fn read_head(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<Head, NetError> {
    let mut skipped = 0;
    loop {
        if let Some(head) = parse_head(buf)? {
            buf.drain(..head.len);
            if !head.is_interim() {
                return Ok(head);
            }
            skipped += head.len;
            continue;
        }
        if skipped + buf.len() > MAX_HEAD {
            return Err(NetError::Protocol("head too long".to_string()));
        }
        if read_some(r, buf)? == 0 {
            return Err(if buf.is_empty() && skipped == 0 {
                NetError::Unanswered
            } else if buf.is_empty() {
                NetError::Protocol("connection closed after an interim reply".to_string())
            } else {
                NetError::Protocol("connection closed in the middle of the head".to_string())
            });
        }
    }
}

/// Reads a whole reply: the head (after any interim ones), then the body by Content-Length
/// (without one: to the end).
fn read_response(mut r: impl Read) -> Result<Response, NetError> {
    let mut body = Vec::with_capacity(4096);
    let head = read_head(&mut r, &mut body)?;
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
        retry_after: head.retry_after,
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
    use std::sync::{Arc, Mutex};

    /// A `/chat/ws` of tungstenite's server side: answers the first post with an error frame,
    /// each later one with the message it makes (id counting from 7), after a backlog message
    /// and a gap; returns the request path and what it received.
    fn fake_ws(listener: TcpListener) -> thread::JoinHandle<(String, Vec<String>)> {
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let path = Arc::new(Mutex::new(String::new()));
            let seen = path.clone();
            let cb = move |req: &tungstenite::handshake::server::Request,
                           resp: tungstenite::handshake::server::Response| {
                *seen.lock().unwrap() = req.uri().to_string();
                Ok(resp)
            };
            let mut ws = tungstenite::accept_hdr(stream, cb).unwrap();
            let send = |ws: &mut tungstenite::WebSocket<TcpStream>, s: &str| {
                ws.send(tungstenite::Message::text(s)).unwrap();
            };
            send(&mut ws, r#"{"id":5,"name":"old","text":"backlog"}"#);
            send(&mut ws, r#"{"gap":{"from":1,"to":4}}"#);
            let mut got = Vec::new();
            let mut id = 7;
            loop {
                match ws.read() {
                    Ok(tungstenite::Message::Text(t)) => {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                        got.push(t.as_str().to_owned());
                        if got.len() == 1 {
                            send(&mut ws, r#"{"error":"name or text too long","status":413}"#);
                        } else {
                            let m =
                                serde_json::json!({"id": id, "name": v["name"], "text": v["text"]});
                            send(&mut ws, &m.to_string());
                            id += 1;
                        }
                    }
                    Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let p = path.lock().unwrap().clone();
            (p, got)
        })
    }

    #[test]
    fn ws_posts_each_line_as_json_and_waits_for_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server_thread = fake_ws(listener);
        let server = Server::new("127.0.0.1", port);
        let input = io::Cursor::new(&b"too long\nhola \"ws\"\n\nchao\n"[..]);
        let ok = ws_chat(&server, "ana", WsMode::Lines, until(Some(10)), false, input);
        // The refused first post makes the run fail; the others came back.
        assert!(!ok);
        let (path, got) = server_thread.join().unwrap();
        assert_eq!(path, "/chat/ws?since=0");
        assert_eq!(
            got,
            [
                r#"{"name":"ana","text":"too long"}"#,
                r#"{"name":"ana","text":"hola \"ws\""}"#,
                r#"{"name":"ana","text":"chao"}"#,
            ]
        );
    }

    #[test]
    fn ws_frames_parse() {
        assert_eq!(
            parse_ws(r#"{"id":3,"name":"a","text":"b"}"#),
            Ok(WsIn::Message(Message {
                id: 3,
                name: "a".into(),
                text: "b".into()
            }))
        );
        assert_eq!(
            parse_ws(r#"{"gap":{"from":1,"to":2}}"#),
            Ok(WsIn::Gap(1, 2))
        );
        assert_eq!(
            parse_ws(r#"{"error":"bad\u001b[2J","status":400}"#),
            Ok(WsIn::Refused("bad\u{FFFD}[2J (400)".into()))
        );
        assert!(parse_ws("nope").is_err());
    }

    fn resp(status: u16, reason: &str, body: &str) -> Response {
        Response {
            status,
            reason: reason.to_string(),
            retry_after: None,
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
                content_type: String::new(),
                retry_after: None,
            }
        );
        let head = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: Text/Event-Stream ; charset=utf-8\r\n\
              Retry-After: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.content_type, "text/event-stream");
        assert!(head.is_event_stream());
        assert_eq!(head.retry_after, Some(Duration::from_secs(5)));
        assert!(!head.is_interim());
        let head = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.is_interim());
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
        // Interim replies come before the final one; a lone one is no answer.
        let r = read_response(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
               HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"[..],
        );
        assert_eq!(r.unwrap(), resp(201, "Created", "ok"));
        assert_eq!(
            read_response(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
                .unwrap_err()
                .to_string(),
            "bad reply from the server: connection closed after an interim reply"
        );
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
        let v6 = Server::new("::1", 8080);
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
        let server = Server::new("127.0.0.1", port);
        let e = server
            .request("GET", "/chat?since=0", None, None)
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
        // Bidirectional formatting characters, all of Unicode's Bidi_Control.
        assert_eq!(
            sanitize(
                "a\u{202E}b\u{202A}\u{202B}\u{202C}\u{202D}\u{2066}\u{2067}\u{2068}\u{2069}\
                 \u{200E}\u{200F}\u{061C}c"
            ),
            format!("a\u{FFFD}b{}c", "\u{FFFD}".repeat(11))
        );
        // Letters of right-to-left scripts and joiners are text, not controls.
        assert_eq!(sanitize("שלום مرحبا a\u{200D}b"), "שלום مرحبا a\u{200D}b");
    }

    #[test]
    fn stream_events() {
        let mut f = Follower::new(1);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let data = b"retry: 2000\n\nevent: gap\ndata: {\"from\":2,\"to\":3}\n\n\
id: 4\ndata: {\"id\":4,\"name\":\"ana\",\"text\":\"hola\"}\n\n: keep-alive\n\n\
event: ping\ndata: {}\n\nid: 5\nda";
        f.feed(data, &mut out, &mut err).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "(older messages were dropped)\nana: hola\n"
        );
        assert_eq!(f.since, 4);
        assert_eq!(f.parser.last_event_id, "4");
        assert_eq!(f.parser.reconnection_time(), Duration::from_secs(2));
        // The half event waits for the rest of its bytes.
        f.feed(
            b"ta: {\"id\":5,\"name\":\"bo\",\"text\":\"chao\"}\n\n",
            &mut out,
            &mut err,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(older messages were dropped)\nana: hola\nbo: chao\n"
        );
        assert_eq!((f.since, f.parser.last_event_id.as_str()), (5, "5"));
        assert!(err.is_empty());
    }

    /// Events from `chunks` fed one after another to a fresh parser.
    fn parse_events(chunks: &[&[u8]]) -> (Vec<Event>, EventParser) {
        let mut p = EventParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(p.feed(chunk).unwrap());
        }
        (events, p)
    }

    fn ev(kind: &str, data: &str) -> Event {
        Event {
            kind: kind.to_string(),
            data: data.to_string(),
        }
    }

    /// The HTML standard's examples and rules, line by line.
    #[test]
    fn event_stream_interpretation() {
        // Several data lines are one event, joined with LF.
        let (e, _) = parse_events(&[b"data: YHOO\ndata: +2\ndata: 10\n\n"]);
        assert_eq!(e, vec![ev("message", "YHOO\n+2\n10")]);
        // An empty data line is data; a blank line with no data dispatches nothing; an event
        // cut by the end of the stream is not dispatched.
        let (e, _) = parse_events(&[b"data\n\ndata\ndata\n\n\n\ndata:"]);
        assert_eq!(e, vec![ev("message", ""), ev("message", "\n")]);
        // One space after the colon goes, no more; no space is fine too.
        let (e, _) = parse_events(&[b"data:test\n\ndata: test\n\ndata:  two\n\n"]);
        assert_eq!(
            e,
            vec![
                ev("message", "test"),
                ev("message", "test"),
                ev("message", " two")
            ]
        );
        // CR, LF and CRLF all end lines, CRLF split over two reads included; a BOM is skipped.
        let (e, p) = parse_events(&[
            b"\xEF\xBB\xBFid: 1\r\nevent: gap\rdata: a\r",
            b"\ndata: b\r\n\r\nid: 2\rdata:c\r\r",
        ]);
        assert_eq!(e, vec![ev("gap", "a\nb"), ev("message", "c")]);
        assert_eq!(p.last_event_id, "2");
        // Comments and unknown fields are ignored; the type is per event.
        let (e, _) = parse_events(&[b": hi\nfoo: bar\nevent: ping\ndata: {}\n\ndata: x\n\n"]);
        assert_eq!(e, vec![ev("ping", "{}"), ev("message", "x")]);
        // An id without data still sets the last event id; an id with NUL does not; an
        // empty id empties it.
        let (e, p) = parse_events(&[b"id: 7\n\nid: 8\0\n\n"]);
        assert!(e.is_empty());
        assert_eq!(p.last_event_id, "7");
        let (_, p) = parse_events(&[b"id: 7\n\nid\n\n"]);
        assert_eq!(p.last_event_id, "");
        // retry takes digits only, and is bounded when used.
        let (_, p) = parse_events(&[b"retry: 1500\nretry: 2s\nretry: -1\nretry:\n\n"]);
        assert_eq!(p.reconnection_time(), Duration::from_millis(1500));
        let (_, p) = parse_events(&[b"retry: 99999999999999999999999\n"]);
        assert_eq!(p.reconnection_time(), MAX_SERVER_WAIT);
        assert_eq!(EventParser::default().reconnection_time(), RECONNECT);
        // A line that never ends is refused, not kept for ever.
        let mut p = EventParser::default();
        let long = vec![b'x'; 64 * 1024];
        let fed: Result<Vec<()>, _> = (0..MAX_BODY / long.len() + 1)
            .map(|_| p.feed(&long).map(drop))
            .collect();
        assert!(fed.is_err());
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after(b"5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(b" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(b"3600"), Some(MAX_SERVER_WAIT));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999"),
            Some(MAX_SERVER_WAIT)
        );
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(b"-1"), None);
        assert_eq!(parse_retry_after(b""), None);
    }

    #[test]
    fn far_deadlines() {
        assert!(until(None).is_none());
        assert!(until(Some(u64::MAX)).is_none());
        let soon = until(Some(0)).unwrap();
        assert!(soon <= Instant::now());
        assert_eq!(earliest(None, Some(soon)), Some(soon));
        assert_eq!(earliest(Some(soon), None), Some(soon));
        assert_eq!(earliest(None, None), None);
        let later = soon + Duration::from_secs(1);
        assert_eq!(earliest(Some(later), Some(soon)), Some(soon));
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
        try_read_request(s).expect("client closed early")
    }

    /// Reads one whole request; None if the client closed or broke the connection first.
    fn try_read_request(s: &mut TcpStream) -> Option<String> {
        let mut req = Vec::new();
        loop {
            if read_some(s, &mut req).ok()? == 0 {
                return None;
            }
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
                    return String::from_utf8(req).ok();
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
        (Server::new("127.0.0.1", port), handle)
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
        let batch = fetch(&server, 6, None).unwrap();
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

    // -----------------------------------------------------------------------------------------
    // Scripted servers for the follower, the stream and the deadlines.

    /// A writer that tests read while another thread writes to it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// The path of a request, without its query.
    fn path_of(request: &str) -> &str {
        let target = request.split_whitespace().nth(1).unwrap_or("");
        target.split('?').next().unwrap_or("")
    }

    /// The requests a routed server saw, each with when it arrived.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<(Instant, String)>>>);

    impl Log {
        /// The requests for `path`, oldest first.
        fn to(&self, path: &str) -> Vec<(Instant, String)> {
            let all = self.0.lock().unwrap();
            all.iter()
                .filter(|(_, r)| path_of(r) == path)
                .cloned()
                .collect()
        }
    }

    /// A loopback server that, for `life`, answers each connection in a thread of its own: it
    /// reads the request, then calls `answer(path, n, stream)`, `n` counting the earlier
    /// requests for the same path. What it does with the connection after is up to `answer`.
    fn routed(
        life: Duration,
        answer: impl Fn(&str, usize, &mut TcpStream) + Send + Sync + 'static,
    ) -> (Server, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = Log::default();
        let seen = log.clone();
        let answer = Arc::new(answer);
        thread::spawn(move || {
            let end = Instant::now() + life;
            while Instant::now() < end {
                let Ok((mut s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (seen, answer) = (seen.clone(), answer.clone());
                thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let Some(request) = try_read_request(&mut s) else {
                        return;
                    };
                    let path = path_of(&request).to_string();
                    let n = {
                        let mut all = seen.0.lock().unwrap();
                        let n = all.iter().filter(|(_, r)| path_of(r) == path).count();
                        all.push((Instant::now(), request));
                        n
                    };
                    answer(&path, n, &mut s);
                });
            }
        });
        (Server::new("127.0.0.1", port), log)
    }

    /// Writes `text`, the client may have gone.
    fn send(s: &mut TcpStream, text: &str) {
        let _ = s.write_all(text.as_bytes());
    }

    /// Keeps the connection open, silent, for `d`.
    fn hold(s: &mut TcpStream, d: Duration) {
        thread::sleep(d);
        let _ = s.flush();
    }

    const STREAM_HEAD: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

    fn json_reply(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// A message event as smolhttpd sends it.
    fn message_event(id: u64, name: &str, text: &str) -> String {
        format!("id: {id}\ndata: {{\"id\":{id},\"name\":\"{name}\",\"text\":\"{text}\"}}\n\n")
    }

    /// Runs a follower against `server` for `d`; its stdout and stderr.
    fn follow_for(server: &Server, f: &mut Follower, d: Duration) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        f.follow(server, &mut out, &mut err, Some(Instant::now() + d));
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// The stream is read as a browser reads it: CR, LF and CRLF line ends (a CRLF split
    /// between two reads too), `data:` without the space, several data lines joined, a BOM,
    /// comments, `event: ping`, `event: gap`, an event without data (not shown, but its id
    /// counts), `retry:` as the pause before the next connection, which sends the last id.
    #[test]
    fn the_event_stream_is_read_as_a_browser_reads_it() {
        let (server, log) = routed(Duration::from_secs(3), |path, n, s| {
            if path != "/chat/events" {
                return send(s, NOT_FOUND);
            }
            if n > 0 {
                send(s, STREAM_HEAD);
                send(s, &message_event(8, "e", "again"));
                return hold(s, Duration::from_secs(2));
            }
            send(s, STREAM_HEAD);
            send(s, "\u{FEFF}retry: 700\r\n\r\n: a comment\r\n");
            send(
                s,
                "id: 1\r\ndata:{\"id\":1,\"name\":\"a\",\"text\":\"one\"}\r\n\r\n",
            );
            send(s, "id: 2\r\ndata: {\"id\":2,\"name\":\"b\",\r");
            let _ = s.flush();
            thread::sleep(Duration::from_millis(50));
            send(
                s,
                "\ndata: \"text\":\"two\"}\r\n\r\nevent: ping\ndata: {}\n\n",
            );
            send(
                s,
                ": keep-alive\n\nid: 3\rdata: {\"id\":3,\"name\":\"c\",\"text\":\"three\"}\r\r",
            );
            send(s, "event: gap\ndata: {\"from\":4,\"to\":5}\n\n");
            send(s, &message_event(6, "d", "six"));
            send(s, "id: 7\nevent: message\n\n");
            send(s, "data: {\"id\":8,\"name\":\"e\",\"text\":\"cut\"}\n");
        });
        let mut f = Follower::new(0);
        let (out, err) = follow_for(&server, &mut f, Duration::from_millis(1300));
        assert_eq!(
            out,
            "a: one\nb: two\nc: three\n(older messages were dropped)\nd: six\ne: again\n"
        );
        assert_eq!(err, "");
        let streams = log.to("/chat/events");
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert!(
            streams[1].1.contains("\r\nLast-Event-ID: 7\r\n"),
            "{}",
            streams[1].1
        );
        let gap = streams[1].0 - streams[0].0;
        assert!(gap >= Duration::from_millis(700), "reopened after {gap:?}");
        assert!(log.to("/chat").is_empty());
    }

    /// A 200 that is not an event stream is no stream: the client polls `/chat` instead and
    /// leaves the stream alone for a while.
    #[test]
    fn a_reply_that_is_not_an_event_stream_falls_back_to_polling() {
        let (server, log) = routed(Duration::from_secs(3), |path, _, s| {
            if path == "/chat/events" {
                send(s, &json_reply(r#"{"next":0,"messages":[]}"#));
            } else {
                let batch = r#"{"next":1,"messages":[{"id":1,"name":"ana","text":"hola"}]}"#;
                send(s, &json_reply(batch));
            }
        });
        let mut f = Follower::new(0);
        let (out, err) = follow_for(&server, &mut f, Duration::from_millis(1500));
        assert_eq!(out, "ana: hola\n");
        assert_eq!(err, "");
        assert_eq!(log.to("/chat/events").len(), 1);
        assert!((1..=3).contains(&log.to("/chat").len()));
        assert!(f.ever_ok);
    }

    /// A stream on which nothing arrives for `idle` (the server vanished without a FIN) is
    /// opened again from the last id; comments and pings count as something.
    #[test]
    fn a_silent_stream_is_taken_for_dead_and_opened_again() {
        let (server, log) = routed(Duration::from_secs(3), |path, n, s| {
            if path != "/chat/events" {
                return send(s, NOT_FOUND);
            }
            send(s, STREAM_HEAD);
            if n > 0 {
                send(s, &message_event(2, "b", "two"));
                return hold(s, Duration::from_secs(3));
            }
            send(s, &message_event(1, "a", "one"));
            for i in 0..6 {
                thread::sleep(Duration::from_millis(100));
                send(s, [": keep-alive\n\n", "event: ping\ndata: {}\n\n"][i % 2]);
            }
            hold(s, Duration::from_secs(3));
        });
        let mut f = Follower::new(0);
        f.idle = Duration::from_millis(300);
        let (out, err) = follow_for(&server, &mut f, Duration::from_millis(1700));
        assert_eq!(out, "a: one\nb: two\n");
        assert_eq!(err, "");
        let streams = log.to("/chat/events");
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert!(streams[1].1.contains("\r\nLast-Event-ID: 1\r\n"));
        let gap = streams[1].0 - streams[0].0;
        assert!(gap >= Duration::from_millis(850), "reopened after {gap:?}");
    }

    /// Ids going back on the stream (a server restarted, resuming an id from its future at
    /// its oldest message) are noticed once, and its messages are shown.
    #[test]
    fn a_restarted_server_is_noticed_on_the_stream() {
        let (server, log) = routed(Duration::from_secs(3), |path, n, s| {
            if path != "/chat/events" {
                return send(s, NOT_FOUND);
            }
            send(s, STREAM_HEAD);
            send(s, "retry: 100\n\n");
            if n == 0 {
                for (id, name, text) in [(1, "a", "one"), (2, "b", "two"), (3, "c", "three")] {
                    send(s, &message_event(id, name, text));
                }
                return;
            }
            if n == 1 {
                send(s, &message_event(1, "x", "new one"));
                send(s, &message_event(2, "y", "new two"));
            }
            hold(s, Duration::from_secs(2));
        });
        let mut f = Follower::new(0);
        let (out, err) = follow_for(&server, &mut f, Duration::from_millis(1000));
        assert_eq!(out, "a: one\nb: two\nc: three\nx: new one\ny: new two\n");
        assert_eq!(
            err,
            "chat: the server was restarted; showing its messages from the start\n"
        );
        let streams = log.to("/chat/events");
        assert_eq!(streams.len(), 2, "{streams:?}");
        assert!(streams[1].1.starts_with("GET /chat/events?since=3 "));
        assert!(streams[1].1.contains("\r\nLast-Event-ID: 3\r\n"));
        assert_eq!((f.since, f.parser.last_event_id.as_str()), (2, "2"));
    }

    /// One deadline for a whole request: a reply trickling in byte by byte is cut at it.
    #[test]
    fn a_request_has_one_deadline_for_its_whole_reply() {
        let (mut server, _log) = routed(Duration::from_secs(3), |_, _, s| {
            send(s, "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n");
            for b in r#"{"next":0,"messages":[]}"#.bytes() {
                let _ = s.write_all(&[b]);
                thread::sleep(Duration::from_millis(100));
            }
        });
        server.timeout = Duration::from_millis(500);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let start = Instant::now();
        assert!(!once(&server, &mut out, &mut err));
        let took = start.elapsed();
        assert!(
            (Duration::from_millis(500)..Duration::from_millis(1000)).contains(&took),
            "{took:?}"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "chat: connection to the server failed: timed out\n"
        );
    }

    /// `--listen --for N` ends in N seconds whatever the server does: here it refuses the
    /// stream and never answers a poll, or answers nothing at all (with the real timeouts).
    #[test]
    fn listen_for_ends_in_time_whatever_the_server_does() {
        for refuse in [true, false] {
            let (server, log) = routed(Duration::from_secs(3), move |path, _, s| {
                if path == "/chat/events" && refuse {
                    return send(s, NOT_FOUND);
                }
                hold(s, Duration::from_secs(3));
            });
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let start = Instant::now();
            assert!(!listen(&server, until(Some(1)), &mut out, &mut err));
            let took = start.elapsed();
            assert!(took < Duration::from_millis(1300), "{refuse}: {took:?}");
            assert!(out.is_empty() && err.is_empty());
            assert_eq!(log.to("/chat/events").len(), 1);
            assert_eq!(log.to("/chat").len(), usize::from(refuse));
        }
    }

    /// A `--for` past what a clock holds runs (as for ever) instead of overflowing.
    #[test]
    fn a_far_end_does_not_overflow() {
        for secs in [u64::MAX, 1 << 40] {
            let (server, _log) = routed(Duration::from_secs(2), |path, _, s| {
                if path != "/chat/events" {
                    return send(s, NOT_FOUND);
                }
                send(s, STREAM_HEAD);
                send(s, &message_event(1, "a", "one"));
                // Held past the test's end: the follower left running never reconnects.
                hold(s, Duration::from_secs(120));
            });
            let out = Shared::default();
            let mut writer = out.clone();
            let follower = thread::spawn(move || {
                let mut f = Follower::new(0);
                f.idle = Duration::MAX;
                f.follow(&server, &mut writer, &mut io::sink(), until(Some(secs)));
            });
            let start = Instant::now();
            while out.text().is_empty() && start.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(out.text(), "a: one\n");
            thread::sleep(Duration::from_millis(100));
            assert!(!follower.is_finished(), "--for {secs} ended (or panicked)");
        }
    }

    /// Interim replies (100 Continue, 103 Early Hints) are not the answer: the final one
    /// after them is, for a post and for the stream.
    #[test]
    fn an_interim_reply_is_not_the_answer() {
        for interim in [
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nLink: </chat.css>; rel=preload\r\n\r\n\
             HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            let (server, handle) = scripted(
                vec![Some(format!("{interim}{CREATED}"))],
                Duration::from_millis(300),
            );
            assert_eq!(post(&server, "ana", "hola"), Ok(7));
            let (seen, extra) = handle.join().unwrap();
            assert_eq!(seen.len(), 1);
            assert!(!extra);
        }
        let (server, log) = routed(Duration::from_secs(2), |path, _, s| {
            if path != "/chat/events" {
                return send(s, NOT_FOUND);
            }
            send(s, "HTTP/1.1 100 Continue\r\n\r\n");
            send(s, STREAM_HEAD);
            send(s, &message_event(1, "a", "one"));
            hold(s, Duration::from_secs(1));
        });
        let (out, err) = follow_for(&server, &mut Follower::new(0), Duration::from_millis(400));
        assert_eq!((out.as_str(), err.as_str()), ("a: one\n", ""));
        assert_eq!(log.to("/chat/events").len(), 1);
        assert!(log.to("/chat").is_empty());
    }

    /// A 503's Retry-After is waited out: a post is sent again after it (the server did
    /// not take it), and a refused stream is tried again after it, polling meanwhile.
    #[test]
    fn retry_after_is_honoured() {
        let busy =
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
        let (server, handle) = scripted(
            vec![Some(busy.to_string()), Some(CREATED.to_string())],
            Duration::from_millis(300),
        );
        let start = Instant::now();
        assert_eq!(post(&server, "ana", "hola"), Ok(7));
        assert!(start.elapsed() >= Duration::from_secs(1));
        let (seen, extra) = handle.join().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], seen[1]);
        assert!(!extra);

        let (server, log) = routed(Duration::from_secs(4), |path, n, s| match (path, n) {
            ("/chat/events", 0) => send(
                s,
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n",
            ),
            ("/chat/events", _) => {
                send(s, STREAM_HEAD);
                send(s, &message_event(2, "b", "two"));
                hold(s, Duration::from_secs(2));
            }
            _ => {
                let batch = r#"{"next":1,"messages":[{"id":1,"name":"a","text":"one"}]}"#;
                send(s, &json_reply(batch));
            }
        });
        let mut f = Follower::new(0);
        let (out, err) = follow_for(&server, &mut f, Duration::from_millis(2500));
        assert_eq!((out.as_str(), err.as_str()), ("a: one\nb: two\n", ""));
        let streams = log.to("/chat/events");
        assert_eq!(streams.len(), 2, "{streams:?}");
        let gap = streams[1].0 - streams[0].0;
        assert!(
            gap >= Duration::from_secs(2),
            "stream tried again after {gap:?}"
        );
        assert!(streams[1].1.contains("\r\nLast-Event-ID: 1\r\n"));
        assert_eq!(log.to("/chat").len(), 2);
    }

    /// Bidirectional formatting characters in a name or text are not printed.
    #[test]
    fn bidi_controls_are_not_printed() {
        let (server, _log) = routed(Duration::from_secs(2), |_, _, s| {
            let batch = r#"{"next":1,"messages":[{"id":1,"name":"\u202eana","text":"a\u2066b\u2069c\u200fd\u200e\u202ae\u202cf\u061cg"}]}"#;
            send(s, &json_reply(batch));
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(once(&server, &mut out, &mut err));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\u{FFFD}ana: a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}\u{FFFD}e\u{FFFD}f\u{FFFD}g\n"
        );
        assert!(err.is_empty());
    }
}
