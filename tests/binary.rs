//! The real `smolhttpd` binary, no root and no tap: it listens for QEMU's `-netdev stream` on a
//! unix socket, and this test plays the guest. A smoltcp client interface sends its Ethernet
//! frames over that socket (a 4-byte big-endian length, then the frame, as QEMU does), so what
//! is checked is what a guest sees: ARP, TCP, HTTP bytes, and the deadline flags in wall time.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

mod common;
use common::{get_close, Response};

const SERVER: &str = env!("CARGO_BIN_EXE_smolhttpd");
const SERVER_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
const GUEST_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 2);
const MTU: usize = 1500;
/// Every wait of this test ends by this much wall time.
const LIMIT: StdDuration = StdDuration::from_secs(20);

/// The guest's side of QEMU's stream netdev.
struct Stream {
    sock: UnixStream,
    /// Bytes read and not yet cut into frames.
    inbox: Vec<u8>,
    frames: VecDeque<Vec<u8>>,
}

impl Stream {
    /// Reads what the socket has and cuts whole frames out of it.
    fn pump(&mut self) {
        let mut chunk = [0u8; 65536];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => panic!("smolhttpd closed the stream"),
                Ok(n) => self.inbox.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("stream read: {e}"),
            }
        }
        while self.inbox.len() >= 4 {
            let len = u32::from_be_bytes(self.inbox[..4].try_into().unwrap()) as usize;
            if self.inbox.len() < 4 + len {
                break;
            }
            self.frames.push_back(self.inbox[4..4 + len].to_vec());
            self.inbox.drain(..4 + len);
        }
    }
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut UnixStream);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut framed = vec![0u8; 4 + len];
        framed[..4].copy_from_slice(&(len as u32).to_be_bytes());
        let r = f(&mut framed[4..]);
        self.0.set_nonblocking(false).unwrap();
        self.0.write_all(&framed).expect("stream write");
        self.0.set_nonblocking(true).unwrap();
        r
    }
}

impl Device for Stream {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.frames.pop_front()?;
        Some((Rx(frame), Tx(&mut self.sock)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.sock))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        caps
    }
}

/// The server process, killed (by its own PID) and its socket folder removed when dropped.
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A guest connected to a freshly started `smolhttpd --qemu-stream SOCKET FLAGS...`.
struct Guest {
    server: Running,
    dev: Stream,
    iface: Interface,
    sockets: SocketSet<'static>,
    next_port: u16,
}

impl Guest {
    fn log_path(&self) -> PathBuf {
        self.server.dir.join("server.log")
    }

    fn start(name: &str, flags: &[&str]) -> Guest {
        Self::start_with_log(name, flags, "warn")
    }

