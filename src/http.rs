//! HTTP/0.9, 1.0 and 1.1 request heads: parsing, header semantics, target normalisation, and
//! the status codes the server answers with.
//!
//! Parsing is a push parser over the slot's buffer (httparse does the byte-level work): not
//! enough bytes is [`Parse::Partial`], a full buffer with a partial head is a verdict (414/431).
//! This module knows nothing of sockets, files or time.

use core::fmt;

/// Status codes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 101: a WebSocket upgrade accepted.
    SwitchingProtocols,
    Ok,
    Created,
    PartialContent,
    MovedPermanently,
    NotModified,
    BadRequest,
    /// 403: a handler refuses (a WebSocket from a foreign `Origin`, say).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    HeadersTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub const fn code(self) -> u16 {
        match self {
            Status::SwitchingProtocols => 101,
            Status::Ok => 200,
            Status::Created => 201,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::UnsupportedMediaType => 415,
            Status::RangeNotSatisfiable => 416,
            Status::HeadersTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// The status line, CRLF included.
    pub const fn line(self) -> &'static str {
        match self {
            Status::SwitchingProtocols => "HTTP/1.1 101 Switching Protocols\r\n",
            Status::Ok => "HTTP/1.1 200 OK\r\n",
            Status::Created => "HTTP/1.1 201 Created\r\n",
            Status::PartialContent => "HTTP/1.1 206 Partial Content\r\n",
            Status::MovedPermanently => "HTTP/1.1 301 Moved Permanently\r\n",
            Status::NotModified => "HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => "HTTP/1.1 400 Bad Request\r\n",
            Status::Forbidden => "HTTP/1.1 403 Forbidden\r\n",
            Status::NotFound => "HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => "HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => "HTTP/1.1 408 Request Timeout\r\n",
            Status::LengthRequired => "HTTP/1.1 411 Length Required\r\n",
            Status::PayloadTooLarge => "HTTP/1.1 413 Content Too Large\r\n",
            Status::UriTooLong => "HTTP/1.1 414 URI Too Long\r\n",
            Status::UnsupportedMediaType => "HTTP/1.1 415 Unsupported Media Type\r\n",
            Status::RangeNotSatisfiable => "HTTP/1.1 416 Range Not Satisfiable\r\n",
            Status::HeadersTooLarge => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::InternalServerError => "HTTP/1.1 500 Internal Server Error\r\n",
            Status::NotImplemented => "HTTP/1.1 501 Not Implemented\r\n",
            Status::ServiceUnavailable => "HTTP/1.1 503 Service Unavailable\r\n",
            Status::VersionNotSupported => "HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
    }

    /// Short plain-text body for error responses.
    pub const fn text(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request\n",
            Status::Forbidden => "403 Forbidden\n",
            Status::NotFound => "404 Not Found\n",
            Status::MethodNotAllowed => "405 Method Not Allowed\n",
            Status::RequestTimeout => "408 Request Timeout: the request took too long\n",
            Status::LengthRequired => "411 Length Required: send Content-Length\n",
            Status::PayloadTooLarge => "413 Content Too Large\n",
            Status::UriTooLong => "414 URI Too Long\n",
            Status::UnsupportedMediaType => "415 Unsupported Media Type\n",
            Status::RangeNotSatisfiable => "416 Range Not Satisfiable\n",
            Status::HeadersTooLarge => "431 Request Header Fields Too Large\n",
            Status::InternalServerError => "500 Internal Server Error\n",
            Status::NotImplemented => "501 Not Implemented\n",
            Status::ServiceUnavailable => "503 Service Unavailable\n",
            Status::VersionNotSupported => "505 HTTP Version Not Supported\n",
            _ => "",
        }
    }

    /// True for 4xx and 5xx.
    pub const fn is_error(self) -> bool {
        self.code() >= 400
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.line()[9..].trim_end())
    }
}

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A simple request (`GET /path`): raw body back, no head.
    V09,
    V10,
    V11,
}

