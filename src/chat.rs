//! The group chat (second seed): a fixed ring of the newest messages, the form decoder for
//! `POST /chat`, the JSON writer for `GET /chat?since=N`, and [`ChatRoom`], the handler that
//! puts them on a route (feature `chat`).
//!
//! No sockets and no HTTP framing here: the handler answers through the public handler API and
//! its JSON is rendered from the ring each time the server sends more, so a reply larger than
//! the send buffer streams without a copy.

use core::fmt::Write as _;

use crate::handler::{self, Body, Context, Handler, Reply, Request, Status, Token};
use crate::json::{json_string, Counter, Full, Sink};

/// Messages kept; older ones are dropped as new ones arrive.
pub const MESSAGES: usize = 64;
/// Longest name, bytes of UTF-8.
pub const MAX_NAME: usize = 32;
/// Longest text, bytes of UTF-8.
pub const MAX_TEXT: usize = 256;
/// Longest form body accepted: both fields fully percent-encoded, plus the keys.
pub const MAX_FORM: usize = 3 * (MAX_NAME + MAX_TEXT) + 32;
/// Longest message as JSON (`{"id":..,"name":..,"text":..}`, escapes included): with the event
/// stream's `id:`/`data:` lines or a WebSocket frame header around it, every message fits the
/// smallest send buffer the server takes (1 KiB), so no listener can be stalled by one that
/// never fits. Text of `<`, `>`, `&` or control characters grows six-fold when escaped: a post
/// whose JSON would be longer is refused as too long (413).
pub const MAX_JSON: usize = 1024 - 64;
/// The name used when a post has none.
pub const ANONYMOUS: &str = "anon";

/// One message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub name: heapless::String<MAX_NAME>,
    pub text: heapless::String<MAX_TEXT>,
}

impl Message {
    /// `{"id":N,"name":"..","text":".."}`.
    pub fn write_json(&self, sink: &mut (impl Sink + ?Sized)) -> Result<(), Full> {
        sink.put(b"{\"id\":")?;
        put_number(sink, self.id)?;
        sink.put(b",\"name\":")?;
        json_string(&self.name, sink)?;
        sink.put(b",\"text\":")?;
        json_string(&self.text, sink)?;
        sink.put(b"}")
    }
}

/// Writes one whole event at `out[*w..]` and moves `w` past it, or writes nothing and returns
/// false when it does not fit.
fn put_event(
    out: &mut [u8],
    w: &mut usize,
    render: &dyn Fn(&mut dyn Sink) -> Result<(), Full>,
) -> bool {
    let mut c = Counter(0);
    let _ = render(&mut c);
    if *w + c.0 > out.len() {
        return false;
    }
    let mut win = crate::json::Window {
        skip: 0,
        out: &mut out[*w..*w + c.0],
        written: 0,
    };
    let _ = render(&mut win);
    *w += c.0;
    true
}

/// Writes a number in decimal.
fn put_number(sink: &mut (impl Sink + ?Sized), n: u64) -> Result<(), Full> {
    let mut num = heapless::String::<12>::new();
    // Cannot fail: a u64 has at most 20 digits.
    let _ = write!(num, "{n}");
    sink.put(num.as_bytes())
}

/// Why a post was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// Empty or missing text, a bad escape, or invalid UTF-8 (400).
    Invalid,
    /// Name or text too long (413).
    TooLong,
}

impl core::fmt::Display for PostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PostError::Invalid => "empty text or bad form encoding",
            PostError::TooLong => "name or text too long",
        })
    }
}

/// The ring of the newest `M` messages (default [`MESSAGES`]).
#[derive(Debug, Default)]
pub struct Chat<const M: usize = MESSAGES> {
    ring: heapless::Deque<Message, M>,
    last_id: u64,
}

impl<const M: usize> Chat<M> {
    /// An empty chat.
    pub const fn new() -> Self {
        Chat {
            ring: heapless::Deque::new(),
            last_id: 0,
        }
    }

    /// Decodes a form body and appends the message; returns its id.
    pub fn post(&mut self, form: &[u8]) -> Result<u64, PostError> {
        let (name, text) = decode_form(form)?;
        self.push(&name, &text)
    }

