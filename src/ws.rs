//! WebSocket (RFC 6455) for handlers (feature `ws`): the upgrade, the frame format, and what a
//! handler uses to receive and send messages.
//!
//! A route's handler accepts an upgrade by answering a `GET` with [`Body::WebSocket`](crate::handler::Body::WebSocket)
//! (`Reply::websocket(token)`); it may look at `Origin` first and answer 403 instead. The
//! server then checks the handshake ([`check_upgrade`]: `Upgrade: websocket`,
//! `Connection: Upgrade`, `Sec-WebSocket-Version: 13`, a 16-byte base64 `Sec-WebSocket-Key`;
//! else 400, with `Sec-WebSocket-Version: 13` on a version mismatch), counts the connection
//! with the event streams toward `Config::max_streams` (one more: 503 with `Retry-After`),
//! answers `101 Switching Protocols` with the `Sec-WebSocket-Accept` ([`accept_key`]), and the
//! slot speaks frames from then on:
//!
//! - **In**: frames are parsed from the slot's request buffer ([`parse_header`]); every client
//!   frame must be masked (else close 1002), fragments are reassembled in place, a whole
//!   message is handed to [`Handler::ws_message`](crate::handler::Handler::ws_message) borrowed
//!   from that buffer (text must be UTF-8, else close 1007; a message over [`max_message`] of
//!   the buffer is close 1009). Pings are answered with pongs, pongs are noted, a close is
//!   answered and the slot freed; control frames may come between fragments.
//! - **Out**, two ways, both unmasked whole frames: [`Sender`] writes into the connection's own
//!   socket from inside `ws_open`/`ws_message` (a reply, an echo); and each connection pulls
//!   from [`Handler::stream`](crate::handler::Handler::stream) whenever its socket has room,
//!   the handler writing whole frames with [`put_message`]. That pull is how a handler
//!   broadcasts: it keeps what it has to say in its own storage (the chat's ring) and every
//!   connection of the route takes it at its own pace, so a slow reader blocks nobody and
//!   nothing is allocated.
//! - **Fairness**: a connection that does not read meets `Config::send_timeout`; one silent for
//!   `Config::stream_heartbeat` gets a ping, and is closed (1001) if still silent another
//!   heartbeat later; while clients wait for a slot, WebSocket connections give way first,
//!   like the event streams, with a close frame 1001 between messages.
//!
//! The slot's state machine (`server/slot/ws.rs`) does the I/O; this module is the format.

use sha1::{Digest, Sha1};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use smoltcp::socket::tcp;

use crate::http::Request;
use crate::json::{Counter, Full, Sink, Window};

/// The GUID of RFC 6455 1.3 that the accept key hashes with the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes (RFC 6455 7.4.1) the server sends or understands.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: the server stops, or makes room for a waiting client, or the peer stopped
    /// answering pings.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: an unmasked frame, reserved bits or opcodes, a bad fragment sequence.
    pub const PROTOCOL: u16 = 1002;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message larger than the slot's buffer can hold.
    pub const TOO_BIG: u16 = 1009;
    /// No close frame came: the connection ended or was aborted (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
}