/// Request methods the server tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    /// Another method registered in RFC 9110 (`TRACE`, `CONNECT`): no route takes it (405).
    Other,
    /// Not a method this server knows (501).
    Unknown,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "TRACE" | "CONNECT" => Method::Other,
            _ => Method::Unknown,
        }
    }

    /// The set holding just this method (empty for `Other` and `Unknown`).
    pub const fn set(self) -> Methods {
        Methods(match self {
            Method::Get => Methods::GET.0,
            Method::Head => Methods::HEAD.0,
            Method::Post => Methods::POST.0,
            Method::Put => Methods::PUT.0,
            Method::Delete => Methods::DELETE.0,
            Method::Patch => Methods::PATCH.0,
            Method::Options => Methods::OPTIONS.0,
            Method::Other | Method::Unknown => 0,
        })
    }

    /// Methods whose request carries a body that a handler reads (`Content-Length` required).
    pub const fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// A set of methods, for routes and `Allow` headers: `Methods::GET | Methods::POST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const HEAD: Methods = Methods(2);
    pub const POST: Methods = Methods(4);
    pub const PUT: Methods = Methods(8);
    pub const DELETE: Methods = Methods(16);
    pub const PATCH: Methods = Methods(32);
    pub const OPTIONS: Methods = Methods(64);
    /// No method.
    pub const NONE: Methods = Methods(0);
    /// Every method a route can take.
    pub const ANY: Methods = Methods(127);
    const NAMES: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

    /// True when every method of `other` is in `self`.
    pub const fn contains(self, other: Methods) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    /// True for the empty set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a route of this set answers `method`; `HEAD` is answered wherever `GET` is.
    pub const fn allows(self, method: Method) -> bool {
        self.contains(method.set())
            || (matches!(method, Method::Head) && self.contains(Methods::GET))
    }
}

