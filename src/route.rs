//! Routing: from a parsed request to the [`Reply`] the server sends: files of the image
//! (with ranges, validators and gzip), directory redirects, the chat API and `/status`.
//!
//! Decisions only: no sockets, no time, no bytes written. The server turns a `Reply` into a
//! response head and a body it streams.

use core::fmt::Write as _;

use crate::chat::{self, Chat, ChatReply};
use crate::config::REQUEST_BUF;
use crate::http::{self, Method, PathError, Request, Status};
use crate::image::{self, Entry, File};

/// The body of a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Content {
    /// Static bytes: a file or a status text.
    Static(&'static [u8]),
    /// `{"id":N}` for a new chat message.
    Created(u32),
    /// The JSON of `GET /chat`.
    Chat(ChatReply),
    /// The JSON of `GET /status`, filled in when the response starts.
    Status,
}

impl Content {
    pub(crate) fn len(&self, chat: &Chat) -> usize {
        match self {
            Content::Static(d) => d.len(),
            Content::Created(id) => {
                let mut num = heapless::String::<12>::new();
                // Cannot fail: a u32 has at most 10 digits.
                let _ = write!(num, "{id}");
                num.len() + "{\"id\":}\n".len()
            }
            Content::Chat(r) => r.len(chat),
            Content::Status => 0,
        }
    }
}

/// `Location` of a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Location {
    None,
    /// A directory's path without its trailing slash (301).
    Directory(&'static str),
    /// The chat message just posted (201).
    Message(u32),
}

/// `Content-Range` of a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ContentRange {
    /// First and last byte, and the full length (206).
    Bytes(u64, u64, u64),
    /// The full length (416).
    Unsatisfied(u64),
}

/// A response, decided before any byte is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    /// Ready-made header lines (a file's block or a content type).
    pub(crate) headers: &'static str,
    /// More fixed header lines (`Allow`, `Content-Encoding`...).
    pub(crate) extra: &'static str,
    pub(crate) location: Location,
    pub(crate) content_range: Option<ContentRange>,
    pub(crate) content: Content,
}

const TEXT_PLAIN: &str = "Content-Type: text/plain; charset=utf-8\r\n";
const JSON: &str = "Content-Type: application/json\r\nCache-Control: no-store\r\n";

impl Reply {
    pub(crate) fn error(status: Status) -> Reply {
        Reply {
            status,
            headers: TEXT_PLAIN,
            extra: "",
            location: Location::None,
            content_range: None,
            content: Content::Static(status.text().as_bytes()),
        }
    }

    fn not_found() -> Reply {
        match image::find("/404.html") {
            Some(f) => Reply {
                headers: "Content-Type: text/html; charset=utf-8\r\n",
                content: Content::Static(f.body),
                ..Reply::error(Status::NotFound)
            },
            None => Reply::error(Status::NotFound),
        }
    }

    /// Error statuses after which the connection may stay open.
    pub(crate) fn keeps_connection(&self) -> bool {
        matches!(
            self.status,
            Status::NotFound | Status::MethodNotAllowed | Status::RangeNotSatisfiable
        )
    }
}

/// What to do with a parsed head.
pub(crate) enum Route {
    /// Answer with this.
    Reply(Reply),
    /// A chat post consumed this many body bytes; answer with this.
    Posted(Reply, usize),
    /// The body is not all here yet.
    NeedBody,
}

/// Decides the response to a parsed request; `body` holds what arrived after the head.
pub(crate) fn route(req: &Request, body: &[u8], chat: &mut Chat) -> Route {
    if req.method == Method::Unknown {
        return Route::Reply(Reply::error(Status::NotImplemented));
    }
    let (path, query) = match http::split_target(req.target) {
        Ok(p) => p,
        Err(status) => return Route::Reply(Reply::error(status)),
    };
    let mut norm = heapless::Vec::<u8, { image::MAX_PATH_LEN + 8 }>::new();
    match http::normalize(path, &mut norm) {
        Ok(()) => {}
        Err(PathError::Invalid) => return Route::Reply(Reply::error(Status::BadRequest)),
        Err(PathError::TooLong) => return Route::Reply(method_check(req, Reply::not_found())),
    }
    // normalize() checked UTF-8.
    let norm = core::str::from_utf8(&norm).unwrap_or("/");
    if norm == "/chat" {
        return chat_route(req, query, body, chat);
    }
    if norm == "/status" {
        return Route::Reply(method_check(
            req,
            Reply {
                status: Status::Ok,
                headers: JSON,
                content: Content::Status,
                ..Reply::error(Status::Ok)
            },
        ));
    }
    Route::Reply(match image::lookup(norm) {
        None => method_check(req, Reply::not_found()),
        Some(Entry::Directory) => {
            // The directory's own prefix inside a static path of the image.
            let dir = image::FILES
                .iter()
                .find(|f| f.path.starts_with(norm))
                .map_or(Location::None, |f| {
                    Location::Directory(&f.path[..norm.len()])
                });
            method_check(
                req,
                Reply {
                    location: dir,
                    content: Content::Static(&[]),
                    ..Reply::error(Status::MovedPermanently)
                },
            )
        }
        Some(Entry::File(file)) => method_check(req, serve_file(req, file)),
    })
}

