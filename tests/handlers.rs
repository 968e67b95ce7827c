//! The library's own routes: a firmware or host program's handlers on the public API, with the
//! server doing the HTTP around them (HEAD, ranges, validators, keep-alive, errors), and a UDP
//! service on the same interface. Responses are read with httparse (`common::Response`).

mod common;

use common::handlers::{pattern, sim, DOC};
use common::{Opts, Response, Sim};
use smolhttpd::{config, SLOTS};
use smoltcp::socket::udp;
use smoltcp::time::Duration;
use smoltcp::wire::IpEndpoint;

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

#[test]
fn custom_json_route() {
    let mut sim = sim();
    for n in 1..=3 {
        let r = sim.get("/api/sensor");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-reads"), Some(n.to_string().as_str()));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["reads"], n);
    }
    // The rest of the site is still there, behind the custom route.
    assert_eq!(sim.get("/index.html").status, 200);
    assert_eq!(sim.get("/chat?since=0").status, 200);
}

#[test]
fn post_handler_gets_the_whole_body() {
    let mut sim = sim();
    let body: Vec<u8> = (0..900u32).map(|i| (i * 7 % 256) as u8).collect();
    // Trickled a byte at a time: the handler still sees the body whole, once.
    let i = sim.open(
        &post("/echo?x=1", &body),
        Opts {
            gap: Some(Duration::from_millis(2)),
            ..Opts::default()
        },
    );
    assert!(sim.run(Duration::from_secs(30)));
    let r = Response::parse(&sim.conns[i].received).unwrap();
    assert_eq!((r.status, r.header("x-query")), (200, Some("x=1")));
    assert_eq!(r.body, body);
    // Over the route's limit: 413 before the handler runs; no length: 411; GET: 405.
    let r = Response::parse(&sim.exchange(&post("/echo", &[b'a'; 1001]))).unwrap();
    assert_eq!(r.status, 413);
    let r = Response::parse(&sim.exchange(b"PUT /echo HTTP/1.1\r\nHost: t\r\n\r\n")).unwrap();
    assert_eq!(r.status, 411);
    let r = sim.get("/echo");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, PUT")));
    assert_eq!(sim.free_slots(), SLOTS);
}

#[test]
fn streamed_body_larger_than_the_send_buffer() {
    let mut sim = sim();
    let r = sim.get("/big");
    const { assert!(75_000 > 4 * config::TX_BUFFER) };
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("75000"));
    assert_eq!(r.body.len(), 75_000);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    // No Range on a rendered body: the whole 200.
    let raw = sim
        .exchange(b"GET /big HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n");
    let r = Response::parse(&raw).unwrap();
    assert_eq!((r.status, r.body.len()), (200, 75_000));
}

#[test]
fn head_range_and_validators_on_a_handler_route() {
    let mut sim = sim();
    let get = sim.get("/doc");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, DOC);
    assert_eq!(get.header("etag"), Some("\"doc-1\""));
    assert_eq!(get.header("accept-ranges"), Some("bytes"));
    // HEAD: the same head, no body.
    let raw = sim.exchange(b"HEAD /doc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let head = Response::parse_with(&raw, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("36"));
    assert_eq!(head.header("etag"), get.header("etag"));
    assert_eq!(raw.len(), head.len, "HEAD carried a body");
    let ask = |sim: &mut Sim, extra: &str| {
        let req = format!("GET /doc HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n");
        Response::parse(&sim.exchange(req.as_bytes())).unwrap()
    };
    let r = ask(&mut sim, "Range: bytes=10-15\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-15/36"));
    assert_eq!(r.body, b"abcdef");
    let r = ask(&mut sim, "Range: bytes=-3\r\n");
    assert_eq!((r.status, &r.body[..]), (206, &b"xyz"[..]));
    let r = ask(&mut sim, "Range: bytes=36-\r\n");
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */36"))
    );
    let r = ask(&mut sim, "Range: bytes=0-1\r\nIf-Range: \"old\"\r\n");
    assert_eq!((r.status, r.body.len()), (200, 36));
    let r = ask(&mut sim, "If-None-Match: \"doc-1\"\r\n");
    assert_eq!((r.status, r.body.len()), (304, 0));
}