impl core::ops::BitOr for Methods {
    type Output = Methods;
    fn bitor(self, rhs: Methods) -> Methods {
        Methods(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Methods {
    fn bitor_assign(&mut self, rhs: Methods) {
        self.0 |= rhs.0;
    }
}

/// As an `Allow` value: `GET, HEAD`.
impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, name) in Self::NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                f.write_str(if first { "" } else { ", " })?;
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A parsed request head; strings borrow the slot's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'b> {
    pub method: Method,
    /// The method as sent (for the log).
    pub method_str: &'b str,
    /// The request target as sent.
    pub target: &'b str,
    pub version: Version,
    /// Bytes of the head, blank line included; the body (if any) starts here.
    pub head_len: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` header was sent.
    pub transfer_encoding: bool,
    /// `Content-Type` value.
    pub content_type: Option<&'b [u8]>,
    /// The client accepts a gzip body.
    pub accept_gzip: bool,
    /// `If-None-Match` value.
    pub if_none_match: Option<&'b [u8]>,
    /// `Range` value.
    pub range: Option<&'b [u8]>,
    /// `If-Range` value.
    pub if_range: Option<&'b [u8]>,
    /// The whole head as sent, for [`Request::header`].
    pub head: &'b [u8],
    /// The normalised path (percent-decoded, no dot segments); set by the server before a
    /// handler sees the request.
    pub path: &'b str,
    /// The query, without `?`.
    pub query: Option<&'b str>,
    /// The body, complete (the server collects it before calling the handler).
    pub body: &'b [u8],
}

/// Outcome of parsing the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub enum Parse<'b> {
    /// The head is not complete yet.
    Partial,
    /// A complete head.
    Done(Request<'b>),
    /// The bytes are not a request this server accepts; answer with this status and close.
    Reject(Status),
}

/// Parses the request head at the start of `buf`. `full` says the buffer can take no more
/// bytes, which turns a partial head into 414 (request line) or 431 (headers).
pub fn parse<const H: usize>(buf: &[u8], full: bool) -> Parse<'_> {
    let mut headers = [httparse::EMPTY_HEADER; H];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let (Some(method_str), Some(target), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Parse::Reject(Status::BadRequest);
            };
            let version = if minor == 0 {
                Version::V10
            } else {
                Version::V11
            };
            match headers_of(req.headers, version) {
                Ok(h) => Parse::Done(Request {
                    method: Method::from_token(method_str),
                    method_str,
                    target,
                    version,
                    head_len,
                    head: &buf[..head_len],
                    ..h
                }),
                Err(status) => Parse::Reject(status),
            }
        }
        Ok(httparse::Status::Partial) => {
            let line_done = buf.contains(&b'\n');
            if !line_done {
                // A simple request line that httparse is still waiting on is never partial
                // once its line ends, so only the length can end this wait.
                if full {
                    return Parse::Reject(Status::UriTooLong);
                }
            } else if full {
                return Parse::Reject(Status::HeadersTooLarge);
            }
            Parse::Partial
        }
        Err(httparse::Error::TooManyHeaders) => Parse::Reject(Status::HeadersTooLarge),
        Err(_) => request_line_without_version(buf, full),
    }
}

/// httparse rejected the head: an HTTP/0.9 simple request (no version), another version
/// (505), or garbage (400).
fn request_line_without_version(buf: &[u8], full: bool) -> Parse<'_> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        // httparse rejects a bad version token before the line ends only when it already
        // saw bytes that cannot start `HTTP/1.`; wait for the whole line to judge it.
        return if full {
            Parse::Reject(Status::UriTooLong)
        } else {
            Parse::Partial
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = core::str::from_utf8(line) else {
        return Parse::Reject(Status::BadRequest);
    };
    let mut parts = line.split(' ');
    let (method, target, version, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (method, target, version, rest) {
        (Some("GET"), Some(target), None, None) if target.starts_with('/') => {
            Parse::Done(Request {
                method: Method::Get,
                method_str: "GET",
                target,
                version: Version::V09,
                head_len: end + 1,
                head: &buf[..end + 1],
                ..Request::EMPTY
            })
        }
        (Some(_), Some(_), Some(v), None)
            if is_http_version(v) && !matches!(v, "HTTP/1.0" | "HTTP/1.1") =>
        {
            Parse::Reject(Status::VersionNotSupported)
        }
        _ => Parse::Reject(Status::BadRequest),
    }
}

/// `HTTP/d.d` (or `HTTP/d`), any digits.
fn is_http_version(v: &str) -> bool {
    let Some(num) = v.strip_prefix("HTTP/") else {
        return false;
    };
    let mut parts = num.split('.');
    let major = parts.next().unwrap_or("");
    let minor = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && minor.is_none_or(digits) && parts.next().is_none()
}

impl Request<'_> {
    /// A request with nothing set (for log lines of rejected input).
    pub const EMPTY: Request<'static> = Request {
        method: Method::Get,
        method_str: "",
        target: "",
        version: Version::V11,
        head_len: 0,
        keep_alive: false,
        content_length: None,
        transfer_encoding: false,
        content_type: None,
        accept_gzip: false,
        if_none_match: None,
        range: None,
        if_range: None,
        head: &[],
        path: "",
        query: None,
        body: &[],
    };
}

impl<'b> Request<'b> {
    /// The value of the first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers(name).next()
    }

    /// Every value of the header `name` (case-insensitive), trimmed, in the order sent (a
    /// `Connection: keep-alive` line and a `Connection: Upgrade` line, say).
    pub fn headers<'n>(&self, name: &'n str) -> impl Iterator<Item = &'b [u8]> + 'n
    where
        'b: 'n,
    {
        let lines = self.head.split(|&b| b == b'\n').skip(1);
        lines.filter_map(move |line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let value = line[colon + 1..]
                .strip_suffix(b"\r")
                .unwrap_or(&line[colon + 1..]);
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| trim(value))
        })
    }
}

/// The method and target of a request line that may be unfinished or too long (for log lines
/// of rejected requests): each is the run of token characters before its space, "" if none.
pub fn line_start(buf: &[u8]) -> (&str, &str) {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = printable(parts.next());
    let target = if method.is_empty() {
        ""
    } else {
        printable(parts.next())
    };
    (method, target)
}

/// `w` as a string of visible ASCII, else "".
fn printable(w: Option<&[u8]>) -> &str {
    w.and_then(|w| core::str::from_utf8(w).ok())
        .filter(|w| w.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
}

/// Reads the headers the server acts on, rejecting what RFC 9112 says to reject.
fn headers_of<'b>(
    headers: &[httparse::Header<'b>],
    version: Version,
) -> Result<Request<'b>, Status> {
    let mut r = Request::EMPTY;
    let mut hosts = 0;
    let mut unknown_coding = false;
    let mut close = false;
    let mut keep = false;
    for h in headers {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value).ok_or(Status::BadRequest)?;
            if r.content_length.is_some_and(|old| old != n) {
                return Err(Status::BadRequest);
            }
            r.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            r.transfer_encoding = true;
            // RFC 9112 6.1: chunked must be the last coding; others this server cannot decode.
            let last = tokens(value).last().unwrap_or(b"");
            unknown_coding |= !last.eq_ignore_ascii_case(b"chunked") || tokens(value).count() > 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            r.content_type = Some(value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            r.accept_gzip |= accepts_gzip(value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            r.if_none_match = Some(value);
        } else if name.eq_ignore_ascii_case("range") {
            r.range = Some(value);
        } else if name.eq_ignore_ascii_case("if-range") {
            r.if_range = Some(value);
        }
    }
    if hosts > 1 || (version == Version::V11 && hosts == 0) {
        return Err(Status::BadRequest);
    }
    if r.transfer_encoding && r.content_length.is_some() {
        return Err(Status::BadRequest);
    }
    if unknown_coding {
        return Err(Status::NotImplemented);
    }
    r.keep_alive = match version {
        Version::V11 => !close,
        Version::V10 => keep && !close,
        Version::V09 => false,
    };
    Ok(r)
}

/// `Content-Length`: digits only (a list of equal values is accepted as RFC 9110 allows).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in value.split(|&b| b == b',') {
        let n = number(trim(part))?;
        if result.is_some_and(|old| old != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// A decimal number of digits only (no sign, no space, not empty), None past `u64::MAX`. The
/// one digit parser of the core: lengths, ranges, dates, chat ids.
pub fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The byte of a `%XY` escape whose `X` and `Y` start `hex` (None: not two hex digits). The
/// one percent-decoder of the core: paths and form fields.
pub fn percent_byte(hex: &[u8]) -> Option<u8> {
    let digit = |c: &u8| (*c as char).to_digit(16);
    let (h, l) = (digit(hex.first()?)?, digit(hex.get(1)?)?);
    Some((h * 16 + l) as u8)
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Strips optional white space (SP, HTAB) from both ends.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `Accept-Encoding` lists gzip (or `*`) with a non-zero quality.
fn accepts_gzip(value: &[u8]) -> bool {
    tokens(value).any(|t| {
        let mut params = t.split(|&b| b == b';');
        let coding = trim(params.next().unwrap_or(b""));
        let named = coding.eq_ignore_ascii_case(b"gzip")
            || coding.eq_ignore_ascii_case(b"x-gzip")
            || coding == b"*";
        let zero = params.any(|p| {
            let p = trim(p);
            p.len() >= 2
                && p[..2].eq_ignore_ascii_case(b"q=")
                && p[2..].iter().all(|&b| b == b'0' || b == b'.')
        });
        named && !zero
    })
}

/// Splits a request target into path and query; accepts the absolute form
/// (`http://host/path?q`, RFC 9112 3.2.2) by dropping scheme and authority, where an empty path
/// is `/` and the query is kept (`http://host?q`).
pub fn split_target(target: &str) -> Result<(&str, Option<&str>), Status> {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        let head = t.as_bytes().get(..scheme.len());
        if t.len() > scheme.len() && head.is_some_and(|h| h.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            let rest = &t[scheme.len()..];
            // The authority ends at the first '/', '?' or '#'.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let after = &rest[end..];
            if !after.starts_with('/') {
                let query = after
                    .strip_prefix('?')
                    .map(|q| q.split('#').next().unwrap_or(q));
                return Ok(("/", query));
            }
            t = after;
        }
    }
    if !t.starts_with('/') {
        return Err(Status::BadRequest);
    }
    let t = t.split('#').next().unwrap_or(t);
    Ok(match t.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (t, None),
    })
}

/// Why a path could not be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Bad escape, NUL, backslash, control byte or invalid UTF-8: 400.
    Invalid,
    /// Longer than any path in the image: cannot exist (404).
    TooLong,
}

