//! Handlers of a firmware-like program for the handler tests: a JSON sensor, an echo, a large
//! rendered body, a static document with an ETag, one that fails and one that renders short.
//! None allocates while serving.

use super::{leak_handler, site_routes, Sim};
use smolhttpd::handler::{
    Body, Context, Error, Handler, Methods, Reply, Request, Route, Status, Token,
};
use smolhttpd::json::{Counter, Full, Sink};
use smolhttpd::{Config, SLOTS};

/// `GET /api/sensor`: `{"reads":N}`, N counting the requests, rendered from the token.
pub struct Sensor {
    pub reads: u32,
}

impl Sensor {
    fn write(reads: u32, out: &mut (impl Sink + ?Sized)) -> Result<(), Full> {
        out.put(b"{\"reads\":")?;
        out.put(smolhttpd::http::decimal(u64::from(reads), &mut [0; 20]))?;
        out.put(b"}\n")
    }
}

impl Handler for Sensor {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        self.reads += 1;
        let mut c = Counter(0);
        let _ = Sensor::write(self.reads, &mut c);
        let body = Body::Rendered {
            len: c.0,
            token: [u64::from(self.reads), 0, 0, 0],
        };
        Ok(Reply::json(Status::Ok, body).header("X-Reads", self.reads))
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        Sensor::write(token[0] as u32, out)
    }
}

/// `POST /echo`: the body back, copied into per-slot storage and rendered from there.
pub struct Echo {
    pub bodies: Vec<Vec<u8>>,
}

impl Handler for Echo {
    fn handle(&mut self, req: &Request, cx: &Context) -> Result<Reply, Error> {
        // Each buffer has room for the route's largest body: no allocation here.
        let copy = &mut self.bodies[cx.slot];
        copy.clear();
        copy.extend_from_slice(req.body);
        let (len, token) = (copy.len(), [cx.slot as u64, 0, 0, 0]);
        let reply = Reply::new(
            Status::Ok,
            "application/octet-stream",
            Body::Rendered { len, token },
        );
        Ok(reply.header("X-Query", req.query.unwrap_or("-")))
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        out.put(&self.bodies[token[0] as usize])
    }
}

/// `GET /big`: `len` bytes of a pattern, rendered (never stored whole).
pub struct Big {
    pub len: usize,
}

pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

impl Handler for Big {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        let body = Body::Rendered {
            len: self.len,
            token: [0; 4],
        };
        Ok(Reply::new(Status::Ok, "application/octet-stream", body))
    }

    fn render(&self, _: Token, out: &mut dyn Sink) -> Result<(), Full> {
        let mut chunk = [0u8; 1000];
        for start in (0..self.len).step_by(chunk.len()) {
            let n = chunk.len().min(self.len - start);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(start + i);
            }
            out.put(&chunk[..n])?;
        }
        Ok(())
    }
}

/// `GET /doc`: a static document with an ETag, like a file.
pub struct Doc;
pub const DOC: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl Handler for Doc {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        Ok(Reply::new(Status::Ok, "text/plain", Body::Static(DOC)).with_etag("\"doc-1\""))
    }
}

/// `GET /flaky`: fails.
pub struct Flaky;

impl Handler for Flaky {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        Err(Error("sensor offline"))
    }
}

/// `GET /short`: promises 100 bytes, renders 10.
pub struct Short;

impl Handler for Short {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        let body = Body::Rendered {
            len: 100,
            token: [0; 4],
        };
        Ok(Reply::new(Status::Ok, "text/plain", body))
    }

    fn render(&self, _: Token, out: &mut dyn Sink) -> Result<(), Full> {
        out.put(b"0123456789")
    }
}

/// The binary's site plus the handlers above, in front of its catch-all.
pub fn sim() -> Sim {
    let mut routes = vec![
        Route::exact(
            Methods::GET,
            "/api/sensor",
            leak_handler(Sensor { reads: 0 }),
        ),
        Route::exact(
            Methods::POST | Methods::PUT,
            "/echo",
            leak_handler(Echo {
                bodies: (0..SLOTS).map(|_| Vec::with_capacity(1000)).collect(),
            }),
        )
        .max_body(1000),
        Route::exact(Methods::GET, "/big", leak_handler(Big { len: 75_000 })),
        Route::exact(Methods::GET, "/doc", leak_handler(Doc)),
        Route::exact(Methods::GET, "/flaky", leak_handler(Flaky)),
        Route::exact(Methods::GET, "/short", leak_handler(Short)),
    ];
    routes.extend(site_routes::<SLOTS>());
    Sim::with_routes(0, 0, 0, Config::new(), routes)
}

/// `GET /ws/echo`: a WebSocket that greets with `hello`, sends every message back as it came,
/// refuses the `Origin` `http://evil.example` (403), and notes each close code in `closes`.
pub struct WsEcho {
    pub closes: std::rc::Rc<std::cell::RefCell<Vec<u16>>>,
}

impl Handler for WsEcho {
    fn handle(&mut self, req: &Request, _: &Context) -> Result<Reply, Error> {
        if req.header("origin") == Some(&b"http://evil.example"[..]) {
            return Ok(Reply::error(Status::Forbidden));
        }
        Ok(Reply::websocket([7, 0, 0, 0]))
    }

    fn ws_open(&mut self, token: &mut Token, tx: &mut smolhttpd::ws::Sender) {
        assert_eq!(token[0], 7);
        tx.text("hello").unwrap();
    }

    fn ws_message(
        &mut self,
        token: &mut Token,
        msg: smolhttpd::ws::Message,
        tx: &mut smolhttpd::ws::Sender,
    ) {
        token[1] += 1;
        tx.send(msg).unwrap();
    }

    fn ws_close(&mut self, _: Token, code: u16) {
        // Capacity reserved up front: no allocation while serving.
        self.closes.borrow_mut().push(code);
    }
}

/// The binary's site with `/ws/echo` in front; the close codes its handler saw.
pub fn ws_sim(config: Config) -> (Sim, std::rc::Rc<std::cell::RefCell<Vec<u16>>>) {
    let closes = std::rc::Rc::new(std::cell::RefCell::new(Vec::with_capacity(256)));
    let mut routes = vec![Route::exact(
        Methods::GET,
        "/ws/echo",
        leak_handler(WsEcho {
            closes: closes.clone(),
        }),
    )];
    routes.extend(site_routes::<SLOTS>());
    (Sim::with_routes(0, 0, 0, config, routes), closes)
}