    /// Appends a message, dropping the oldest when full; returns its id.
    pub fn push(&mut self, name: &str, text: &str) -> Result<u64, PostError> {
        if text.is_empty() {
            return Err(PostError::Invalid);
        }
        let name = if name.is_empty() { ANONYMOUS } else { name };
        let mut msg = Message {
            // 64 bits: at a million posts a second, 584,000 years before it would saturate.
            id: self.last_id.saturating_add(1),
            name: heapless::String::new(),
            text: heapless::String::new(),
        };
        msg.name.push_str(name).map_err(|_| PostError::TooLong)?;
        msg.text.push_str(text).map_err(|_| PostError::TooLong)?;
        let mut json = Counter(0);
        let _ = msg.write_json(&mut json);
        if json.0 > MAX_JSON {
            return Err(PostError::TooLong);
        }
        if self.ring.is_full() {
            self.ring.pop_front();
        }
        self.last_id = msg.id;
        // Cannot fail: a slot was freed above.
        let _ = self.ring.push_back(msg);
        Ok(self.last_id)
    }

    /// The id of the newest message (0 when none was ever posted).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// The id of the oldest message kept.
    pub fn oldest_id(&self) -> Option<u64> {
        self.ring.front().map(|m| m.id)
    }

    /// Where a client that has seen every message up to `since` resumes: `since` itself, or 0
    /// when `since` is newer than any message this chat ever had (the client talked to an
    /// earlier run of the server, whose ids this one has not reached: it gets every message
    /// kept, oldest first).
    pub fn resume_point(&self, since: u64) -> u64 {
        if since > self.last_id {
            0
        } else {
            since
        }
    }

    /// Messages with `since < id <= upto`, oldest first.
    pub fn range(&self, since: u64, upto: u64) -> impl Iterator<Item = &Message> {
        self.ring
            .iter()
            .filter(move |m| m.id > since && m.id <= upto)
    }
}

/// A reply to `GET /chat?since=N`, fixed when the request arrives: the messages with
/// `since < id <= upto`. Rendering it again gives the same bytes as long as none of them was
/// dropped from the ring, which [`ChatReply::still_valid`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatReply {
    pub since: u64,
    pub upto: u64,
    /// The first id the reply holds (ids below it were already gone).
    pub first: u64,
}

impl ChatReply {
    /// The reply to `since` as the chat stands now (an id from the future resumes from the
    /// oldest message kept: see [`Chat::resume_point`]).
    pub fn new<const M: usize>(chat: &Chat<M>, since: u64) -> ChatReply {
        let since = chat.resume_point(since);
        let upto = chat.last_id();
        let first = chat
            .oldest_id()
            .map_or(upto + 1, |o| o.max(since.saturating_add(1)));
        ChatReply { since, upto, first }
    }

    /// False once a message of the reply has been dropped from the ring.
    pub fn still_valid<const M: usize>(&self, chat: &Chat<M>) -> bool {
        self.first > self.upto || chat.oldest_id().is_some_and(|o| o <= self.first)
    }

    /// Writes the JSON into `sink`.
    pub fn write<const M: usize>(
        &self,
        chat: &Chat<M>,
        sink: &mut (impl Sink + ?Sized),
    ) -> Result<(), Full> {
        let mut num = heapless::String::<24>::new();
        // Cannot fail: a u64 fits in 24 bytes.
        let next = self.upto;
        let _ = write!(num, "{next}");
        sink.put(b"{\"next\":")?;
        sink.put(num.as_bytes())?;
        sink.put(b",\"messages\":[")?;
        for (i, m) in chat.range(self.since, self.upto).enumerate() {
            if i > 0 {
                sink.put(b",")?;
            }
            m.write_json(sink)?;
        }
        sink.put(b"]}\n")
    }

    /// Length of the JSON in bytes.
    pub fn len<const M: usize>(&self, chat: &Chat<M>) -> usize {
        let mut c = Counter(0);
        // Cannot fail: a counter is never full.
        let _ = self.write(chat, &mut c);
        c.0
    }
}

/// Decodes `name=..&text=..` (application/x-www-form-urlencoded). Unknown fields are ignored;
/// a repeated field keeps its first value.
pub fn decode_form(
    form: &[u8],
) -> Result<(heapless::String<MAX_NAME>, heapless::String<MAX_TEXT>), PostError> {
    let mut name = None;
    let mut text = None;
    for pair in form.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        // Names are percent-encoded like values (`na%6De` is `name`); a longer one is none of
        // ours.
        let key = decode_field::<4>(key).ok();
        match key.as_deref() {
            Some("name") if name.is_none() => name = Some(decode_field::<MAX_NAME>(value)?),
            Some("text") if text.is_none() => text = Some(decode_field::<MAX_TEXT>(value)?),
            _ => {}
        }
    }
    let text = text.ok_or(PostError::Invalid)?;
    if text.trim().is_empty() {
        return Err(PostError::Invalid);
    }
    Ok((name.unwrap_or_default(), text))
}

