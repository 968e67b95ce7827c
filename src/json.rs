//! JSON output without allocation: a [`Sink`] that takes bytes until it is full, and the
//! string escaper. Replies are rendered again on each send into a [`Window`] that skips what
//! was already sent, so a reply of any size streams through a small socket buffer.
//!
//! It writes JSON only; it never parses any.

use core::fmt::Write as _;

/// Where JSON goes; `Err(Full)` stops the writer early.
pub trait Sink {
    /// Takes `bytes` or reports that no more fit.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full>;
}

/// The sink can take no more bytes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Counts bytes (for `Content-Length`).
#[derive(Debug, Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Skips the first `skip` bytes of a stream, then fills `out`.
#[derive(Debug)]
pub struct Window<'b> {
    pub skip: usize,
    pub out: &'b mut [u8],
    pub written: usize,
}

impl Sink for Window<'_> {
    fn put(&mut self, mut bytes: &[u8]) -> Result<(), Full> {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        let room = self.out.len() - self.written;
        let n = room.min(bytes.len());
        self.out[self.written..self.written + n].copy_from_slice(&bytes[..n]);
        self.written += n;
        if n < bytes.len() {
            Err(Full)
        } else {
            Ok(())
        }
    }
}

/// Writes `s` as a JSON string. Besides what JSON requires (`"`, `\`, control characters),
/// `<`, `>`, `&`, U+2028 and U+2029 are escaped, so the output is safe inside HTML `<script>`
/// and in JavaScript source.
pub fn json_string(s: &str, sink: &mut (impl Sink + ?Sized)) -> Result<(), Full> {
    sink.put(b"\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '<' => Some(b"\\u003c"),
            '>' => Some(b"\\u003e"),
            '&' => Some(b"\\u0026"),
            '\u{2028}' => Some(b"\\u2028"),
            '\u{2029}' => Some(b"\\u2029"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => None,
            _ => continue,
        };
        sink.put(&bytes[start..i])?;
        match esc {
            Some(e) => sink.put(e)?,
            None => {
                let mut u = heapless::String::<8>::new();
                let _ = write!(u, "\\u{:04x}", c as u32);
                sink.put(u.as_bytes())?;
            }
        }
        start = i + c.len_utf8();
    }
    sink.put(&bytes[start..])?;
    sink.put(b"\"")
}