/// Percent-decodes `path` into `out` and removes dot segments and empty segments (RFC 3986
/// 5.2.4, clamped at the root), keeping a trailing slash. The result always starts with `/`
/// and never contains `..`, NUL or `\`.
pub fn normalize<const N: usize>(
    path: &str,
    out: &mut heapless::Vec<u8, N>,
) -> Result<(), PathError> {
    out.clear();
    let bytes = path.as_bytes();
    let mut segment = heapless::Vec::<u8, N>::new();
    let mut i = 0;
    let push_segment = |seg: &[u8], out: &mut heapless::Vec<u8, N>| -> Result<(), PathError> {
        match seg {
            b"" | b"." => {}
            b".." => {
                while let Some(b) = out.pop() {
                    if b == b'/' {
                        break;
                    }
                }
            }
            _ => {
                out.push(b'/').map_err(|_| PathError::TooLong)?;
                out.extend_from_slice(seg).map_err(|_| PathError::TooLong)?;
            }
        }
        Ok(())
    };
    let mut last_was_slash = false;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let b = percent_byte(&bytes[i + 1..]).ok_or(PathError::Invalid)?;
                i += 2;
                b
            }
            b => b,
        };
        i += 1;
        if b == 0 || b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::Invalid);
        }
        if b == b'/' {
            push_segment(&segment, out)?;
            segment.clear();
            last_was_slash = true;
        } else {
            segment.push(b).map_err(|_| PathError::TooLong)?;
            last_was_slash = false;
        }
    }
    let dir = last_was_slash || matches!(&segment[..], b"." | b"..");
    push_segment(&segment, out)?;
    if out.is_empty() || dir {
        out.push(b'/').map_err(|_| PathError::TooLong)?;
    }
    if core::str::from_utf8(out).is_err() {
        return Err(PathError::Invalid);
    }
    Ok(())
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Writes `Date: <IMF-fixdate>\r\n` for `unix` seconds since 1970 (RFC 9110 5.6.7).
pub fn write_date(w: &mut impl fmt::Write, unix: u64) -> fmt::Result {
    write_date_header(w, "Date", unix)
}