/// Frame opcodes.
pub(crate) mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A whole message, borrowed from the slot's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'m> {
    /// A text message (valid UTF-8).
    Text(&'m str),
    /// A binary message.
    Binary(&'m [u8]),
}

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid WebSocket handshake (400).
    BadRequest,
    /// `Sec-WebSocket-Version` is not 13 (400 with `Sec-WebSocket-Version: 13`).
    Version,
}

/// The length of a `Sec-WebSocket-Accept` value.
pub const ACCEPT_LEN: usize = 28;

/// Checks the handshake headers of `req` (RFC 6455 4.2.1) and returns the
/// `Sec-WebSocket-Accept` value for its key.
pub fn check_upgrade(req: &Request<'_>) -> Result<[u8; ACCEPT_LEN], Refusal> {
    let has_token = |name: &str, token: &[u8]| {
        req.headers(name).any(|v| {
            crate::http::tokens(v).any(|t| crate::http::trim(t).eq_ignore_ascii_case(token))
        })
    };
    // A body (RFC 6455 4.1 has none) would be parsed as frames here, and as a body by any
    // proxy on the way: the two must not disagree, so it is refused.
    let body = req.transfer_encoding || req.content_length.is_some_and(|n| n > 0);
    if req.method != crate::http::Method::Get
        || req.version != crate::http::Version::V11
        || body
        || !has_token("upgrade", b"websocket")
        || !has_token("connection", b"upgrade")
    {
        return Err(Refusal::BadRequest);
    }
    match req.header("sec-websocket-version") {
        Some(v) if crate::http::trim(v) == b"13" => {}
        _ => return Err(Refusal::Version),
    }
    let key = req.header("sec-websocket-key").ok_or(Refusal::BadRequest)?;
    accept_key(crate::http::trim(key)).ok_or(Refusal::BadRequest)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of the key and the
/// GUID. None when the key is not the base64 of 16 bytes.
pub fn accept_key(key: &[u8]) -> Option<[u8; ACCEPT_LEN]> {
    let mut raw = [0u8; 32];
    if key.len() != 24 || STANDARD.decode_slice(key, &mut raw).ok()? != 16 {
        return None;
    }
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [0u8; ACCEPT_LEN];
    (STANDARD.encode_slice(digest, &mut out).ok()? == ACCEPT_LEN).then_some(out)
}

/// The largest message a slot with a `buf`-byte request buffer takes: room is kept for a frame
/// header and for a control frame arriving between fragments.
pub const fn max_message(buf: usize) -> usize {
    buf.saturating_sub(MAX_HEADER + 2 + 4 + 125)
}

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    /// The masking key (client frames must have one).
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Header bytes, mask included.
    pub header_len: usize,
}

impl Header {
    /// A control frame (close, ping, pong).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a frame header at the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Err(code)` for a frame no endpoint may send (reserved bits or opcodes, a control frame
/// fragmented or over 125 bytes, a length with its top bit set, a length not in its shortest
/// form is accepted).
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, u16> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if b0 & 0x70 != 0 {
        return Err(close::PROTOCOL);
    }
    if !matches!(
        opcode,
        op::CONTINUATION | op::TEXT | op::BINARY | op::CLOSE | op::PING | op::PONG
    ) {
        return Err(close::PROTOCOL);
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(close::PROTOCOL);
    }
    if opcode & 0x8 != 0 && (!fin || len > 125) {
        return Err(close::PROTOCOL);
    }
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        header_len: at,
    }))
}