#[test]
fn a_failing_handler_gives_500_and_the_slot_serves_on() {
    let mut sim = sim();
    // Three requests on one keep-alive connection: the failure does not end it.
    let raw = sim.exchange(
        b"GET /flaky HTTP/1.1\r\nHost: t\r\n\r\nGET /api/sensor HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /doc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let all = Response::parse_all(&raw);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200, 200]);
    assert_eq!(all[0].body, b"500 Internal Server Error\n");
    assert_eq!(all[2].body, DOC);
    assert_eq!(sim.server.stats().connections, 1);
    // A handler that renders less than it promised: the response is cut, the slot freed.
    let i = sim.open(&common::get_close("/short"), Opts::default());
    assert!(sim.run(Duration::from_secs(30)));
    assert!(sim.conns[i].received.len() < 100 + 200);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.free_slots(), SLOTS);
    assert_eq!(sim.get("/doc").status, 200);
    assert!(sim.server.stats().server_errors >= 2);
}

#[test]
fn udp_service_beside_http_on_one_interface() {
    let mut sim = sim();
    // A UDP echo service on port 7 in the server's socket set, a client socket on the other side.
    let buf = |n| udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0u8; n]);
    let mut echo = udp::Socket::new(buf(2048), buf(2048));
    echo.bind(7).unwrap();
    let echo = sim.server_sockets.add(echo);
    let mut client = udp::Socket::new(buf(2048), buf(2048));
    client.bind(40000).unwrap();
    let client = sim.client_sockets.add(client);
    // A large download in flight while datagrams go back and forth.
    let dl = sim.open(&common::get_close("/video/Flores.mp4"), Opts::default());
    let server = IpEndpoint::new(common::server_ip(), 7);
    let mut echoed = Vec::new();
    for k in 0..20u32 {
        let msg = format!("ping {k}");
        sim.client_sockets
            .get_mut::<udp::Socket>(client)
            .send_slice(msg.as_bytes(), server)
            .unwrap();
        sim.advance(Duration::from_millis(5));
        let s = sim.server_sockets.get_mut::<udp::Socket>(echo);
        while let Ok((data, meta)) = s.recv() {
            let data = data.to_vec();
            s.send_slice(&data, meta.endpoint).unwrap();
        }
        sim.advance(Duration::from_millis(5));
        let c = sim.client_sockets.get_mut::<udp::Socket>(client);
        while let Ok((data, _)) = c.recv() {
            echoed.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    let want: Vec<String> = (0..20).map(|k| format!("ping {k}")).collect();
    assert_eq!(echoed, want);
    assert!(sim.run(Duration::from_secs(60)));
    let r = Response::parse(&sim.conns[dl].received).unwrap();
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fs_image/video/Flores.mp4"
    ))
    .unwrap();
    assert!(r.status == 200 && r.body == file);
}

#[test]
fn many_pipelined_requests_in_one_buffer() {
    // 45 requests arrive together: more than the slot's steps per poll, so the slot is
    // polled again at once for the rest (a loop, not a recursion) and answers all in order.
    let mut sim = sim();
    let one = b"GET /doc HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut req = one.repeat(44);
    req.extend_from_slice(b"GET /doc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(req.len() <= config::REQUEST_BUF);
    let all = Response::parse_all(&sim.exchange(&req));
    assert_eq!(all.len(), 45);
    assert!(all.iter().all(|r| r.status == 200 && r.body == DOC));
    assert_eq!(sim.server.stats().connections, 1);
}

#[test]
fn sizes_are_the_users() {
    // Firmware-sized: 2 slots, a 1 KiB request buffer, a 384-byte response head buffer.
    let mut sim: Sim<2, 1024, 384> = Sim::new();
    let r = sim.get("/img/car.jpeg");
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fs_image/img/car.jpeg"
    ))
    .unwrap();
    assert!(r.status == 200 && r.body == file);
    // The limits follow the buffer: a 1,100-byte header is 431, a 1,100-byte line 414.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(
        Response::parse(&sim.exchange(big.as_bytes()))
            .unwrap()
            .status,
        431
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(1100));
    assert_eq!(
        Response::parse(&sim.exchange(long.as_bytes()))
            .unwrap()
            .status,
        414
    );
    let simple = format!("GET /{}", "a".repeat(1100));
    assert_eq!(
        Response::parse(&sim.exchange(simple.as_bytes()))
            .unwrap()
            .status,
        414
    );
    // Three clients on two slots: all served.
    for _ in 0..3 {
        sim.open(&common::get_close("/"), Opts::like_curl());
    }
    assert!(sim.run(Duration::from_secs(30)));
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.free_slots(), 2);
}