/// Decodes a post sent as JSON over the WebSocket: `{"name":"..","text":".."}` (any order,
/// whitespace, escapes; other members with string, number, boolean or null values are ignored;
/// a repeated member keeps its first value). The same limits and errors as the form.
pub fn decode_json(
    json: &str,
) -> Result<(heapless::String<MAX_NAME>, heapless::String<MAX_TEXT>), PostError> {
    let mut p = JsonIn {
        s: json.as_bytes(),
        i: 0,
    };
    let mut name: Option<heapless::String<MAX_NAME>> = None;
    let mut text: Option<heapless::String<MAX_TEXT>> = None;
    p.expect(b'{')?;
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            let mut key = heapless::String::<4>::new();
            // A longer key is none of ours.
            let ours = match p.string(&mut key) {
                Ok(()) => true,
                Err(PostError::TooLong) => false,
                Err(e) => return Err(e),
            };
            p.expect(b':')?;
            match p.peek() {
                Some(b'"') if ours && key == "name" && name.is_none() => {
                    let mut v = heapless::String::new();
                    p.string(&mut v)?;
                    name = Some(v);
                }
                Some(b'"') if ours && key == "text" && text.is_none() => {
                    let mut v = heapless::String::new();
                    p.string(&mut v)?;
                    text = Some(v);
                }
                Some(b'"') => match p.string(&mut heapless::String::<0>::new()) {
                    Ok(()) | Err(PostError::TooLong) => {}
                    Err(e) => return Err(e),
                },
                _ => p.scalar()?,
            }
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(PostError::Invalid),
            }
        }
    }
    if p.peek().is_some() {
        return Err(PostError::Invalid);
    }
    let text = text.ok_or(PostError::Invalid)?;
    if text.trim().is_empty() {
        return Err(PostError::Invalid);
    }
    Ok((name.unwrap_or_default(), text))
}

/// A JSON number (RFC 8259 6): `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_number(w: &[u8]) -> bool {
    let digits = |w: &[u8]| w.iter().take_while(|b| b.is_ascii_digit()).count();
    let w = w.strip_prefix(b"-").unwrap_or(w);
    let int = digits(w);
    if int == 0 || (int > 1 && w[0] == b'0') {
        return false;
    }
    let mut w = &w[int..];
    if let Some(frac) = w.strip_prefix(b".") {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        w = &frac[n..];
    }
    if let Some(exp) = w.strip_prefix(b"e").or_else(|| w.strip_prefix(b"E")) {
        let exp = exp
            .strip_prefix(b"+")
            .or_else(|| exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        let n = digits(exp);
        if n == 0 {
            return false;
        }
        w = &exp[n..];
    }
    w.is_empty()
}

/// A JSON reader over bytes, for [`decode_json`]: strings and scalars, no nesting.
struct JsonIn<'j> {
    s: &'j [u8],
    i: usize,
}

impl JsonIn<'_> {
    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.s.get(self.i) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.i += 1;
        }
        None
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Result<(), PostError> {
        (self.next() == Some(b))
            .then_some(())
            .ok_or(PostError::Invalid)
    }

    /// A number, `true`, `false` or `null`, skipped.
    fn scalar(&mut self) -> Result<(), PostError> {
        self.peek();
        let start = self.i;
        while let Some(&b) = self.s.get(self.i) {
            if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) {
                break;
            }
            self.i += 1;
        }
        let word = &self.s[start..self.i];
        (is_number(word) || matches!(word, b"true" | b"false" | b"null"))
            .then_some(())
            .ok_or(PostError::Invalid)
    }

    /// A string into `out`: `TooLong` past its capacity (the rest is still read, so a caller
    /// may go on), `Invalid` for a bad escape or a raw control character.
    fn string<const N: usize>(&mut self, out: &mut heapless::String<N>) -> Result<(), PostError> {
        self.expect(b'"')?;
        let mut long = false;
        let mut put = |c: char, out: &mut heapless::String<N>| {
            if out.push(c).is_err() {
                long = true;
            }
        };
        loop {
            let rest = &self.s[self.i..];
            // The input is a &str: a run of plain characters is UTF-8 already.
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or(PostError::Invalid)?;
            for c in core::str::from_utf8(&rest[..run])
                .map_err(|_| PostError::Invalid)?
                .chars()
            {
                put(c, out);
            }
            self.i += run;
            match self.s[self.i] {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    let e = *self.s.get(self.i + 1).ok_or(PostError::Invalid)?;
                    self.i += 2;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(PostError::Invalid);
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(PostError::Invalid);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or(PostError::Invalid)?
                        }
                        _ => return Err(PostError::Invalid),
                    };
                    put(c, out);
                }
                _ => return Err(PostError::Invalid),
            }
        }
        if long {
            Err(PostError::TooLong)
        } else {
            Ok(())
        }
    }

    fn hex4(&mut self) -> Result<u32, PostError> {
        let h = self.s.get(self.i..self.i + 4).ok_or(PostError::Invalid)?;
        let h = core::str::from_utf8(h).map_err(|_| PostError::Invalid)?;
        let v = u32::from_str_radix(h, 16).map_err(|_| PostError::Invalid)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PostError::Invalid);
        }
        self.i += 4;
        Ok(v)
    }
}

