//! `smolhttpd`: the std shell. Opens the TAP device (or QEMU's socket netdev), builds the
//! smoltcp interface and the server, and runs the poll/wait loop until Ctrl-C or SIGTERM.

mod qemu;
mod wait;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device, FaultInjector, PcapMode, PcapWriter};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv6Address, Ipv6Cidr};

use qemu::{Counters, DgramDevice, StreamDevice};
use smolhttpd::chat::{self, ChatRoom};
use smolhttpd::clock::Clock;
use smolhttpd::config::{self, SLOTS};
use smolhttpd::files::Files;
use smolhttpd::gate::Gate;
use smolhttpd::handler::{Methods, Route, Router};
use smolhttpd::mdns::{self, Responder};
use smolhttpd::server::Slots;
use smolhttpd::status::StatusPage;
use smolhttpd::tap::TapDevice;
use smolhttpd::{site, Config, Server};
use wait::Interest;

/// An embedded HTTP server on the smoltcp TCP/IP stack, over a Linux TAP device or QEMU's
/// socket netdevs.
///
/// Create the tap first with `sudo scripts/tap-up.sh`, then open http://192.168.69.1/.
/// Or serve a QEMU guest with no root: `--qemu-stream /tmp/smolhttpd.sock`, then start QEMU with
/// `-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/smolhttpd.sock
/// -device virtio-net-pci,netdev=n0`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TAP interface to serve on (create it with `sudo scripts/tap-up.sh NAME`).
    #[arg(long, default_value = "tap0")]
    tap: String,
    /// Instead of a tap, listen on this unix socket path or TCP IP:PORT for QEMU's
    /// `-netdev stream,server=off,...` (or `-netdev socket,connect=IP:PORT`); one guest at a time,
    /// the next one is accepted when it goes away.
    #[arg(long, value_name = "PATH|IP:PORT", conflicts_with_all = ["tap", "qemu_dgram"])]
    qemu_stream: Option<SockAddr>,
    /// Instead of a tap, exchange frames as datagrams with QEMU's `-netdev dgram`: bind LOCAL
    /// and send to REMOTE (both IP:PORT, or both unix socket paths).
    #[arg(long, value_name = "LOCAL,REMOTE", conflicts_with = "tap")]
    qemu_dgram: Option<DgramAddrs>,
    /// The server's own address and prefix (the smoltcp side of the tap), or `dhcp`: take one
    /// from a DHCP server on the link (a tap bridged onto a LAN), and 192.168.69.1/24 with
    /// --gateway when none answers within 3 s.
    #[arg(long, value_name = "CIDR|dhcp", default_value = "192.168.69.1/24", value_parser = parse_ip)]
    ip: IpChoice,
    /// Default gateway (the host side of the tap).
    #[arg(long, default_value = "192.168.69.100")]
    gateway: Ipv4Address,
    /// The server's IPv6 address and prefix beside its link-local one (from the MAC), or `none`
    /// for no IPv6 at all.
    #[arg(long, value_name = "CIDR|none", default_value = "fd69::1/64", value_parser = parse_ip6)]
    ip6: Ip6,
    /// IPv6 default gateway (the host side of the tap), in --ip6's network.
    #[arg(long, value_name = "ADDR", default_value = "fd69::100")]
    gateway6: Ipv6Address,
    /// The server's Ethernet address.
    #[arg(long, default_value = "02:00:00:00:00:01", value_parser = parse_mac)]
    mac: EthernetAddress,
    /// The name the server answers by mDNS on the link: NAME.local (`none` to turn it off).
    #[arg(long, value_name = "NAME", default_value = "smolhttpd")]
    name: String,
    /// HTTP port.
    #[arg(long, default_value_t = config::HTTP_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// IP MTU; default: the tap's own MTU (1500 with --qemu-stream/--qemu-dgram).
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65521))]
    mtu: Option<u32>,
    /// Receive buffer of each slot's socket, bytes.
    #[arg(long, default_value_t = config::RX_BUFFER, value_parser = buffer_size)]
    rx_buffer: usize,
    /// Transmit buffer of each slot's socket, bytes [default: 262144 on a tap with offload,
    /// where one segment can be 64 KB; else 16384] (raise it for jumbo frames without offload).
    #[arg(long, value_parser = buffer_size)]
    tx_buffer: Option<usize>,
    /// Turn off checksum and segmentation offload on the tap. With offload (the default where
    /// the kernel supports it) smolhttpd writes TCP segments of up to 64 KB and the kernel cuts
    /// them to the tap's MTU; --pcap then shows those large segments with partial checksums, as
    /// a capture on a TSO network card does. No effect with --qemu-stream/--qemu-dgram.
    #[arg(long)]
    no_offload: bool,
    /// Write every frame to this pcap file (open it in Wireshark).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Drop this percentage of frames in each direction (chaos testing; caps frames at 1536
    /// bytes; turns offload off).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    drop_chance: u8,
    /// Corrupt this percentage of frames in each direction (chaos testing; turns offload off:
    /// the kernel would checksum the corrupted bytes as sent).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    corrupt_chance: u8,
    /// Seconds a request head may take from its first byte (then 408).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.head_timeout.secs(), value_parser = deadline)]
    head_timeout: u64,
    /// Seconds a request body may pause between reads (then 408).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.body_timeout.secs(), value_parser = deadline)]
    body_timeout: u64,
    /// Seconds a whole request body may take from the end of its head, however steadily it
    /// trickles (then 408).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.body_deadline.secs(), value_parser = deadline)]
    body_deadline: u64,
    /// Seconds an idle connection (no request yet, or between requests) is kept open.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.idle_timeout.secs(), value_parser = deadline)]
    idle_timeout: u64,
    /// Seconds a response may make no progress before it is aborted (raise these five on
    /// lossy links: TCP's retransmission backoff is 1, 2, 4, 8, 16 s).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULTS.send_timeout.secs(), value_parser = deadline)]
    send_timeout: u64,
}

