//! From a parsed request to a response: the rules that hold for every route (501, target and
//! path checks, 405 with `Allow`, body framing 411/413), the handler call (500 when it fails),
//! then validators and ranges on what it returned (304, 206, 416); and the response head.
//!
//! Decisions and formatting only: no sockets, no clock.

use crate::config::MAX_PATH;
use crate::handler::{Body, Context, Found, Reply, Router};
use crate::http::{self, Method, PathError, Request, Status, Version};

/// What to do with a parsed head.
// Lives on the stack for one request, and there is no heap to box it in.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// Answer with this; the request used `body` bytes after its head.
    Reply(Answer, usize),
    /// The body is not all here yet.
    NeedBody,
}

/// A reply ready for its head: the handler's reply after the server's rules.
pub(crate) struct Answer {
    pub(crate) reply: Reply,
    /// The route whose handler renders a [`Body::Rendered`] body.
    pub(crate) route: usize,
    /// `Accept-Ranges: bytes` goes into the head.
    pub(crate) ranges: bool,
}

impl Answer {
    fn plain(reply: Reply) -> Answer {
        Answer {
            reply,
            route: usize::MAX,
            ranges: false,
        }
    }
}

/// Decides the response to `req`; `rest` holds what arrived after the head.
pub(crate) fn answer(
    req: &Request,
    rest: &[u8],
    room: usize,
    router: &mut Router,
    cx: &Context,
) -> Outcome {
    let error = |status| Outcome::Reply(Answer::plain(Reply::error(status)), 0);
    if req.method == Method::Unknown {
        return error(Status::NotImplemented);
    }
    if req.method == Method::Options && req.target == "*" {
        // The server as a whole (RFC 9110 9.3.7): what some route takes.
        let reply = Reply::new(Status::Ok, "", Body::Static(&[])).header("Allow", router.methods());
        return Outcome::Reply(Answer::plain(reply), 0);
    }
    let (path, query) = match http::split_target(req.target) {
        Ok(p) => p,
        Err(status) => return error(status),
    };
    let mut norm = heapless::Vec::<u8, MAX_PATH>::new();
    match http::normalize(path, &mut norm) {
        Ok(()) => {}
        Err(PathError::Invalid) => return error(Status::BadRequest),
        Err(PathError::TooLong) => return error(Status::UriTooLong),
    }
    // normalize() checked UTF-8.
    let path = core::str::from_utf8(&norm).unwrap_or("/");
    let (route, max_body) = match router.find(req.method, path) {
        Found::Route(route, max_body) => (route, max_body),
        Found::NotAllowed(allow) => {
            let reply = Reply::error(Status::MethodNotAllowed).header("Allow", allow);
            return Outcome::Reply(Answer::plain(reply), 0);
        }
        Found::Nothing => return error(Status::NotFound),
    };
    // Methods that carry a body get it whole before the handler runs; others leave any body
    // unread (the connection then closes after the response).
    let body = if req.method.has_body() {
        if req.transfer_encoding {
            return error(Status::LengthRequired);
        }
        let Some(len) = req.content_length else {
            return error(Status::LengthRequired);
        };
        if len > max_body.min(room) as u64 {
            return error(Status::PayloadTooLarge);
        }
        let len = len as usize;
        if rest.len() < len {
            return Outcome::NeedBody;
        }
        &rest[..len]
    } else {
        &[][..]
    };
    let full = Request {
        path,
        query,
        body,
        ..*req
    };
    let reply = match router.handle(route, &full, cx) {
        Ok(reply) if reply.overflow => {
            crate::logging::error!("{}: reply headers overflow, answered 500", path);
            Reply::error(Status::InternalServerError)
        }
        Ok(reply) => reply,
        Err(e) => {
            crate::logging::error!("{}: handler failed: {e}", path);
            Reply::error(Status::InternalServerError)
        }
    };
    #[cfg(feature = "ws")]
    let reply = upgrade(&full, reply);
    // A static 200 to GET or HEAD is a representation the server validates and cuts.
    let representation = matches!(req.method, Method::Get | Method::Head)
        && reply.status == Status::Ok
        && matches!(reply.body, Body::Static(_));
    let reply = if representation {
        conditional(req, reply)
    } else {
        reply
    };
    Outcome::Reply(
        Answer {
            ranges: representation && reply.status != Status::RangeNotSatisfiable,
            reply,
            route,
        },
        body.len(),
    )
}