/// Unmasks (or masks) `data` in place with `mask`.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Writes an unmasked frame header for a final frame of `opcode` and `len` payload bytes;
/// returns its length (2, 4 or 10).
pub fn write_header(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Writes one whole unmasked message frame at `out[*w..]` (text or binary) whose payload
/// `render` writes, and moves `w` past it; writes nothing and returns false when it does not
/// fit. `render` must write the same bytes each time (it runs twice: to count, then to write).
/// This is what a handler's [`Handler::stream`](crate::handler::Handler::stream) uses for a
/// WebSocket connection.
pub fn put_message(
    out: &mut [u8],
    w: &mut usize,
    text: bool,
    render: &dyn Fn(&mut dyn Sink) -> Result<(), Full>,
) -> bool {
    let mut c = Counter(0);
    let _ = render(&mut c);
    let mut head = [0u8; 10];
    let h = write_header(if text { op::TEXT } else { op::BINARY }, c.0, &mut head);
    let Some(room) = out.len().checked_sub(*w) else {
        return false;
    };
    if h + c.0 > room {
        return false;
    }
    out[*w..*w + h].copy_from_slice(&head[..h]);
    let mut win = Window {
        skip: 0,
        out: &mut out[*w + h..*w + h + c.0],
        written: 0,
    };
    let _ = render(&mut win);
    *w += h + c.0;
    true
}

/// Sends whole frames on one WebSocket connection, straight into its socket's send buffer:
/// what [`Handler::ws_open`](crate::handler::Handler::ws_open) and
/// [`Handler::ws_message`](crate::handler::Handler::ws_message) answer with. A frame that does
/// not fit in the room left is not sent (`Err(Full)`); the server hands a handler a message
/// only when its socket has room for a reply as large as a message can be.
pub struct Sender<'s, 'a> {
    socket: &'s mut tcp::Socket<'a>,
    /// Bytes put into the socket.
    pub(crate) sent: usize,
}

impl<'s, 'a> Sender<'s, 'a> {
    pub(crate) fn new(socket: &'s mut tcp::Socket<'a>) -> Self {
        Sender { socket, sent: 0 }
    }

    /// Bytes the socket can take now.
    pub fn room(&self) -> usize {
        self.socket
            .send_capacity()
            .saturating_sub(self.socket.send_queue())
    }

    /// Sends one whole message.
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), Full> {
        match msg {
            Message::Text(t) => self.frame(op::TEXT, t.as_bytes()),
            Message::Binary(b) => self.frame(op::BINARY, b),
        }
    }

    /// Sends a text message.
    pub fn text(&mut self, text: &str) -> Result<(), Full> {
        self.frame(op::TEXT, text.as_bytes())
    }

    /// Sends a frame of `opcode` with `payload`, whole or not at all.
    pub(crate) fn frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Full> {
        let mut head = [0u8; 10];
        let h = write_header(opcode, payload.len(), &mut head);
        if self.room() < h + payload.len() || !self.socket.may_send() {
            return Err(Full);
        }
        // Both fit (checked above): send_slice wraps around the ring itself.
        let a = self.socket.send_slice(&head[..h]).unwrap_or(0);
        let b = self.socket.send_slice(payload).unwrap_or(0);
        self.sent += a + b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 1.3's example.
    #[test]
    fn accept_key_of_the_rfc() {
        let a = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        assert_eq!(&a, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ"), None);
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=!"), None);
        // 24 characters of base64 that decode to 17 bytes cannot happen; 12 bytes can.
        assert_eq!(accept_key(b"AAAAAAAAAAAAAAAA"), None);
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header(&[0x81]), Ok(None));
        let h = parse_header(&[0x81, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.header_len), (true, 1, 5, 6));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        let h = parse_header(&[0x02, 0xFE, 0x01, 0x00, 9, 9, 9, 9])
            .unwrap()
            .unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.header_len), (false, 2, 256, 8));
        assert_eq!(parse_header(&[0x02, 0xFF, 0, 0, 0]), Ok(None));
        assert_eq!(parse_header(&[0xC1, 0x80]), Err(close::PROTOCOL));
        assert_eq!(parse_header(&[0x83, 0x80]), Err(close::PROTOCOL));
        assert_eq!(parse_header(&[0x09, 0x80]), Err(close::PROTOCOL));
        assert_eq!(parse_header(&[0x89, 0xFE, 0, 126]), Err(close::PROTOCOL));
        let top = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_header(&top), Err(close::PROTOCOL));
    }

    #[test]
    fn frames_are_written_whole_or_not() {
        let mut out = [0u8; 8];
        let mut w = 0;
        assert!(put_message(&mut out, &mut w, true, &|s| s.put(b"hey")));
        assert_eq!(&out[..w], b"\x81\x03hey");
        assert!(!put_message(&mut out, &mut w, false, &|s| s.put(b"abcd")));
        assert_eq!(w, 5);
        let mut head = [0u8; 10];
        assert_eq!(write_header(2, 300, &mut head), 4);
        assert_eq!(&head[..4], &[0x82, 126, 1, 44]);
        assert_eq!(write_header(2, 70_000, &mut head), 10);
        assert_eq!(&head[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