    /// The server's log (at `level`) goes to `server.log` in its folder.
    fn start_with_log(name: &str, flags: &[&str], level: &str) -> Guest {
        let dir =
            std::env::temp_dir().join(format!("smolhttpd-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qemu.sock");
        let child = Command::new(SERVER)
            .arg("--qemu-stream")
            .arg(&path)
            .args(flags)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("start smolhttpd");
        let server = Running { child, dir };
        let sock = connect_when_listening(&path);
        sock.set_nonblocking(true).unwrap();
        let mut dev = Stream {
            sock,
            inbox: Vec::new(),
            frames: VecDeque::new(),
        };
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress([
            2, 0, 0, 0, 0, 2,
        ])));
        cfg.random_seed = u64::from(std::process::id());
        let mut iface = Interface::new(cfg, &mut dev, Instant::now());
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(GUEST_IP), 24)).unwrap();
        });
        Guest {
            server,
            dev,
            iface,
            sockets: SocketSet::new(Vec::new()),
            next_port: 49152,
        }
    }

    fn connect(&mut self) -> SocketHandle {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        );
        let handle = self.sockets.add(socket);
        self.next_port += 1;
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(
                self.iface.context(),
                (IpAddress::Ipv4(SERVER_IP), 80),
                self.next_port,
            )
            .unwrap();
        handle
    }

    /// Runs the stack until `done` holds for the socket, or panics after LIMIT.
    fn until(
        &mut self,
        h: SocketHandle,
        what: &str,
        mut done: impl FnMut(&mut tcp::Socket) -> bool,
    ) {
        let end = StdInstant::now() + LIMIT;
        loop {
            self.dev.pump();
            self.iface
                .poll(Instant::now(), &mut self.dev, &mut self.sockets);
            if done(self.sockets.get_mut::<tcp::Socket>(h)) {
                return;
            }
            assert!(StdInstant::now() < end, "no {what} within {LIMIT:?}");
            std::thread::sleep(StdDuration::from_millis(2));
        }
    }

    /// Opens a connection and waits until it is established.
    fn connected(&mut self) -> SocketHandle {
        let h = self.connect();
        self.until(h, "connection", |s| s.may_send());
        h
    }

    fn send(&mut self, h: SocketHandle, bytes: &[u8]) {
        let sent = self.sockets.get_mut::<tcp::Socket>(h).send_slice(bytes);
        assert_eq!(sent, Ok(bytes.len()));
    }

    /// Every byte received on `h` until the server closes its side.
    fn read_to_end(&mut self, h: SocketHandle, what: &str) -> Vec<u8> {
        let mut got = Vec::new();
        self.until(h, what, |s| {
            while s.can_recv() {
                s.recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            !s.may_recv()
        });
        self.sockets.get_mut::<tcp::Socket>(h).close();
        got
    }

    /// Sends `request` on a new connection and returns every byte until the server closes.
    fn exchange(&mut self, request: &[u8]) -> Response {
        let h = self.connected();
        self.send(h, request);
        let raw = self.read_to_end(h, "end of the response");
        Response::parse(&raw)
            .unwrap_or_else(|| panic!("not a whole response: {:?}", String::from_utf8_lossy(&raw)))
    }
}

fn connect_when_listening(path: &Path) -> UnixStream {
    let end = StdInstant::now() + LIMIT;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) => assert!(StdInstant::now() < end, "smolhttpd never listened: {e}"),
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

fn fs_file(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fs_image")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn a_guest_on_the_qemu_stream_gets_files_byte_exact() {
    let mut guest = Guest::start("files", &[]);
    for (path, file) in [
        ("/", "index.html"),
        ("/video/Flores.mp4", "video/Flores.mp4"),
    ] {
        let r = guest.exchange(&get_close(path));
        assert_eq!(r.status, 200, "{path}");
        let want = fs_file(file);
        let len = want.len().to_string();
        assert_eq!(r.header("content-length"), Some(len.as_str()), "{path}");
        assert!(
            r.body == want,
            "{path}: {} bytes differ from fs_image/{file}",
            r.body.len()
        );
    }
    assert_eq!(guest.exchange(&get_close("/nope")).status, 404);
}

/// A connection that never sends a request is closed at `--idle-timeout`, and a head that
/// never ends gets 408 at `--head-timeout`: the flags reach the server's deadlines.
#[test]
fn the_deadline_flags_set_the_deadlines() {
    let flags = ["--idle-timeout", "1", "--head-timeout", "2"];
    let mut guest = Guest::start_with_log("deadlines", &flags, "info");

    let h = guest.connected();
    let t0 = StdInstant::now();
    let got = guest.read_to_end(h, "close of the idle connection");
    let idle = t0.elapsed();
    assert!(
        idle >= StdDuration::from_millis(900) && idle < StdDuration::from_millis(2500),
        "idle connection closed after {idle:?}, want about 1 s"
    );
    assert!(got.is_empty(), "the idle close sent bytes: {got:?}");

    let h = guest.connected();
    guest.send(h, b"GET / HTTP/1.1\r\nHost: x\r\n");
    let t0 = StdInstant::now();
    let got = guest.read_to_end(h, "408");
    let cut = t0.elapsed();
    let r = Response::parse(&got).expect("a whole response");
    assert_eq!(r.status, 408);
    assert!(
        cut >= StdDuration::from_millis(1900) && cut < StdDuration::from_millis(3500),
        "408 after {cut:?}, want about 2 s"
    );
    // The access log names what was read of the request line.
    let log = std::fs::read_to_string(guest.log_path()).unwrap();
    assert!(
        log.lines().any(|l| l.contains(" GET / 408 ")),
        "no 'GET / 408' line in the log:\n{log}"
    );
}