/// `GET /chat?since=N` and `POST /chat`.
fn chat_route(req: &Request, query: Option<&str>, body: &[u8], chat: &mut Chat) -> Route {
    let error = |status| Route::Reply(Reply::error(status));
    match req.method {
        Method::Get | Method::Head => match chat::parse_since(query) {
            Some(since) => Route::Reply(Reply {
                status: Status::Ok,
                headers: JSON,
                content: Content::Chat(ChatReply::new(chat, since)),
                ..Reply::error(Status::Ok)
            }),
            None => error(Status::BadRequest),
        },
        Method::Post => {
            let form = req.content_type.is_some_and(|t| {
                let essence = t.split(|&b| b == b';').next().unwrap_or(b"");
                http::trim(essence).eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            });
            if req.transfer_encoding {
                return error(Status::LengthRequired);
            }
            let Some(len) = req.content_length else {
                return error(Status::LengthRequired);
            };
            if !form {
                return error(Status::UnsupportedMediaType);
            }
            if len > chat::MAX_FORM as u64 || req.head_len + len as usize > REQUEST_BUF {
                return error(Status::PayloadTooLarge);
            }
            let len = len as usize;
            if body.len() < len {
                return Route::NeedBody;
            }
            let reply = match chat.post(&body[..len]) {
                Ok(id) => {
                    log::info!("chat: message {id} posted");
                    Reply {
                        status: Status::Created,
                        headers: JSON,
                        location: Location::Message(id),
                        content: Content::Created(id),
                        ..Reply::error(Status::Created)
                    }
                }
                Err(chat::PostError::Invalid) => Reply::error(Status::BadRequest),
                Err(chat::PostError::TooLong) => Reply::error(Status::PayloadTooLarge),
            };
            Route::Posted(reply, len)
        }
        _ => Route::Reply(Reply {
            extra: "Allow: GET, POST\r\n",
            ..Reply::error(Status::MethodNotAllowed)
        }),
    }
}

/// Files and redirects allow GET and HEAD only.
fn method_check(req: &Request, reply: Reply) -> Reply {
    match req.method {
        Method::Get | Method::Head => reply,
        _ => Reply {
            extra: "Allow: GET, HEAD\r\n",
            ..Reply::error(Status::MethodNotAllowed)
        },
    }
}

/// 200, 206, 304 or 416 for a file, with gzip when the client takes it.
fn serve_file(req: &Request, file: &'static File) -> Reply {
    // The representation: gzip for clients that take it, else the bytes as they are.
    let (body, etag, headers, extra) = match &file.gzip {
        Some(gz) if req.accept_gzip => (
            gz.body,
            gz.etag,
            gz.headers,
            "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
        ),
        Some(_) => (
            file.body,
            file.etag,
            file.headers,
            "Vary: Accept-Encoding\r\n",
        ),
        None => (file.body, file.etag, file.headers, ""),
    };
    let reply = Reply {
        status: Status::Ok,
        headers,
        extra,
        location: Location::None,
        content_range: None,
        content: Content::Static(body),
    };
    if req.if_none_match.is_some_and(|inm| etag_matches(inm, etag)) {
        return Reply {
            status: Status::NotModified,
            content: Content::Static(&[]),
            ..reply
        };
    }
    let range = req
        .range
        .filter(|_| req.method == Method::Get && req.if_range.is_none_or(|v| v == etag.as_bytes()));
    let len = body.len() as u64;
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeSpec::Ignore) => reply,
        Some(RangeSpec::Unsatisfiable) => Reply {
            content_range: Some(ContentRange::Unsatisfied(len)),
            ..Reply::error(Status::RangeNotSatisfiable)
        },
        Some(RangeSpec::Bytes(a, b)) => Reply {
            status: Status::PartialContent,
            content_range: Some(ContentRange::Bytes(a, b, len)),
            content: Content::Static(&body[a as usize..=b as usize]),
            ..reply
        },
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

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`. Several ranges, other units and bad syntax are
/// ignored (the full 200 is sent), as RFC 9110 allows.
pub fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    let Some(spec) = value.strip_prefix(b"bytes=") else {
        return RangeSpec::Ignore;
    };
    let spec = http::trim(spec);
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (first.is_empty(), last.is_empty()) {
        // -n: the last n bytes.
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
                    // Huge values saturate rather than wrap; they mean "to the end".
                    None if last.iter().all(u8::is_ascii_digit) => u64::MAX,
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
        assert_eq!(
            parse_range(b"bytes=99999999999999999999999-", 100),
            RangeSpec::Ignore
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