/// Percent-decodes one field (`+` is a space) into at most `N` bytes of UTF-8.
fn decode_field<const N: usize>(value: &[u8]) -> Result<heapless::String<N>, PostError> {
    let mut out = heapless::Vec::<u8, N>::new();
    let mut i = 0;
    while i < value.len() {
        let b = match value[i] {
            b'+' => b' ',
            b'%' => {
                let b = crate::http::percent_byte(&value[i + 1..]).ok_or(PostError::Invalid)?;
                i += 2;
                b
            }
            b => b,
        };
        out.push(b).map_err(|_| PostError::TooLong)?;
        i += 1;
    }
    heapless::String::from_utf8(out).map_err(|_| PostError::Invalid)
}

/// The chat on a route (a prefix route on `/chat`): `GET /chat` answers
/// `{"next":..,"messages":[..]}` from `?since=N`, `POST /chat` takes a form and answers 201
/// with `Location` and `{"id":N}`, and `GET /chat/events` is a Server-Sent Events stream of
/// the messages, resumed from `Last-Event-ID` or `?since=N`. With feature `ws`, `GET /chat/ws`
/// is the same chat over a WebSocket, both ways: a text message in is a post
/// (`{"name":..,"text":..}`), every message kept goes out as a text frame of its JSON.
///
/// ```
/// # use smolhttpd::{chat::ChatRoom, handler::{Methods, Route}};
/// let mut chat = ChatRoom::<64>::new();
/// let route = Route::prefix(Methods::GET | Methods::POST, "/chat", &mut chat)
///     .max_body(smolhttpd::chat::MAX_FORM);
/// # let _ = route;
/// ```
#[derive(Debug, Default)]
pub struct ChatRoom<const M: usize = MESSAGES> {
    chat: Chat<M>,
}

/// Token kinds of the room's rendered bodies.
const LIST: u64 = 0;
const CREATED: u64 = 1;
const STREAM: u64 = 2;
/// A WebSocket connection of `/chat/ws`: `[WS, cursor, 0, 0]`.
#[cfg(feature = "ws")]
const WS: u64 = 3;
/// What `/chat/ws` answers a message it cannot post, instead of a status.
#[cfg(feature = "ws")]
const WS_INVALID: &str =
    "{\"error\":\"send {\\\"name\\\":..,\\\"text\\\":..} with a non-empty text\",\"status\":400}";
#[cfg(feature = "ws")]
const WS_TOO_LONG: &str = "{\"error\":\"name or text too long\",\"status\":413}";
#[cfg(feature = "ws")]
const WS_BINARY: &str = "{\"error\":\"send text (JSON), not binary\",\"status\":415}";
/// The stream's first lines: how long the browser waits before it reconnects.
const RETRY: &[u8] = b"retry: 2000\n\n";
/// The stream's heartbeat: a named event (`ping`, data `{}`) rather than a comment, so a page's
/// `EventSource` sees it too and can tell a live stream from a dead connection.
const KEEP_ALIVE: &[u8] = b"event: ping\ndata: {}\n\n";

impl<const M: usize> ChatRoom<M> {
    /// An empty room.
    pub const fn new() -> Self {
        ChatRoom { chat: Chat::new() }
    }

    /// The messages.
    pub fn chat(&self) -> &Chat<M> {
        &self.chat
    }

    /// Posts a message as if by `POST /chat`; returns its id.
    pub fn push(&mut self, name: &str, text: &str) -> Result<u64, PostError> {
        self.chat.push(name, text)
    }

    fn created(id: u64, out: &mut (impl Sink + ?Sized)) -> Result<(), Full> {
        out.put(b"{\"id\":")?;
        put_number(out, id)?;
        out.put(b"}\n")
    }