/// The contract's deadlines, the defaults of the `--*-timeout` flags.
const DEFAULTS: Config = Config::new();

fn deadline(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(n),
        _ => Err("expected whole seconds from 1 to 3600".into()),
    }
}

/// `--ip`: a static address, or DHCP with the default static address as the fallback.
#[derive(Clone, Copy, Debug)]
enum IpChoice {
    Static(IpCidr),
    Dhcp,
}

impl IpChoice {
    /// The static address, or DHCP's fallback.
    fn fixed(&self) -> IpCidr {
        match self {
            IpChoice::Static(c) => *c,
            IpChoice::Dhcp => IpCidr::new(Ipv4Address::new(192, 168, 69, 1).into(), 24),
        }
    }
}

fn parse_ip(s: &str) -> Result<IpChoice, String> {
    if s.eq_ignore_ascii_case("dhcp") {
        return Ok(IpChoice::Dhcp);
    }
    match s.parse::<IpCidr>() {
        Ok(c @ IpCidr::Ipv4(_)) if c.prefix_len() > 0 && c.prefix_len() < 32 => {
            Ok(IpChoice::Static(c))
        }
        _ => Err("expected an IPv4 address with prefix, like 192.168.69.1/24, or dhcp".into()),
    }
}

/// `--ip6`: an IPv6 address with its prefix, or `none` (a newtype: clap reads a bare
/// `Option` as "the flag may be absent").
#[derive(Clone, Copy, Debug)]
struct Ip6(Option<Ipv6Cidr>);

fn parse_ip6(s: &str) -> Result<Ip6, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Ip6(None));
    }
    match s.parse::<IpCidr>() {
        Ok(IpCidr::Ipv6(c))
            if c.prefix_len() > 0
                && c.prefix_len() < 128
                && !c.address().is_multicast()
                && !c.address().is_unspecified()
                && !c.address().is_loopback()
                && !c.address().is_unicast_link_local() =>
        {
            Ok(Ip6(Some(c)))
        }
        _ => Err(
            "expected an IPv6 address with prefix, like fd69::1/64, or none (the \
                  link-local address comes from --mac)"
                .into(),
        ),
    }
}