/// Writes `NAME: <IMF-fixdate>\r\n` (`Date`, `Last-Modified`).
pub fn write_date_header(w: &mut impl fmt::Write, name: &str, unix: u64) -> fmt::Result {
    let date = imf_fixdate(unix);
    w.write_str(name)?;
    w.write_str(": ")?;
    // Cannot fail: the bytes are ASCII.
    w.write_str(core::str::from_utf8(&date).unwrap_or_default())?;
    w.write_str("\r\n")
}

/// `unix` seconds since 1970 as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`: 29 bytes,
/// filled in place (no `core::fmt`: it is on every response's path).
pub fn imf_fixdate(unix: u64) -> [u8; 29] {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in u64 arithmetic.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    // Four digits: an IMF-fixdate has no room for year 10000.
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    out[..3].copy_from_slice(DAYS[(days % 7) as usize].as_bytes());
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, secs / 3600);
    two(&mut out, 20, secs / 60 % 60);
    two(&mut out, 23, secs % 60);
    out
}

/// `n` in decimal into `buf`; the digits (no `core::fmt`).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since 1970. Other
/// forms are None: RFC 9110 13.1.3 says to ignore a date that cannot be parsed.
pub fn parse_date(value: &[u8]) -> Option<u64> {
    let v = core::str::from_utf8(trim(value)).ok()?;
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let num = |s: &str| number(s.as_bytes());
    let (day, year) = (num(day)?, num(year)?);
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':');
    let (h, m, s) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if hms.next().is_some()
        || year < 1970
        || !(1..=month_days).contains(&day)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // Days from civil (the inverse of the algorithm above).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<std::string::String, PathError> {
        let mut out = heapless::Vec::<u8, 64>::new();
        normalize(p, &mut out).map(|()| std::string::String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a/b").unwrap(), "/a/b");
        assert_eq!(norm("/a/b/").unwrap(), "/a/b/");
        assert_eq!(norm("/a/../b").unwrap(), "/b");
        assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(norm("/a/%2e%2e/%2E%2e/x").unwrap(), "/x");
        assert_eq!(norm("//a///b").unwrap(), "/a/b");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/img/my%20car.jpeg").unwrap(), "/img/my car.jpeg");
        assert_eq!(norm("/a%00b"), Err(PathError::Invalid));
        assert_eq!(norm("/a\\b"), Err(PathError::Invalid));
        assert_eq!(norm("/a%5cb"), Err(PathError::Invalid));
        assert_eq!(norm("/a%zz"), Err(PathError::Invalid));
        assert_eq!(norm("/a%2"), Err(PathError::Invalid));
        assert_eq!(norm("/%c0%af"), Err(PathError::Invalid));
        assert_eq!(norm(&"/x".repeat(40)), Err(PathError::TooLong));
    }

    #[test]
    fn dates() {
        let date = |unix| {
            let mut s = std::string::String::new();
            write_date(&mut s, unix).unwrap();
            s
        };
        assert_eq!(date(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        assert_eq!(date(784_111_777), "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(date(951_782_400), "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n");
        assert_eq!(
            date(1_795_305_600),
            "Date: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
        );
    }

    #[test]
    fn decimals() {
        let mut buf = [0; 20];
        for n in [0, 7, 10, 1024, 10_485_760, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), std::format!("{n}").as_bytes());
        }
    }

    #[test]
    fn line_starts() {
        assert_eq!(line_start(b"GET /a HTTP/1.1\r\nHost"), ("GET", "/a"));
        assert_eq!(line_start(b"GET /aaaa"), ("GET", "/aaaa"));
        assert_eq!(line_start(b"\x16\x03\x01"), ("", ""));
        assert_eq!(line_start(b""), ("", ""));
    }

    #[test]
    fn parsed_dates_round_trip() {
        for unix in [0, 784_111_777, 951_782_400, 1_795_305_600, 4_102_444_799] {
            let mut s = std::string::String::new();
            write_date_header(&mut s, "X", unix).unwrap();
            let value = s.trim_end().strip_prefix("X: ").unwrap();
            assert_eq!(parse_date(value.as_bytes()), Some(unix), "{value}");
        }
        assert_eq!(parse_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_date(b"Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse_date(b"Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_date(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_date(b"Sun, 36 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn versions() {
        assert!(is_http_version("HTTP/2.0"));
        assert!(is_http_version("HTTP/3"));
        assert!(!is_http_version("HTTP/x.1"));
        assert!(!is_http_version("HTTQ/1.1"));
    }

    /// RFC 9112 3.2.2: the absolute form; an empty path is "/", and the query stays.
    #[test]
    fn absolute_form_without_a_path_keeps_its_query() {
        assert_eq!(
            split_target("http://host?since=5"),
            Ok(("/", Some("since=5")))
        );
        assert_eq!(split_target("http://host#frag"), Ok(("/", None)));
        assert_eq!(
            split_target("HTTP://h:80/chat?since=2"),
            Ok(("/chat", Some("since=2")))
        );
    }

    /// RFC 9110 5.6.7 and 13.1.3: an impossible date is not a date, and is ignored.
    #[test]
    fn impossible_dates_are_not_dates() {
        assert_eq!(parse_date(b"Sat, 31 Feb 2026 00:00:00 GMT"), None);
        assert_eq!(parse_date(b"Thu, 31 Apr 2026 00:00:00 GMT"), None);
        assert_eq!(parse_date(b"Mon, 29 Feb 2027 00:00:00 GMT"), None);
        assert!(
            parse_date(b"Sun, 29 Feb 2032 00:00:00 GMT").is_some(),
            "a leap day"
        );
        assert!(
            parse_date(b"Tue, 29 Feb 2000 00:00:00 GMT").is_some(),
            "2000 was leap"
        );
        assert_eq!(
            parse_date(b"Thu, 29 Feb 2100 00:00:00 GMT"),
            None,
            "2100 is not"
        );
        assert_eq!(
            parse_date(b"Sat, 28 Feb 2026 00:00:00 GMT"),
            Some(1_772_236_800)
        );
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a?b=1"), Ok(("/a", Some("b=1"))));
        assert_eq!(split_target("HTTP://host/x"), Ok(("/x", None)));
        assert_eq!(split_target("http://host"), Ok(("/", None)));
        assert_eq!(split_target("x"), Err(Status::BadRequest));
        // Found by fuzzing: a multi-byte character where the scheme would end.
        assert_eq!(split_target("/@//HP\u{462}"), Ok(("/@//HP\u{462}", None)));
        assert!(matches!(
            parse::<8>("GET /@//HP\u{462}\n".as_bytes(), false),
            Parse::Done(_)
        ));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(b"gzip, deflate, br"));
        assert!(accepts_gzip(b"br;q=1.0, gzip;q=0.8"));
        assert!(!accepts_gzip(b"gzip;q=0"));
        assert!(!accepts_gzip(b"identity"));
        assert!(accepts_gzip(b"*"));
    }

    #[test]
    fn headers_and_methods() {
        let Parse::Done(r) = parse::<8>(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key:  k1 \r\n\r\n",
            false,
        ) else {
            panic!("not parsed");
        };
        assert_eq!(r.header("x-api-key"), Some(&b"k1"[..]));
        assert_eq!(r.header("host"), Some(&b"t"[..]));
        assert_eq!(r.header("accept"), None);
        let set = Methods::GET | Methods::POST;
        assert_eq!(std::format!("{set}"), "GET, POST");
        assert!(set.allows(Method::Head));
        assert!(!set.allows(Method::Put));
        assert!(!Methods::ANY.allows(Method::Other));
    }

    #[test]
    fn content_length() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b"42, 42"), Some(42));
        assert_eq!(parse_content_length(b"42, 43"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"+1"), None);
        assert_eq!(parse_content_length(b"99999999999999999999999"), None);
    }
}