    /// `GET /chat/events`: the stream from the resume point (`Last-Event-ID`, else `?since`,
    /// else 0).
    fn events(&self, req: &Request<'_>) -> Reply {
        let last = req.header("last-event-id").and_then(crate::http::number);
        let Some(since) = last.or_else(|| parse_since(req.query)) else {
            return Reply::error(Status::BadRequest);
        };
        // A listener back from an earlier run of the server: every kept message, after a gap
        // event when older ones are gone.
        let since = self.chat.resume_point(since);
        Reply::new(
            Status::Ok,
            "text/event-stream",
            Body::Stream {
                token: [STREAM, since, 0, 0],
            },
        )
        .with_headers("Cache-Control: no-store\r\n")
    }
}

impl<const M: usize> Handler for ChatRoom<M> {
    fn handle(&mut self, req: &Request<'_>, _: &Context<'_>) -> Result<Reply, handler::Error> {
        match (req.path, req.method) {
            ("/chat", _) => {}
            ("/chat/events", crate::http::Method::Get | crate::http::Method::Head) => {
                return Ok(self.events(req))
            }
            ("/chat/events", _) => {
                return Ok(Reply::error(Status::MethodNotAllowed).header("Allow", "GET"))
            }
            #[cfg(feature = "ws")]
            ("/chat/ws", crate::http::Method::Get) => {
                let Some(since) = parse_since(req.query) else {
                    return Ok(Reply::error(Status::BadRequest));
                };
                return Ok(Reply::websocket([WS, self.chat.resume_point(since), 0, 0]));
            }
            #[cfg(feature = "ws")]
            ("/chat/ws", _) => {
                return Ok(Reply::error(Status::MethodNotAllowed).header("Allow", "GET"))
            }
            _ => return Ok(Reply::error(Status::NotFound)),
        }
        if req.method == crate::http::Method::Post {
            let form = req.content_type.is_some_and(|t| {
                let essence = t.split(|&b| b == b';').next().unwrap_or(b"");
                crate::http::trim(essence)
                    .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            });
            if !form {
                return Ok(Reply::error(Status::UnsupportedMediaType));
            }
            if req.body.len() > MAX_FORM {
                return Ok(Reply::error(Status::PayloadTooLarge));
            }
            return Ok(match self.chat.post(req.body) {
                Ok(id) => {
                    crate::logging::info!("chat: message {id} posted");
                    let mut c = Counter(0);
                    let _ = Self::created(id, &mut c);
                    let body = Body::Rendered {
                        len: c.0,
                        token: [CREATED, id, 0, 0],
                    };
                    Reply::json(Status::Created, body)
                        .header("Location", format_args!("/chat?since={id}"))
                }
                Err(PostError::Invalid) => Reply::error(Status::BadRequest),
                Err(PostError::TooLong) => Reply::error(Status::PayloadTooLarge),
            });
        }
        Ok(match parse_since(req.query) {
            Some(since) => {
                let r = ChatReply::new(&self.chat, since);
                let token = [LIST, r.since, r.upto, r.first];
                Reply::json(
                    Status::Ok,
                    Body::Rendered {
                        len: r.len(&self.chat),
                        token,
                    },
                )
            }
            None => Reply::error(Status::BadRequest),
        })
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        match token {
            [CREATED, id, ..] => Self::created(id, out),
            [_, since, upto, first] => ChatReply { since, upto, first }.write(&self.chat, out),
        }
    }

    /// Events after the cursor `token[1]`, each `id: N` + `data: <message JSON>`; first the
    /// retry hint and, when messages past the resume point were dropped from the ring, a
    /// `gap` event `{"from":A,"to":B}` naming them. Nothing is copied per listener: events
    /// are rendered from the ring into the send buffer.
    fn stream(&self, token: &mut Token, out: &mut [u8], idle: bool) -> usize {
        #[cfg(feature = "ws")]
        if token[0] == WS {
            return self.ws_stream(token, out);
        }
        let mut w = 0;
        if token[2] == 0 {
            if !put_event(out, &mut w, &|s| s.put(RETRY)) {
                return 0;
            }
            token[2] = 1;
        }
        let cursor = token[1];
        if let Some(oldest) = self
            .chat
            .oldest_id()
            .filter(|&o| o > cursor.saturating_add(1))
        {
            let gap = |s: &mut dyn Sink| {
                s.put(b"event: gap\ndata: {\"from\":")?;
                put_number(s, cursor + 1)?;
                s.put(b",\"to\":")?;
                put_number(s, oldest - 1)?;
                s.put(b"}\n\n")
            };
            if !put_event(out, &mut w, &gap) {
                return w;
            }
            token[1] = oldest - 1;
        }
        for m in self.chat.range(token[1], u64::MAX) {
            let event = |s: &mut dyn Sink| {
                s.put(b"id: ")?;
                put_number(s, m.id)?;
                s.put(b"\ndata: ")?;
                m.write_json(s)?;
                s.put(b"\n\n")
            };
            if !put_event(out, &mut w, &event) {
                return w;
            }
            token[1] = m.id;
        }
        if w == 0 && idle {
            put_event(out, &mut w, &|s| s.put(KEEP_ALIVE));
        }
        w
    }