/// How long `--ip dhcp` waits for a lease before it takes the fallback address.
const DHCP_WAIT: Duration = Duration::from_secs(3);

/// Sets the interface's one IPv4 address and default route (its IPv6 addresses stay).
fn use_address(iface: &mut Interface, cidr: IpCidr, gateway: Option<Ipv4Address>) {
    iface.update_ip_addrs(|addrs| {
        addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
        // Cannot fail: the list holds IPv4, link-local and one more IPv6 address.
        let _ = addrs.insert(0, cidr);
    });
    iface.routes_mut().remove_default_ipv4_route();
    if let Some(gw) = gateway {
        // Cannot fail: the table was just emptied of its default route.
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
    }
}

fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    match s.parse::<EthernetAddress>() {
        Ok(m) if m.is_unicast() => Ok(m),
        _ => Err("expected a unicast MAC address, like 02:00:00:00:00:01".into()),
    }
}

fn buffer_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (1024..=(1 << 30)).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 1024 and 1073741824".into())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("smolhttpd: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the tap with a message that says what to do when it cannot.
fn open_tap(name: &str, mtu: Option<u32>, offload: bool) -> Result<TapDevice, String> {
    let sys = PathBuf::from("/sys/class/net").join(name);
    if !sys.exists() {
        return Err(format!(
            "there is no TAP interface '{name}'; create it with: sudo scripts/tap-up.sh {name}"
        ));
    }
    let mtu = match mtu {
        Some(m) => m as usize,
        None => std::fs::read_to_string(sys.join("mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500),
    };
    // The clone device first: when it cannot be opened at all, the tap's owner is not the
    // problem. (SMOLHTTPD_TUN names another path, for tests.)
    let tun = std::env::var_os("SMOLHTTPD_TUN")
        .map_or_else(|| PathBuf::from("/dev/net/tun"), PathBuf::from);
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tun)
    {
        let path = tun.display();
        return Err(match e.kind() {
            io::ErrorKind::NotFound => format!(
                "{path} does not exist: load the tun module (sudo modprobe tun)"
            ),
            io::ErrorKind::PermissionDenied => format!(
                "no permission to open {path}; allow it with: sudo chmod 0666 {path} (or run as root)"
            ),
            _ => format!("cannot open {path}: {e}"),
        });
    }
    let opened = if offload {
        match TapDevice::open_offload(name, mtu) {
            // No virtio-net headers on taps in this kernel: serve without offload.
            Err(e) if e.raw_os_error() == Some(22) && is_tap(&sys) => {
                log::info!("tap offload not supported here ({e}); serving without it");
                TapDevice::open(name, mtu)
            }
            r => r,
        }
    } else {
        TapDevice::open(name, mtu)
    };
    opened.map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "no permission to open TAP '{name}' (it belongs to another user); recreate it owned by you: \
             sudo scripts/tap-down.sh {name} && sudo scripts/tap-up.sh {name}"
        ),
        _ if e.raw_os_error() == Some(16) => {
            format!("TAP '{name}' is in use by another program (is smolhttpd already running?)")
        }
        _ if e.raw_os_error() == Some(22) => {
            format!("'{name}' is not a TAP interface; create one with: sudo scripts/tap-up.sh {name}")
        }
        _ => format!("cannot open TAP '{name}': {e}"),
    })
}

