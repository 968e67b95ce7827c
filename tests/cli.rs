//! The binaries' first contact: bad flags and a missing tap end with one clear line and a
//! non-zero exit, no backtrace; the chat client says what to do when nothing listens.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SERVER: &str = env!("CARGO_BIN_EXE_smolhttpd");
const CHAT: &str = env!("CARGO_BIN_EXE_chat");

#[test]
fn a_missing_tap_says_how_to_make_one() {
    let (code, err) = run(SERVER, &["--tap", "nosuchtap9"]);
    assert_ne!(code, 0);
    assert_eq!(
        err.trim(),
        "smolhttpd: error: there is no TAP interface 'nosuchtap9'; create it with: sudo scripts/tap-up.sh nosuchtap9"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn an_unopenable_tun_device_is_named_with_the_fix() {
    // `lo` exists, so the tap check passes and the clone device is what fails.
    let out = Command::new(SERVER)
        .args(["--tap", "lo"])
        .env("SMOLHTTPD_TUN", "/nonexistent/tun")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "smolhttpd: error: /nonexistent/tun does not exist: load the tun module (sudo modprobe tun)"
    );
    // A clone device this user may not open (mode 0600, like /dev/net/tun on some machines):
    // root runs the server as `nobody` (setpriv), since root opens anything.
    let dir = std::env::temp_dir().join(format!("smolhttpd-tun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let locked = dir.join("tun");
    std::fs::write(&locked, b"").unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let root = running_as_root();
    let others_can_run = std::path::Path::new(SERVER).ancestors().all(|p| {
        p.as_os_str().is_empty()
            || std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o001
                != 0
    });
    if root && !others_can_run {
        std::fs::remove_dir_all(&dir).unwrap();
        eprintln!("skipped the permission case: `nobody` cannot reach {SERVER}");
        return;
    }
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", SERVER]);
        c
    } else {
        Command::new(SERVER)
    };
    let out = cmd
        .args(["--tap", "lo"])
        .env("SMOLHTTPD_TUN", &locked)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "smolhttpd: error: no permission to open {0}; allow it with: sudo chmod 0666 {0} (or run as root)",
            locked.display()
        )
    );
}

/// True when the tests run as root (the owner of `/proc/self` is uid 0).
fn running_as_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

#[test]
fn bad_flag_values_are_refused_with_the_expected_form() {
    for (args, hint) in [
        (&["--ip", "300.1.2.3/24"][..], "like 192.168.69.1/24"),
        (&["--ip", "192.168.69.1"][..], "like 192.168.69.1/24"),
        (&["--mac", "ff:ff:ff:ff:ff:ff"][..], "unicast MAC"),
        (&["--port", "0"][..], "0"),
        (&["--mtu", "100"][..], "100"),
        (&["--tx-buffer", "12"][..], "between 1024"),
        (&["--drop-chance", "101"][..], "101"),
        (&["--gateway", "nope"][..], "nope"),
        (
            &["--ip6", "192.168.69.1/24"][..],
            "expected an IPv6 address",
        ),
        (
            &["--ip6", "fe80::1/64"][..],
            "link-local address comes from --mac",
        ),
        (&["--ip6", "fd69::1"][..], "like fd69::1/64, or none"),
        (&["--gateway6", "fd69::zz"][..], "fd69::zz"),
        (&["--send-timeout", "0"][..], "whole seconds from 1 to 3600"),
        (
            &["--head-timeout", "2.5"][..],
            "whole seconds from 1 to 3600",
        ),
    ] {
        let (code, err) = run(SERVER, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("error: invalid value"), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn the_chat_client_says_when_nothing_listens() {
    // A loopback port nobody listens on: bind one, learn its number, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, err) = run(CHAT, &["127.0.0.1", &port.to_string(), "--once"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("is smolhttpd running?"), "{err}");
}

#[test]
fn a_gateway_outside_the_network_is_refused_in_one_line() {
    let (code, err) = run(
        SERVER,
        &["--ip", "192.168.69.1/24", "--gateway", "10.0.0.1"],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "smolhttpd: error: --gateway 10.0.0.1 is not in --ip 192.168.69.1/24's network"
        ),
        "{err}"
    );
}

#[test]
fn an_ipv6_gateway_outside_the_network_is_refused_in_one_line() {
    let (code, err) = run(SERVER, &["--ip6", "fd69::1/64", "--gateway6", "fd00::1"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "smolhttpd: error: --gateway6 fd00::1 is not in --ip6 fd69::1/64's network"
        ),
        "{err}"
    );
}

#[test]
fn no_start_line_when_a_setup_step_fails() {
    // The QEMU stream device needs no root; the pcap file cannot be created.
    let dir = std::env::temp_dir().join(format!("smolhttpd-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("q.sock");
    let out = Command::new(SERVER)
        .args([
            "--qemu-stream",
            sock.to_str().unwrap(),
            "--pcap",
            "/nonexistent/dir/x.pcap",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stdout.contains("serving"),
        "a start line before the error: {stdout}"
    );
    assert!(
        stderr.contains("cannot create the pcap file /nonexistent/dir/x.pcap"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
