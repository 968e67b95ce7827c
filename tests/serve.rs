//! The server from the outside: files, methods, versions and every error row of docs/design.md,
//! over an in-process network on a simulated clock.

mod common;

use common::{get_close, image_files, Opts, Response, Sim};
use smoltcp::time::Duration;

#[test]
fn every_file_comes_back_byte_exact_with_its_type() {
    let mut sim: Sim = Sim::new();
    let files = image_files();
    assert!(files.len() >= 11, "image has {} files", files.len());
    for (path, bytes) in &files {
        let r = sim.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(&r.body, bytes, "{path}: body differs");
        assert_eq!(r.header("content-length"), Some(&*bytes.len().to_string()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let etag = r.header("etag").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let ext = path.rsplit('.').next().unwrap();
        let want = match ext {
            "html" | "htm" => "text/html; charset=utf-8",
            "jpg" | "jpeg" => "image/jpeg",
            "mp4" => "video/mp4",
            "pdf" => "application/pdf",
            "msi" => "application/x-msi",
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            _ => continue,
        };
        assert_eq!(r.header("content-type"), Some(want), "{path}");
    }
}

#[test]
fn root_and_directories() {
    let mut sim: Sim = Sim::new();
    let index = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fs_image/index.html")).unwrap();
    let r = sim.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, index);
    let r = sim.get("/text/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fs_image/text/index.html"
        ))
        .unwrap()
    );
    let r = sim.get("/text");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/text/"));
    // A directory without index.html is not listed.
    assert_eq!(sim.get("/img/").status, 404);
}

#[test]
fn ten_clients_at_once_all_succeed() {
    let mut sim: Sim = Sim::new();
    let files = image_files();
    let picks: Vec<_> = files.iter().cycle().take(10).collect();
    for (path, _) in &picks {
        sim.open(&get_close(path), Opts::default());
    }
    assert!(sim.run(Duration::from_secs(60)));
    for (c, (path, bytes)) in sim.conns.iter().zip(&picks) {
        let r = Response::parse(&c.received).unwrap_or_else(|| panic!("{path}: no response"));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(&r.body, bytes, "{path}");
    }
    assert_eq!(sim.free_slots(), 10);
}

#[test]
fn http09_simple_request_gets_the_raw_body() {
    let mut sim: Sim = Sim::new();
    let raw = sim.exchange(b"GET /text/text.htm\r\n");
    let want = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fs_image/text/text.htm"
    ))
    .unwrap();
    assert_eq!(raw, want);
    // Unknown path: the 404 page, still without a head.
    let raw = sim.exchange(b"GET /nope\n");
    let want = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fs_image/404.html")).unwrap();
    assert_eq!(raw, want);
}

#[test]
fn head_has_get_headers_and_no_body() {
    let mut sim: Sim = Sim::new();
    let get = sim.get("/img/car.jpeg");
    let raw = sim.exchange(b"HEAD /img/car.jpeg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let head = Response::parse_with(&raw, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.len, raw.len(), "HEAD must send no body");
    for name in ["content-type", "content-length", "etag", "accept-ranges"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
}

/// Request bytes, expected status, and a header the response must carry.
type Row<'a> = (&'a [u8], u16, Option<(&'a str, &'a str)>);

/// One row of the status table: request bytes -> status (and a header that must be there).
fn row(sim: &mut Sim, request: &[u8], status: u16, header: Option<(&str, &str)>) {
    let raw = sim.exchange(request);
    let r = Response::parse(&raw).unwrap_or_else(|| {
        panic!(
            "{:?}: unparsable response {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&raw)
        )
    });
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(request));
    if let Some((name, value)) = header {
        assert_eq!(
            r.header(name),
            Some(value),
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn error_rows_of_the_status_table() {
    let mut sim: Sim = Sim::new();
    let cases: &[Row] = &[
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, None),
        (
            b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            405,
            Some(("allow", "GET, HEAD")),
        ),
        (
            b"PUT /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
            405,
            Some(("allow", "GET, HEAD")),
        ),
        (
            b"DELETE /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            405,
            Some(("allow", "GET, HEAD")),
        ),
        (b"BREW /index.html HTTP/1.1\r\nHost: t\r\n\r\n", 501, None),
        (b"get /index.html HTTP/1.1\r\nHost: t\r\n\r\n", 501, None),
        (b"GET /index.html HTTP/1.1\r\n\r\n", 400, None),
        (
            b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            None,
        ),
        (b"GET /index.html HTTP/2.0\r\nHost: t\r\n\r\n", 505, None),
        (b"GET /index.html HTTP/1.2\r\nHost: t\r\n\r\n", 505, None),
        (b"GET /index.html HTTX/1.1\r\nHost: t\r\n\r\n", 400, None),
        (b"GET /index.html HTTP/1.1\r\nHost t\r\n\r\n", 400, None),
        (b"GET /index.html HTTP/1.1\r\nHost : t\r\n\r\n", 400, None),
        (b"GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400, None),
        (b"GET /a\\b HTTP/1.1\r\nHost: t\r\n\r\n", 400, None),
        (b"GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400, None),
        (b"GET index.html HTTP/1.1\r\nHost: t\r\n\r\n", 400, None),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            None,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            400,
            None,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            None,
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            400,
            None,
        ),
    ];
    for (req, status, header) in cases {
        row(&mut sim, req, *status, *header);
    }
    assert_eq!(sim.free_slots(), 10, "a slot leaked");
}

#[test]
fn traversal_never_leaves_the_image() {
    let mut sim: Sim = Sim::new();
    let index = sim.get("/index.html").body;
    for path in [
        "/../index.html",
        "/%2e%2e/index.html",
        "/img/../../../index.html",
        "/./index.html",
        "//index.html",
    ] {
        let r = sim.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, index, "{path}");
    }
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
    ] {
        assert_eq!(sim.get(path).status, 404, "{path}");
    }
}

#[test]
fn too_long_request_line_is_414_and_head_is_431_readable() {
    let mut sim: Sim = Sim::new();
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(4000));
    row(&mut sim, long_line.as_bytes(), 414, None);
    let long_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-Filler: 0123456789012345678901234567890123456789\r\n".repeat(80)
    );
    row(&mut sim, long_head.as_bytes(), 431, None);
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "A: b\r\n".repeat(40));
    row(&mut sim, many.as_bytes(), 431, None);
    assert_eq!(sim.free_slots(), 10);
}

#[test]
fn http10_closes_and_http11_keeps_alive() {
    let mut sim: Sim = Sim::new();
    let r = sim.exchange(b"GET /text/text.htm HTTP/1.0\r\n\r\n");
    let r = Response::parse(&r).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    // Two pipelined HTTP/1.1 requests on one connection, answered in order.
    sim.conns.clear();
    let i = sim.open(
        b"GET /text/text.htm HTTP/1.1\r\nHost: t\r\n\r\nGET /text/index.html HTTP/1.1\r\nHost: t\r\n\r\n",
        Opts {
            close_after: Some(2),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(10)));
    let all = Response::parse_all(&sim.conns[i].received);
    assert_eq!(all.len(), 2);
    assert!(
        all[0].body.starts_with(b"<!DOCTYPE html>") && all[1].body.starts_with(b"<!DOCTYPE html>")
    );
    assert_ne!(all[0].body, all[1].body);
    assert_eq!(all[0].header("connection"), None);
}