/// Whether the interface at `sys` (`/sys/class/net/NAME`) is a tap, not a tun or another kind.
fn is_tap(sys: &std::path::Path) -> bool {
    // tun_flags: IFF_TAP is 0x0002.
    std::fs::read_to_string(sys.join("tun_flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 2 != 0)
}

/// What the loop sleeps on ([`wait::Interest`]), and what the device lost.
trait WaitOn {
    fn interest(&self) -> Interest;
    fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// The tap: one fixed fd for input; a write never waits (a full tap queue is the kernel's
/// drop, like a busy wire).
impl WaitOn for RawFd {
    fn interest(&self) -> Interest {
        Interest::read(*self)
    }
}

/// QEMU: the fds change as peers come and go, and frames may be held back.
impl WaitOn for qemu::Waiter {
    fn interest(&self) -> Interest {
        qemu::Waiter::interest(self)
    }
    fn counters(&self) -> Counters {
        qemu::Waiter::counters(self)
    }
}

/// The send buffer per slot on a tap with offload: room for four 64 KB segments in flight (the
/// pages are touched only as far as a download fills them).
const OFFLOAD_TX_BUFFER: usize = 256 * 1024;

fn run(mut args: Args) -> Result<(), String> {
    match args.ip.fixed() {
        IpCidr::Ipv4(cidr) if !cidr.contains_addr(&args.gateway) => {
            return Err(format!(
                "--gateway {} is not in --ip {cidr}'s network, so the server could not reach it; \
                 give a gateway on that network (the host side of the tap, like 192.168.69.100)",
                args.gateway
            ));
        }
        _ => {}
    }
    if let Ip6(Some(cidr)) = args.ip6 {
        if !cidr.contains_addr(&args.gateway6) {
            return Err(format!(
                "--gateway6 {} is not in --ip6 {cidr}'s network, so the server could not reach \
                 it; give a gateway on that network (the host side of the tap, like fd69::100)",
                args.gateway6
            ));
        }
    }
    let stop = Arc::new(AtomicUsize::new(0));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            // The first signal starts the goodbye; a second one ends the process at once.
            if stop.fetch_add(1, Ordering::SeqCst) >= 1 {
                eprintln!("smolhttpd: second signal: exiting now");
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let qemu_mtu = args.mtu.map_or(1500, |m| m as usize);
    if let Some(addr) = &args.qemu_stream {
        let dev = StreamDevice::listen(addr, qemu_mtu)?;
        let (wait, name) = (dev.waiter(), format!("{dev} (mtu {qemu_mtu})"));
        return start(&args, dev, wait, &name, Some(&stream_options(addr)), &stop);
    }
    if let Some(addrs) = &args.qemu_dgram {
        let dev = DgramDevice::bind(addrs, qemu_mtu)?;
        let (wait, name) = (dev.waiter(), format!("{dev} (mtu {qemu_mtu})"));
        return start(&args, dev, wait, &name, Some(&dgram_options(addrs)), &stop);
    }
    // The chaos flags turn offload off: the FaultInjector caps frames at 1536 bytes, and a
    // frame corrupted before the kernel finishes its checksum would arrive as valid.
    let chaos = args.drop_chance > 0 || args.corrupt_chance > 0;
    let tap = open_tap(&args.tap, args.mtu, !args.no_offload && !chaos)?;
    if tap.offload() {
        args.tx_buffer.get_or_insert(OFFLOAD_TX_BUFFER);
    }
    let fd = tap.fd();
    let offload = if tap.offload() { ", offload" } else { "" };
    let name = format!("{} (mtu {}{offload})", args.tap, tap.wire_mtu());
    start(&args, tap, fd, &name, None, &stop)
}

/// QEMU's options for a guest that connects to `--qemu-stream ADDR`.
fn stream_options(addr: &SockAddr) -> String {
    let netdev = match addr {
        SockAddr::Unix(p) => format!("addr.type=unix,addr.path={}", p.display()),
        SockAddr::Inet(a) => format!("addr.type=inet,addr.host={},addr.port={}", a.ip(), a.port()),
    };
    format!("-netdev stream,id=n0,server=off,{netdev} -device virtio-net-pci,netdev=n0")
}

/// QEMU's options for a guest that exchanges datagrams with `--qemu-dgram LOCAL,REMOTE`: its
/// local is our remote and the other way round.
fn dgram_options(addrs: &DgramAddrs) -> String {
    let end = |side: &str, a: &SockAddr| match a {
        SockAddr::Unix(p) => format!("{side}.type=unix,{side}.path={}", p.display()),
        SockAddr::Inet(a) => format!(
            "{side}.type=inet,{side}.host={},{side}.port={}",
            a.ip(),
            a.port()
        ),
    };
    format!(
        "-netdev dgram,id=n0,{},{} -device virtio-net-pci,netdev=n0",
        end("local", &addrs.remote),
        end("remote", &addrs.local)
    )
}

/// Builds the interface and the server on `dev` and serves until stopped.
fn start<D: Device, W: WaitOn>(
    args: &Args,
    dev: D,
    wait: W,
    name: &str,
    hint: Option<&str>,
    stop: &AtomicUsize,
) -> Result<(), String> {
    // Printed once every step that can fail has succeeded: scripts wait for it.
    let site = format!(
        "{} files, {:.1} MB, {SLOTS} slots",
        site::FILES.len(),
        site::IMAGE_BYTES as f64 / 1e6
    );
    let mut banner = match args.ip {
        IpChoice::Static(c) => format!(
            "smolhttpd: serving http://{}:{}/ on {name}, {site}",
            c.address(),
            args.port
        ),
        IpChoice::Dhcp => format!(
            "smolhttpd: serving on {name} at an address from DHCP (else http://{}:{}/ after {} s), {site}",
            args.ip.fixed().address(),
            args.port,
            DHCP_WAIT.secs()
        ),
    };
    if let Ip6(Some(cidr)) = args.ip6 {
        banner.push_str(&format!(
            "\nsmolhttpd: and http://[{}]:{}/ (IPv6; link-local {})",
            cidr.address(),
            args.port,
            smolhttpd::link_local(args.mac).address()
        ));
    }
    if let Some(hint) = hint {
        banner.push_str(&format!("\nsmolhttpd: start QEMU with: {hint}"));
    }
    let banner = banner.as_str();
    let faults = args.drop_chance > 0 || args.corrupt_chance > 0;
    match (&args.pcap, faults) {
        (None, false) => serve(args, dev, wait, stop, banner),
        (Some(path), false) => serve(args, pcap(dev, path)?, wait, stop, banner),
        (None, true) => serve(
            args,
            chaos(dev, args.drop_chance, args.corrupt_chance),
            wait,
            stop,
            banner,
        ),
        (Some(path), true) => serve(
            args,
            chaos(pcap(dev, path)?, args.drop_chance, args.corrupt_chance),
            wait,
            stop,
            banner,
        ),
    }
}

fn pcap<D: Device>(dev: D, path: &PathBuf) -> Result<PcapWriter<D, std::fs::File>, String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create the pcap file {}: {e}", path.display()))?;
    log::info!("writing frames to {}", path.display());
    Ok(PcapWriter::new(dev, file, PcapMode::Both))
}

fn chaos<D: Device>(dev: D, drop: u8, corrupt: u8) -> FaultInjector<D> {
    let seed = std::process::id();
    let mut dev = FaultInjector::new(dev, seed);
    dev.set_drop_chance(drop);
    dev.set_corrupt_chance(corrupt);
    log::warn!("fault injection on: drop {drop}%, corrupt {corrupt}% (seed {seed})");
    dev
}

/// Builds the interface, the routes and the server on `dev`, then runs the poll/wait loop:
/// poll, then sleep on the device's fd until a frame or the next deadline.
fn serve<D: Device, W: WaitOn>(
    args: &Args,
    dev: D,
    wait: W,
    stop: &AtomicUsize,
    banner: &str,
) -> Result<(), String> {
    // The longest sleep, so a stop request is noticed promptly.
    const MAX_WAIT: Duration = Duration::from_millis(250);
    // The longest sleep while frames are held back and smoltcp wants to send now.
    const HELD_WAIT: Duration = Duration::from_millis(100);
    // How often the wall clock is read again for `Date` (it may have been stepped).
    const WALL_EVERY: Duration = Duration::from_secs(10);
    // How long responses in flight may take to finish after Ctrl-C or SIGTERM.
    const GOODBYE: Duration = Duration::from_secs(3);
    let mut dev = Gate::new(dev);
    let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(args.mac));
    cfg.random_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    // Monotonic: a wall clock stepped back must not put every TCP timer in the future.
    let clock = Clock::new();
    let mut iface = Interface::new(cfg, &mut dev, clock.now());
    if let Ip6(Some(cidr)) = args.ip6 {
        iface.update_ip_addrs(|addrs| {
            // Cannot fail: the list holds 4 and is empty.
            let _ = addrs.push(IpCidr::Ipv6(smolhttpd::link_local(args.mac)));
            let _ = addrs.push(IpCidr::Ipv6(cidr));
        });
        // Cannot fail: the table is empty.
        let _ = iface.routes_mut().add_default_ipv6_route(args.gateway6);
    }
    if let IpChoice::Static(cidr) = args.ip {
        use_address(&mut iface, cidr, Some(args.gateway));
    }

    // Storage lent to the server; it lives as long as this function.
    // The slots, and a DHCP client beside them with `--ip dhcp`.
    let mut storage = [SocketStorage::EMPTY; SLOTS + 2];
    let mut rx = vec![0u8; SLOTS * args.rx_buffer];
    let mut tx = vec![0u8; SLOTS * args.tx_buffer.unwrap_or(config::TX_BUFFER)];
    let mut chat = ChatRoom::<{ chat::MESSAGES }>::new();
    let mut status = StatusPage::<SLOTS>::new();
    let mut files = Files::new(site::FILES);
    let mut routes = [
        Route::prefix(Methods::GET | Methods::POST, "/chat", &mut chat).max_body(chat::MAX_FORM),
        Route::exact(Methods::GET | Methods::HEAD, "/status", &mut status),
        Route::prefix(Methods::GET | Methods::HEAD, "/", &mut files),
    ];
    let config = Config::new()
        .port(args.port)
        .head_timeout(Duration::from_secs(args.head_timeout))
        .body_timeout(Duration::from_secs(args.body_timeout))
        .body_deadline(Duration::from_secs(args.body_deadline))
        .idle_timeout(Duration::from_secs(args.idle_timeout))
        .send_timeout(Duration::from_secs(args.send_timeout));
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut slots = Box::new(Slots::<SLOTS>::new());
    let router = Router::new(&mut routes[..]);
    let dhcp = matches!(args.ip, IpChoice::Dhcp).then(|| sockets.add(dhcpv4::Socket::new()));
    // The mDNS responder: NAME.local on the link, beside the slots in the same socket set.
    let mut mdns_buffers: mdns::Buffers = mdns::Buffers::new();
    let mut mdns = match args.name.as_str() {
        "none" => None,
        name => Some(
            Responder::new(name, &mut iface, &mut sockets, &mut mdns_buffers).map_err(|e| {
                format!("--name {name}: {e} (a name is 1-63 letters, digits or '-')")
            })?,
        ),
    };
    let mut server: Server<SLOTS> =
        Server::new(router, &mut sockets, &mut rx, &mut tx, &mut slots, config)
            .map_err(|e| e.to_string())?;
    // The wall clock, read again every few seconds, is only for `Date`.
    let mut wall_read: Option<Instant> = None;

    println!("{banner}");
    if let Some(m) = &mdns {
        println!("smolhttpd: and as http://{}/ by mDNS on the link", m.name());
    }
    let mut mdns_name = mdns.as_ref().map(|m| m.name().to_string());
    let mut stopping = false;
    let mut lease = Lease {
        started: clock.now(),
        state: LeaseState::Waiting,
    };
    loop {
        let now = clock.now();
        if !stopping && stop.load(Ordering::SeqCst) > 0 {
            stopping = true;
            server.shutdown(now, GOODBYE);
            log::info!(
                "stopping: saying goodbye to every connection (responses in flight get up to {} s; \
                 Ctrl-C again quits at once)",
                GOODBYE.secs()
            );
        }
        if server.is_stopped() {
            break;
        }
        if wall_read.is_none_or(|t| now >= t + WALL_EVERY) {
            if let Some(unix) = Clock::unix_secs() {
                server.set_wall_clock(unix, now);
            }
            wall_read = Some(now);
        }
        server.poll(now, &mut iface, &mut dev, &mut sockets);
        if let Some(handle) = dhcp {
            lease.follow(
                sockets.get_mut::<dhcpv4::Socket>(handle),
                &mut iface,
                now,
                args,
            );
        }
        if let Some(m) = &mut mdns {
            m.poll(now, &mut iface, &mut sockets);
            if mdns_name.as_deref() != Some(m.name()) {
                log::warn!(
                    "mDNS: the name was taken on the link; now answering as {}",
                    m.name()
                );
                mdns_name = Some(m.name().to_string());
            }
        }
        let interest = wait.interest();
        let now = clock.now();
        let mut delay = server
            .poll_delay(now, &mut iface, &sockets)
            .map_or(MAX_WAIT, |d| d.min(MAX_WAIT));
        if let Some(d) = mdns.as_ref().and_then(|m| m.poll_delay(now, &sockets)) {
            delay = delay.min(d);
        }
        if interest.write.is_some() && delay == Duration::ZERO {
            // Frames are held back: smoltcp has data to send ("now") that the device cannot
            // take yet. POLLOUT wakes the loop the moment it can.
            delay = HELD_WAIT;
        }
        if let Err(e) = wait::wait(&interest, delay) {
            return Err(format!("waiting for frames: {e}"));
        }
        let c = wait.counters();
        server.set_link_dropped(c.dropped);
    }
    server.log_cut(clock.now());
    let s = server.stats();
    let c = wait.counters();
    println!(
        "smolhttpd: stopped after {} connections, {} requests, {} bytes; \
         frames held back {}, dropped {}, sent with no peer {}",
        s.connections, s.requests, s.bytes, c.held, c.dropped, c.unplugged
    );
    Ok(())
}

/// `--ip dhcp`: what the DHCP client has given so far.
struct Lease {
    started: Instant,
    state: LeaseState,
}

#[derive(PartialEq)]
enum LeaseState {
    /// No answer yet, no fallback yet.
    Waiting,
    /// The fallback address, still asking.
    Fallback,
    /// A lease: the address in use.
    Leased(IpCidr),
}

impl Lease {
    /// Applies what the DHCP socket says (a lease, a renewal with another address, a lost
    /// lease) and takes the fallback address after [`DHCP_WAIT`]; each change is logged.
    fn follow(
        &mut self,
        socket: &mut dhcpv4::Socket,
        iface: &mut Interface,
        now: Instant,
        args: &Args,
    ) {
        match socket.poll() {
            Some(dhcpv4::Event::Configured(config)) => {
                let cidr = IpCidr::Ipv4(config.address);
                if self.state != LeaseState::Leased(cidr) {
                    use_address(iface, cidr, config.router);
                    log::info!(
                        "address {cidr} from DHCP (router {}), serving http://{}:{}/",
                        config.router.map_or("none".to_string(), |r| r.to_string()),
                        cidr.address(),
                        args.port
                    );
                    self.state = LeaseState::Leased(cidr);
                }
            }
            // Also the socket's first word, before any lease: nothing to undo then.
            Some(dhcpv4::Event::Deconfigured) if matches!(self.state, LeaseState::Leased(_)) => {
                let fixed = args.ip.fixed();
                use_address(iface, fixed, Some(args.gateway));
                log::warn!("DHCP lease lost; serving on {fixed} until a new one comes");
                self.state = LeaseState::Fallback;
            }
            _ => {}
        }
        if self.state == LeaseState::Waiting && now >= self.started + DHCP_WAIT {
            let fixed = args.ip.fixed();
            use_address(iface, fixed, Some(args.gateway));
            log::info!(
                "no DHCP answer in {} s: serving on {fixed} (still asking)",
                DHCP_WAIT.secs()
            );
            self.state = LeaseState::Fallback;
        }
    }
}

// ------------------------------------------------------------------ QEMU addresses

/// A socket address on the command line: a unix socket path, or an IP address and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Unix(PathBuf),
    Inet(SocketAddr),
}

impl FromStr for SockAddr {
    type Err = String;

    /// `IP:PORT` (`[::1]:PORT` for IPv6; `localhost:PORT` is 127.0.0.1) is TCP/UDP; anything
    /// else is a unix socket path. A path containing `:` needs a `/` (`./a:b`).
    fn from_str(s: &str) -> Result<SockAddr, String> {
        if s.is_empty() {
            return Err("empty address".into());
        }
        if s.contains('/') {
            return Ok(SockAddr::Unix(PathBuf::from(s)));
        }
        let s2 = match s.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => s.to_string(),
        };
        match s2.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("'{s}': port 0 cannot be given to QEMU")),
            Ok(a) => Ok(SockAddr::Inet(a)),
            Err(_) if s.contains(':') => Err(format!(
                "'{s}' is neither IP:PORT (like 127.0.0.1:5555) nor a unix socket path \
                 (a path with ':' needs a '/', like ./{s})"
            )),
            Err(_) => Ok(SockAddr::Unix(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            SockAddr::Inet(a) => write!(f, "{a}"),
        }
    }
}