#[test]
fn options_star_lists_what_the_server_takes() {
    let mut sim = sim();
    let raw = sim.exchange(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = Response::parse(&raw).unwrap();
    assert_eq!(
        (r.status, r.header("allow")),
        (200, Some("GET, HEAD, POST, PUT"))
    );
    assert_eq!(r.header("content-length"), Some("0"));
    // On a resource, OPTIONS is a method like any other the route does not take.
    let raw = sim.exchange(b"OPTIONS /doc HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = Response::parse(&raw).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn last_modified_and_if_modified_since() {
    let mut sim = sim();
    let r = sim.get("/index.html");
    let lm = r
        .header("last-modified")
        .expect("Last-Modified on a file")
        .to_string();
    let ask = |sim: &mut Sim, extra: &str| {
        let req =
            format!("GET /index.html HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n");
        Response::parse(&sim.exchange(req.as_bytes())).unwrap()
    };
    // Not modified since then: 304, with the validators again.
    let r = ask(&mut sim, &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("last-modified"), Some(lm.as_str()));
    // A second earlier: modified since, 200.
    let secs = smolhttpd::http::parse_date(lm.as_bytes()).unwrap();
    let mut earlier = String::new();
    smolhttpd::http::write_date_header(&mut earlier, "If-Modified-Since", secs - 1).unwrap();
    assert_eq!(ask(&mut sim, &earlier).status, 200);
    // If-None-Match wins over If-Modified-Since: another ETag means 200.
    let r = ask(
        &mut sim,
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"),
    );
    assert_eq!(r.status, 200);
    // A date that cannot be parsed is ignored.
    assert_eq!(
        ask(&mut sim, "If-Modified-Since: yesterday\r\n").status,
        200
    );
}

/// `GET /peer`: the client's address and port as the handler sees them (`Context::peer`).
struct Peer;

impl smolhttpd::handler::Handler for Peer {
    fn handle(
        &mut self,
        _: &smolhttpd::handler::Request,
        cx: &smolhttpd::handler::Context,
    ) -> Result<smolhttpd::handler::Reply, smolhttpd::handler::Error> {
        use smolhttpd::handler::{Body, Reply, Status};
        let peer = cx.peer.ok_or(smolhttpd::handler::Error("no peer"))?;
        Ok(
            Reply::new(Status::Ok, "text/plain", Body::Static(b"peer\n"))
                .header("X-Peer-Addr", peer.addr)
                .header("X-Peer-Port", peer.port),
        )
    }
}

#[test]
fn a_handler_sees_its_client_address_in_either_family() {
    use smolhttpd::handler::{Methods, Route};
    let mut routes = vec![Route::exact(
        Methods::GET,
        "/peer",
        common::leak_handler(Peer),
    )];
    routes.extend(common::site_routes::<SLOTS>());
    let mut sim: Sim = Sim::with_routes(0, 0, 0, smolhttpd::Config::new(), routes);
    let c = sim.open(&common::get_close("/peer"), Opts::like_curl());
    assert!(sim.run(Duration::from_secs(5)));
    let r = Response::parse(&sim.conns[c].received).expect("a response");
    assert_eq!(r.status, 200);
    // 192.168.69.100 or fd69::100, as the run's family is; the client's ephemeral port.
    let want = common::client_ip().to_string();
    assert_eq!(r.header("x-peer-addr"), Some(want.as_str()));
    let port: u16 = r.header("x-peer-port").unwrap().parse().unwrap();
    assert!(port >= 49152, "{port}");
}