    fn still_valid(&self, token: Token) -> bool {
        match token {
            [LIST, since, upto, first] => ChatReply { since, upto, first }.still_valid(&self.chat),
            _ => true,
        }
    }

    /// A text message on `/chat/ws` is a post (`{"name":..,"text":..}`); the message kept
    /// reaches every socket (this one too) through [`Handler::stream`]. A message that cannot
    /// be posted is answered on this socket alone with `{"error":..,"status":N}`, N the status
    /// the form would have had.
    #[cfg(feature = "ws")]
    fn ws_message(
        &mut self,
        _: &mut Token,
        msg: crate::ws::Message<'_>,
        tx: &mut crate::ws::Sender<'_, '_>,
    ) {
        let posted = match msg {
            crate::ws::Message::Text(t) => decode_json(t)
                .and_then(|(name, text)| self.chat.push(&name, &text))
                .map_err(|e| match e {
                    PostError::Invalid => WS_INVALID,
                    PostError::TooLong => WS_TOO_LONG,
                }),
            crate::ws::Message::Binary(_) => Err(WS_BINARY),
        };
        match posted {
            Ok(id) => crate::logging::info!("chat: message {id} posted over WebSocket"),
            // The server gave room for a reply as large as a message.
            Err(error) => {
                let _ = tx.text(error);
            }
        }
    }
}

#[cfg(feature = "ws")]
impl<const M: usize> ChatRoom<M> {
    /// Frames for a `/chat/ws` socket after the cursor `token[1]`: each message kept as a text
    /// frame of its JSON (`{"id":N,"name":..,"text":..}`, as the event stream's data), after a
    /// `{"gap":{"from":A,"to":B}}` frame when messages past the cursor were dropped.
    fn ws_stream(&self, token: &mut Token, out: &mut [u8]) -> usize {
        let mut w = 0;
        let cursor = token[1];
        if let Some(oldest) = self
            .chat
            .oldest_id()
            .filter(|&o| o > cursor.saturating_add(1))
        {
            let gap = |s: &mut dyn Sink| {
                s.put(b"{\"gap\":{\"from\":")?;
                put_number(s, cursor + 1)?;
                s.put(b",\"to\":")?;
                put_number(s, oldest - 1)?;
                s.put(b"}}")
            };
            if !crate::ws::put_message(out, &mut w, true, &gap) {
                return w;
            }
            token[1] = oldest - 1;
        }
        for m in self.chat.range(token[1], u64::MAX) {
            if !crate::ws::put_message(out, &mut w, true, &|s| m.write_json(s)) {
                return w;
            }
            token[1] = m.id;
        }
        w
    }
}

