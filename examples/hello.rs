//! Your own routes beside the built-in image, on a tap: `GET /hello` answers a line of text,
//! `POST /echo` sends the request body back, everything else is the image.
//!
//! ```sh
//! sudo scripts/tap-up.sh            # tap0, host side 192.168.69.100/24
//! cargo run --release --example hello -- --tap tap0
//! curl http://192.168.69.1/hello             # or http://[fd69::1]/hello
//! curl --data 'ping' http://192.168.69.1/echo
//! ```

use smolhttpd::clock::Clock;
use smolhttpd::files::Files;
use smolhttpd::gate::Gate;
use smolhttpd::handler::{
    Body, Context, Error, Handler, Methods, Reply, Request, Route, Router, Status, Token,
};
use smolhttpd::json::{Full, Sink};
use smolhttpd::server::Slots;
use smolhttpd::tap::TapDevice;
use smolhttpd::{config, site, Config, Server, SLOTS};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device as _};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address, Ipv6Address};

/// `GET /hello`: a fixed text.
struct Hello;

impl Handler for Hello {
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        Ok(Reply::text("hello from a handler\n"))
    }
}

/// `POST /echo`: the body back. The request buffer is reused as soon as the handler returns,
/// so the body is copied into this slot's own buffer and rendered from there.
struct Echo {
    bodies: [heapless::Vec<u8, { config::REQUEST_BUF }>; SLOTS],
}

impl Handler for Echo {
    fn handle(&mut self, req: &Request, cx: &Context) -> Result<Reply, Error> {
        let copy = self.bodies.get_mut(cx.slot).ok_or(Error("no such slot"))?;
        copy.clear();
        copy.extend_from_slice(req.body)
            .map_err(|_| Error("body larger than the request buffer"))?;
        let body = Body::Rendered {
            len: copy.len(),
            token: [cx.slot as u64, 0, 0, 0],
        };
        Ok(Reply::new(Status::Ok, "application/octet-stream", body))
    }

    fn render(&self, token: Token, out: &mut dyn Sink) -> Result<(), Full> {
        match self.bodies.get(token[0] as usize) {
            Some(b) => out.put(b),
            None => Ok(()),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut tap = String::from("tap0");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--tap", Some(name)) => tap = name,
            _ => {
                eprintln!("usage: hello [--tap NAME]");
                std::process::exit(2);
            }
        }
    }
    // Opening a tap that does not exist would create one (as root): say how to make it instead.
    if !std::path::Path::new("/sys/class/net").join(&tap).exists() {
        eprintln!("hello: there is no TAP interface '{tap}'; create it with: sudo scripts/tap-up.sh {tap}");
        std::process::exit(1);
    }
    let dev = TapDevice::open(&tap, 1500).unwrap_or_else(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "no permission for /dev/net/tun or the tap: sudo chmod 0666 /dev/net/tun, or \
                 recreate the tap as you (sudo scripts/tap-down.sh && sudo scripts/tap-up.sh)"
            }
            _ => "is it a tap made by scripts/tap-up.sh?",
        };
        eprintln!("hello: cannot open tap '{tap}': {e} ({hint})");
        std::process::exit(1);
    });
    let fd = dev.fd();
    let mut dev = Gate::new(dev);

    let mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    // Monotonic time (not smoltcp's Instant::now(), which is the wall clock and can step back).
    let clock = Clock::new();
    let mut iface = Interface::new(IfaceConfig::new(mac.into()), &mut dev, clock.now());
    // The binary's addresses: 192.168.69.1/24, fd69::1/64 and the link-local address of the
    // MAC (fe80:: with its EUI-64), which neighbour discovery on the link expects.
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(Ipv4Address::new(192, 168, 69, 1).into(), 24));
        let _ = a.push(smolhttpd::link_local(mac).into());
        let _ = a.push(IpCidr::new(
            Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 1).into(),
            64,
        ));
    });
    let routes = iface.routes_mut();
    let _ = routes.add_default_ipv4_route(Ipv4Address::new(192, 168, 69, 100));
    let _ = routes.add_default_ipv6_route(Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 0x100));

    let mut storage = [SocketStorage::EMPTY; SLOTS];
    let mut rx = vec![0u8; SLOTS * config::RX_BUFFER];
    let mut tx = vec![0u8; SLOTS * config::TX_BUFFER];
    let (mut hello, mut files) = (Hello, Files::new(site::FILES));
    let mut echo = Echo {
        bodies: core::array::from_fn(|_| heapless::Vec::new()),
    };
    let mut routes = [
        Route::exact(Methods::GET, "/hello", &mut hello),
        Route::exact(Methods::POST, "/echo", &mut echo),
        Route::prefix(Methods::GET | Methods::HEAD, "/", &mut files),
    ];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let router = Router::new(&mut routes[..]);
    let mut slots = Slots::new();
    let mut server: Server = Server::new(
        router,
        &mut sockets,
        &mut rx,
        &mut tx,
        &mut slots,
        Config::new(),
    )
    .expect("buffers of 1 KiB or more per slot");
    let mtu = dev.capabilities().max_transmission_unit - 14;
    println!(
        "hello: serving http://192.168.69.1/ on {tap} (mtu {mtu}): /hello, /echo and the image"
    );
    loop {
        server.poll(clock.now(), &mut iface, &mut dev, &mut sockets);
        let delay = server.poll_delay(clock.now(), &mut iface, &sockets);
        let _ = phy::wait(fd, Some(delay.unwrap_or(Duration::from_secs(1))));
    }
}