/// `LOCAL,REMOTE` for `--qemu-dgram`: both unix paths or both IP:PORT of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DgramAddrs {
    pub local: SockAddr,
    pub remote: SockAddr,
}

impl FromStr for DgramAddrs {
    type Err = String;

    fn from_str(s: &str) -> Result<DgramAddrs, String> {
        let (l, r) = s.split_once(',').ok_or_else(|| {
            "expected LOCAL,REMOTE, like 127.0.0.1:5556,127.0.0.1:5555".to_string()
        })?;
        let (local, remote) = (l.trim().parse::<SockAddr>()?, r.trim().parse::<SockAddr>()?);
        match (&local, &remote) {
            (SockAddr::Unix(_), SockAddr::Unix(_)) => {}
            (SockAddr::Inet(a), SockAddr::Inet(b)) if a.is_ipv4() == b.is_ipv4() => {}
            _ => return Err("LOCAL and REMOTE must both be unix paths or both IP:PORT".into()),
        }
        if local == remote {
            return Err("LOCAL and REMOTE must differ".into());
        }
        Ok(DgramAddrs { local, remote })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "/tmp/q.sock".parse::<SockAddr>(),
            Ok(SockAddr::Unix("/tmp/q.sock".into()))
        );
        assert_eq!(
            "q.sock".parse::<SockAddr>(),
            Ok(SockAddr::Unix("q.sock".into()))
        );
        assert_eq!(
            "127.0.0.1:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("127.0.0.1:5555".parse().unwrap()))
        );
        assert_eq!(
            "localhost:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("127.0.0.1:5555".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("[::1]:5555".parse().unwrap()))
        );
        assert!("127.0.0.1:0".parse::<SockAddr>().is_err());
        assert!("host:5555".parse::<SockAddr>().is_err());
        assert!("".parse::<SockAddr>().is_err());
        let d: DgramAddrs = "127.0.0.1:5556,127.0.0.1:5555".parse().unwrap();
        assert_eq!(d.local, SockAddr::Inet("127.0.0.1:5556".parse().unwrap()));
        assert_eq!(d.remote, SockAddr::Inet("127.0.0.1:5555".parse().unwrap()));
        assert!("/tmp/a,/tmp/b".parse::<DgramAddrs>().is_ok());
        assert!("/tmp/a,127.0.0.1:5".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5,[::1]:6".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5,127.0.0.1:5".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5".parse::<DgramAddrs>().is_err());
    }
}
