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