/// A handler accepted a WebSocket: 101 with the accept key when the request is a valid
/// handshake, else 400 (with `Sec-WebSocket-Version: 13` when only the version is wrong).
#[cfg(feature = "ws")]
fn upgrade(req: &Request, reply: Reply) -> Reply {
    if !matches!(reply.body, Body::WebSocket { .. }) {
        return reply;
    }
    match crate::ws::check_upgrade(req) {
        Ok(accept) => {
            // The key is base64: ASCII.
            let accept = core::str::from_utf8(&accept).unwrap_or("");
            Reply {
                status: Status::SwitchingProtocols,
                content_type: "",
                etag: None,
                last_modified: None,
                headers: "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                ..reply
            }
            .header("Sec-WebSocket-Accept", accept)
        }
        Err(why) => {
            crate::logging::debug!(
                "{}: not a valid WebSocket handshake, answered 400",
                req.path
            );
            let reply = Reply::error(Status::BadRequest);
            match why {
                crate::ws::Refusal::Version => reply.with_headers("Sec-WebSocket-Version: 13\r\n"),
                crate::ws::Refusal::BadRequest => reply,
            }
        }
    }
}

/// `If-None-Match` (304), `Range` and `If-Range` (206, 416) on a 200 reply.
fn conditional(req: &Request, reply: Reply) -> Reply {
    // If-None-Match decides when sent; If-Modified-Since only without it (RFC 9110 13.1.3).
    let not_modified = match (req.if_none_match, reply.etag) {
        (Some(inm), Some(etag)) => etag_matches(inm, etag),
        (Some(_), None) => false,
        (None, _) => req
            .header("if-modified-since")
            .and_then(http::parse_date)
            .zip(reply.last_modified)
            .is_some_and(|(since, modified)| modified <= since),
    };
    if not_modified {
        return Reply {
            status: Status::NotModified,
            body: Body::Static(&[]),
            ..reply
        };
    }
    let Body::Static(data) = reply.body else {
        return reply;
    };
    // If-Range: only a strong match with the current ETag keeps the range.
    let range = req.range.filter(|_| {
        req.method == Method::Get
            && req
                .if_range
                .is_none_or(|v| reply.etag.is_some_and(|e| v == e.as_bytes()))
    });
    let len = data.len() as u64;
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeSpec::Ignore) => reply,
        Some(RangeSpec::Unsatisfiable) => Reply::error(Status::RangeNotSatisfiable)
            .header("Content-Range", format_args!("bytes */{len}")),
        Some(RangeSpec::Bytes(a, b)) => Reply {
            status: Status::PartialContent,
            body: Body::Static(&data[a as usize..=b as usize]),
            ..reply
        }
        .header("Content-Range", format_args!("bytes {a}-{b}/{len}")),
    }
}

/// Formats the response head of `answer` into `out`; false when it does not fit.
pub(crate) fn write_head<const H: usize>(
    out: &mut heapless::Vec<u8, H>,
    answer: &Answer,
    length: usize,
    keep_alive: bool,
    version: Version,
    unix: Option<u64>,
) -> bool {
    let reply = &answer.reply;
    let mut head = HeadWriter(out);
    let fields = [
        ("Content-Type", reply.content_type),
        ("ETag", reply.etag.unwrap_or("")),
        ("Accept-Ranges", if answer.ranges { "bytes" } else { "" }),
    ];
    head.put(reply.status.line())
        && unix.is_none_or(|unix| http::write_date(&mut head, unix).is_ok())
        && fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .all(|(n, v)| head.put(n) && head.put(": ") && head.put(v) && head.put("\r\n"))
        && reply
            .last_modified
            .is_none_or(|t| http::write_date_header(&mut head, "Last-Modified", t).is_ok())
        && head.put(reply.headers)
        && head.put(&reply.dynamic)
        && (reply.status == Status::NotModified
            || reply.status == Status::SwitchingProtocols
            || matches!(reply.body, Body::Stream { .. })
            || (head.put("Content-Length: ")
                && head.bytes(http::decimal(length as u64, &mut [0; 20]))
                && head.put("\r\n")))
        && head.put(match (keep_alive, version) {
            // The upgrade's own `Connection: Upgrade` is in its headers.
            _ if reply.status == Status::SwitchingProtocols => "",
            (false, _) => "Connection: close\r\n",
            (true, Version::V10) => "Connection: keep-alive\r\n",
            (true, _) => "",
        })
        && head.put("\r\n")
}

/// Appends to a response head; reports overflow instead of panicking.
struct HeadWriter<'b, const H: usize>(&'b mut heapless::Vec<u8, H>);

impl<const H: usize> HeadWriter<'_, H> {
    fn put(&mut self, s: &str) -> bool {
        self.bytes(s.as_bytes())
    }

    fn bytes(&mut self, b: &[u8]) -> bool {
        self.0.extend_from_slice(b).is_ok()
    }
}

