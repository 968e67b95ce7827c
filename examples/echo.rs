//! A WebSocket echo on a tap: `GET /echo` upgrades, and every message (text or binary) comes
//! back to the socket that sent it, unchanged; everything else is the built-in image.
//!
//! ```sh
//! sudo scripts/tap-up.sh            # tap0, host side 192.168.69.100/24
//! cargo run --release --example echo -- --tap tap0
//! python3 -m websockets ws://192.168.69.1/echo    # or: wscat -c ws://192.168.69.1/echo
//! ```

use smolhttpd::clock::Clock;
use smolhttpd::files::Files;
use smolhttpd::gate::Gate;
use smolhttpd::handler::{Context, Error, Handler, Methods, Reply, Request, Route, Router, Token};
use smolhttpd::server::Slots;
use smolhttpd::tap::TapDevice;
use smolhttpd::ws::{Message, Sender};
use smolhttpd::{config, site, Config, Server, SLOTS};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};

/// `GET /echo`: a WebSocket that sends each message back.
struct Echo;

impl Handler for Echo {
    /// Accepts the upgrade (the server checks the handshake, and answers 400 if it is not
    /// one). A handler could look at `req.header("origin")` here and answer 403.
    fn handle(&mut self, _: &Request, _: &Context) -> Result<Reply, Error> {
        Ok(Reply::websocket([0; 4]))
    }

    /// A whole message, borrowed from the slot's buffer: straight back into this socket. The
    /// server hands a message over only when the socket has room for one as large.
    fn ws_message(&mut self, _: &mut Token, msg: Message, tx: &mut Sender) {
        let _ = tx.send(msg);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut tap = String::from("tap0");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--tap", Some(name)) => tap = name,
            _ => {
                eprintln!("usage: echo [--tap NAME]");
                std::process::exit(2);
            }
        }
    }
    // Opening a tap that does not exist would create one (as root): say how to make it instead.
    if !std::path::Path::new("/sys/class/net").join(&tap).exists() {
        eprintln!(
            "echo: there is no TAP interface '{tap}'; create it with: sudo scripts/tap-up.sh {tap}"
        );
        std::process::exit(1);
    }
    let dev = TapDevice::open(&tap, 1500).unwrap_or_else(|e| {
        eprintln!("echo: cannot open tap '{tap}': {e} (is it a tap made by scripts/tap-up.sh?)");
        std::process::exit(1);
    });
    let fd = dev.fd();
    let mut dev = Gate::new(dev);

    let mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    let clock = Clock::new();
    let mut iface = Interface::new(IfaceConfig::new(mac.into()), &mut dev, clock.now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(Ipv4Address::new(192, 168, 69, 1).into(), 24));
    });
    let _ = iface
        .routes_mut()
        .add_default_ipv4_route(Ipv4Address::new(192, 168, 69, 100));

    let mut storage = [SocketStorage::EMPTY; SLOTS];
    let mut rx = vec![0u8; SLOTS * config::RX_BUFFER];
    let mut tx = vec![0u8; SLOTS * config::TX_BUFFER];
    let (mut echo, mut files) = (Echo, Files::new(site::FILES));
    let mut routes = [
        Route::exact(Methods::GET, "/echo", &mut echo),
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
    println!("echo: serving ws://192.168.69.1/echo on {tap}, and the image");
    loop {
        server.poll(clock.now(), &mut iface, &mut dev, &mut sockets);
        let delay = server.poll_delay(clock.now(), &mut iface, &sockets);
        let _ = phy::wait(fd, Some(delay.unwrap_or(Duration::from_secs(1))));
    }
}