/// Parses the query of `GET /chat`: `since=N` (absent: 0). Anything else is ignored.
pub fn parse_since(query: Option<&str>) -> Option<u64> {
    let Some(q) = query else { return Some(0) };
    let mut since = 0;
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("since=") {
            since = crate::http::number(v.as_bytes())?;
        }
    }
    Some(since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Window;
    use std::string::String;
    use std::vec::Vec;

    struct Collect(Vec<u8>);
    impl Sink for Collect {
        fn put(&mut self, b: &[u8]) -> Result<(), Full> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }

    fn json(chat: &Chat, since: u64) -> String {
        let mut c = Collect(Vec::new());
        ChatReply::new(chat, since).write(chat, &mut c).unwrap();
        String::from_utf8(c.0).unwrap()
    }

    #[test]
    fn forms() {
        let (n, t) = decode_form(b"name=ana&text=hola+mundo%21").unwrap();
        assert_eq!((n.as_str(), t.as_str()), ("ana", "hola mundo!"));
        let (n, t) = decode_form(b"text=%C3%B1&other=1").unwrap();
        assert_eq!((n.as_str(), t.as_str()), ("", "ñ"));
        assert_eq!(decode_form(b"name=ana"), Err(PostError::Invalid));
        assert_eq!(decode_form(b"name=ana&text="), Err(PostError::Invalid));
        assert_eq!(decode_form(b"text=%zz"), Err(PostError::Invalid));
        assert_eq!(decode_form(b"text=%C3"), Err(PostError::Invalid));
        let long = std::format!("text={}", "a".repeat(257));
        assert_eq!(decode_form(long.as_bytes()), Err(PostError::TooLong));
        let ok = std::format!("text={}", "a".repeat(256));
        assert!(decode_form(ok.as_bytes()).is_ok());
        let name = std::format!("name={}&text=x", "é".repeat(17));
        assert_eq!(decode_form(name.as_bytes()), Err(PostError::TooLong));
    }

    #[test]
    fn json_posts() {
        let ok = |s: &str| {
            let (n, t) = decode_json(s).unwrap();
            (String::from(n.as_str()), String::from(t.as_str()))
        };
        assert_eq!(
            ok(r#"{"name":"ana","text":"hola"}"#),
            ("ana".into(), "hola".into())
        );
        assert_eq!(
            ok(r#"{"n":-0.5e+3,"text":"a\u00f1\ud83d\ude00","x":null,"name":"b"}"#),
            ("b".into(), "añ😀".into())
        );
        assert_eq!(ok(r#"{"text":"first","text":"second"}"#).1, "first");
        for bad in [
            "",
            "{",
            "[]",
            r#"{"text":"x"}x"#,
            r#"{"text":1}"#,
            r#"{"text":"x",}"#,
            r#"{"n":01,"text":"x"}"#,
            r#"{"n":1.,"text":"x"}"#,
            r#"{"n":--1,"text":"x"}"#,
            r#"{"n":tru,"text":"x"}"#,
            r#"{"text":"\ud800"}"#,
            r#"{"text":"\x"}"#,
            "{\"text\":\"a\nb\"}",
            r#"{"text":" "}"#,
            r#"{"name":"a"}"#,
            r#"{"n":{},"text":"x"}"#,
        ] {
            assert_eq!(decode_json(bad), Err(PostError::Invalid), "{bad}");
        }
        let long = std::format!(r#"{{"text":"{}"}}"#, "a".repeat(257));
        assert_eq!(decode_json(&long), Err(PostError::TooLong));
        let name = std::format!(r#"{{"name":"{}","text":"x"}}"#, "é".repeat(17));
        assert_eq!(decode_json(&name), Err(PostError::TooLong));
    }

    /// The URL standard's application/x-www-form-urlencoded parser decodes names like values.
    #[test]
    fn field_names_are_percent_decoded() {
        let (name, text) = decode_form(b"na%6De=ana&te%78t=hola+y%20adios").unwrap();
        assert_eq!((name.as_str(), text.as_str()), ("ana", "hola y adios"));
        assert_eq!(decode_form(b"%74ext=x&textual=y").unwrap().1.as_str(), "x");
        assert_eq!(decode_form(b"tex=x"), Err(PostError::Invalid));
    }

    #[test]
    fn json_is_escaped() {
        let mut chat = Chat::new();
        chat.push("a\"b", "</script>\u{2028}\\\n\u{1}").unwrap();
        let s = json(&chat, 0);
        assert_eq!(
            s,
            "{\"next\":1,\"messages\":[{\"id\":1,\"name\":\"a\\\"b\",\"text\":\"\\u003c/script\\u003e\\u2028\\\\\\n\\u0001\"}]}\n"
        );
    }

    #[test]
    fn ring_keeps_the_newest() {
        let mut chat = Chat::new();
        for i in 1..=69 {
            assert_eq!(chat.push("n", &std::format!("m{i}")).unwrap(), i);
        }
        let ids: Vec<u64> = chat.range(0, 69).map(|m| m.id).collect();
        assert_eq!(ids, (6..=69).collect::<Vec<_>>());
        assert!(json(&chat, 68).contains("\"next\":69"));
        assert_eq!(json(&chat, 69), "{\"next\":69,\"messages\":[]}\n");
    }

    #[test]
    fn window_resumes_byte_exact() {
        let mut chat = Chat::new();
        for i in 0..10 {
            chat.push("ana", &std::format!("message number {i}"))
                .unwrap();
        }
        let reply = ChatReply::new(&chat, 0);
        let whole = json(&chat, 0);
        assert_eq!(reply.len(&chat), whole.len());
        let mut got = Vec::new();
        while got.len() < whole.len() {
            let mut buf = [0u8; 37];
            let mut w = Window {
                skip: got.len(),
                out: &mut buf,
                written: 0,
            };
            let _ = reply.write(&chat, &mut w);
            let n = w.written;
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, whole.as_bytes());
    }

    #[test]
    fn since_query() {
        assert_eq!(parse_since(None), Some(0));
        assert_eq!(parse_since(Some("since=12")), Some(12));
        assert_eq!(parse_since(Some("x=1&since=3")), Some(3));
        assert_eq!(parse_since(Some("since=-1")), None);
        assert_eq!(parse_since(Some("since=")), None);
        assert_eq!(parse_since(Some("since=99999999999")), Some(99_999_999_999));
        assert_eq!(parse_since(Some("since=18446744073709551616")), None);
    }

    #[test]
    fn every_kept_message_fits_the_smallest_send_buffer() {
        // 256 bytes of '<' would be 1,536 bytes of JSON: refused, as is a text of control
        // characters; the longest text of '<' that is kept still goes out whole through a
        // 1 KiB send buffer, on the event stream and on a WebSocket.
        let mut room: ChatRoom = ChatRoom::new();
        let lt = |n: usize| "<".repeat(n);
        assert_eq!(room.push("ana", &lt(256)), Err(PostError::TooLong));
        assert_eq!(
            room.push("ana", &"\u{1}".repeat(200)),
            Err(PostError::TooLong)
        );
        let longest = (1..=256).rev().find(|&n| room.push("ana", &lt(n)).is_ok());
        let n = longest.expect("some text of '<' is kept");
        assert!(n >= 140, "only {n} '<' kept");
        assert_eq!(room.push("ana", &lt(n + 1)), Err(PostError::TooLong));
        let mut out = [0u8; 1024];
        let mut token = [STREAM, 0, 0, 0];
        let got = room.stream(&mut token, &mut out, false);
        assert!(got > 6 * n, "the event did not fit 1 KiB: {got} bytes");
        #[cfg(feature = "ws")]
        {
            let mut token = [WS, 0, 0, 0];
            let got = room.stream(&mut token, &mut out, false);
            assert!(got > 6 * n, "the frame did not fit 1 KiB: {got} bytes");
        }
        // Ordinary text of 256 bytes is kept as ever.
        assert!(room.push("ana", &"a".repeat(256)).is_ok());
    }

    /// The stream's bytes for a listener resuming from `since`, in one go.
    fn stream_from(room: &ChatRoom, since: u64) -> String {
        let mut token = [STREAM, since, 0, 0];
        let mut out = [0u8; 4096];
        let n = room.stream(&mut token, &mut out, false);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn ids_go_past_u32_and_are_never_reused() {
        let mut chat: Chat = Chat::new();
        // As if 2^32 - 1 messages had been posted (a debug build panicked on the next one, a
        // release build wrapped to 0 and reused ids).
        chat.last_id = u64::from(u32::MAX);
        assert_eq!(chat.push("a", "x").unwrap(), 1 << 32);
        assert_eq!(chat.push("a", "y").unwrap(), (1 << 32) + 1);
        assert!(json(&chat, u64::from(u32::MAX)).starts_with("{\"next\":4294967297,"));
        assert!(json(&chat, u64::from(u32::MAX)).contains("\"id\":4294967296,"));
    }

    #[test]
    fn an_id_from_the_future_is_a_restarted_server() {
        // A client that saw ids up to 500 from an earlier run; this run has three messages.
        let mut room: ChatRoom = ChatRoom::new();
        for t in ["one", "two", "three"] {
            room.push("ana", t).unwrap();
        }
        let since_500 = json(&room.chat, 500);
        assert!(since_500.starts_with("{\"next\":3,"), "{since_500}");
        assert!(since_500.contains("\"text\":\"one\"") && since_500.contains("\"text\":\"three\""));
        // The stream, resumed with Last-Event-ID 500, sends all three.
        let since = room.chat.resume_point(500);
        let s = stream_from(&room, since);
        assert_eq!(s.matches("id: ").count(), 3, "{s}");
        assert!(s.contains("id: 1\n") && s.contains("id: 3\n"));
        // An id from this run still resumes after it.
        assert_eq!(room.chat.resume_point(2), 2);
        // With older messages gone, the restart begins with a gap event.
        let mut room: ChatRoom<4> = ChatRoom::new();
        for i in 0..6 {
            room.push("b", &std::format!("m{i}")).unwrap();
        }
        let since = room.chat.resume_point(99);
        let mut token = [STREAM, since, 0, 0];
        let mut out = [0u8; 4096];
        let n = room.stream(&mut token, &mut out, false);
        let s = core::str::from_utf8(&out[..n]).unwrap();
        assert!(s.contains("event: gap\ndata: {\"from\":1,\"to\":2}"), "{s}");
        assert!(s.contains("id: 3\n") && s.contains("id: 6\n"), "{s}");
    }
}
