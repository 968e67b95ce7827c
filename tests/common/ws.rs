//! A WebSocket client's side for the in-process tests, written from RFC 6455 (not with the
//! server's code): the upgrade request, masked client frames, and the server's frames parsed.

/// The RFC's sample key and its accept value (RFC 6455 1.3).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const CONT: u8 = 0;
pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// An upgrade request for `target` with the sample key and `extra` header lines (CRLF-ended).
pub fn upgrade(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A client frame: masked with `mask` (None: unmasked, which a server must refuse).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xFFFF => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A whole masked text message in one frame.
pub fn text(s: &str) -> Vec<u8> {
    frame(true, TEXT, s.as_bytes(), Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A masked close frame with `code`.
pub fn close(code: u16) -> Vec<u8> {
    frame(true, CLOSE, &code.to_be_bytes(), Some([1, 2, 3, 4]))
}

/// A server frame: (fin, opcode, payload).
pub type Frame = (bool, u8, Vec<u8>);

/// The bytes after the response head, and the head, of a raw exchange.
pub fn split(raw: &[u8]) -> (String, &[u8]) {
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (
            String::from_utf8_lossy(&raw[..i + 4]).into_owned(),
            &raw[i + 4..],
        ),
        None => (String::from_utf8_lossy(raw).into_owned(), &[]),
    }
}

/// The server's frames in `bytes` (whole ones); panics on a masked frame (servers must not
/// mask).
pub fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (b0, b1) = (bytes[0], bytes[1]);
        assert_eq!(b1 & 0x80, 0, "a masked server frame");
        let (len, at) = match b1 & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if bytes.len() < at + len {
            break;
        }
        out.push((b0 & 0x80 != 0, b0 & 0x0f, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    out
}

/// The server frames of a raw exchange after its 101 head.
pub fn frames_after_head(raw: &[u8]) -> Vec<Frame> {
    frames(split(raw).1)
}

/// The close code of a close frame's payload.
pub fn code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}