impl<const H: usize> core::fmt::Write for HeadWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.put(s) {
            Ok(())
        } else {
            Err(core::fmt::Error)
        }
    }
}

/// `If-None-Match`: `*` or a list containing `etag` (weak comparison, as RFC 9110 says).
fn etag_matches(header: &[u8], etag: &str) -> bool {
    http::tokens(header).any(|t| {
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        t == b"*" || t == etag.as_bytes()
    })
}

/// A `Range` header judged against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve the full representation (no valid single byte range).
    Ignore,
    /// 416.
    Unsatisfiable,
    /// Inclusive first and last byte.
    Bytes(u64, u64),
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` (RFC 9110 14.1.2): the unit is
/// case-insensitive, a first position past the end is 416 (14.1.3), a suffix longer than the
/// representation selects all of it. Several ranges, other units and bad syntax are ignored
/// (the full 200 is sent), as RFC 9110 allows.
pub fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    const UNIT: &[u8] = b"bytes=";
    let Some(spec) = value
        .get(..UNIT.len())
        .filter(|u| u.eq_ignore_ascii_case(UNIT))
        .map(|_| &value[UNIT.len()..])
    else {
        return RangeSpec::Ignore;
    };
    let spec = http::trim(spec);
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    // Digits too many for a u64 are a number past any end.
    let num = |s: &[u8]| match http::number(s) {
        Some(n) => Some(n),
        None if !s.is_empty() && s.iter().all(u8::is_ascii_digit) => Some(u64::MAX),
        None => None,
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (first.is_empty(), last.is_empty()) {
        // -n: the last n bytes (all of them when n is larger).
        (true, false) => match num(last) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(len.saturating_sub(n), len - 1),
            None => RangeSpec::Ignore,
        },
        // a- or a-b.
        (false, _) => {
            let Some(a) = num(first) else {
                return RangeSpec::Ignore;
            };
            let b = if last.is_empty() {
                u64::MAX
            } else {
                match num(last) {
                    Some(b) if b >= a => b,
                    _ => return RangeSpec::Ignore,
                }
            };
            if a >= len {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes(a, b.min(len - 1))
            }
        }
        (true, true) => RangeSpec::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), RangeSpec::Bytes(0, 9));
        assert_eq!(parse_range(b"bytes=90-", 100), RangeSpec::Bytes(90, 99));
        assert_eq!(parse_range(b"bytes=-10", 100), RangeSpec::Bytes(90, 99));
        assert_eq!(parse_range(b"bytes=-1000", 100), RangeSpec::Bytes(0, 99));
        assert_eq!(parse_range(b"bytes=50-1000", 100), RangeSpec::Bytes(50, 99));
        assert_eq!(parse_range(b"bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=9-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=0-1,5-6", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"items=0-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=x-1", 100), RangeSpec::Ignore);
        assert_eq!(
            parse_range(b"bytes=0-99999999999999999999999", 100),
            RangeSpec::Bytes(0, 99)
        );
    }

    /// RFC 9110 14.1: "range units are compared case-insensitively".
    #[test]
    fn range_unit_is_case_insensitive() {
        assert_eq!(parse_range(b"Bytes=0-9", 100), RangeSpec::Bytes(0, 9));
        assert_eq!(parse_range(b"BYTES=-5", 100), RangeSpec::Bytes(95, 99));
    }

    /// RFC 9110 14.1.3: a first-pos past the end is unsatisfiable (416), however many digits.
    #[test]
    fn a_first_position_past_the_end_is_416() {
        assert_eq!(parse_range(b"bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=150-200", 100), RangeSpec::Unsatisfiable);
        assert_eq!(
            parse_range(b"bytes=99999999999999999999999-", 100),
            RangeSpec::Unsatisfiable
        );
    }

    /// RFC 9110 14.1.3: "If the selected representation is shorter than the specified
    /// suffix-length, the entire representation is used."
    #[test]
    fn a_suffix_longer_than_the_file_is_the_whole_file() {
        assert_eq!(parse_range(b"bytes=-1000", 100), RangeSpec::Bytes(0, 99));
        assert_eq!(
            parse_range(b"bytes=-99999999999999999999999", 100),
            RangeSpec::Bytes(0, 99)
        );
    }

    #[test]
    fn etags() {
        assert!(etag_matches(b"\"a\", \"b\"", "\"b\""));
        assert!(etag_matches(b"W/\"b\"", "\"b\""));
        assert!(etag_matches(b"*", "\"b\""));
        assert!(!etag_matches(b"\"a\"", "\"b\""));
    }
}
