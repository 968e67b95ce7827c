//! The access log: one line at info per request, written when the response is done (or cut).
//!
//! `peer method target status bytes ms [note]`, e.g.
//! `192.168.69.100:51234 GET /img/car.jpeg 200 14595 3ms`. Nothing here allocates.

use core::fmt;

use smoltcp::time::Instant;
#[cfg(feature = "ipv6")]
use smoltcp::wire::IpAddress;
use smoltcp::wire::IpEndpoint;

use crate::http::{Request, Status};

/// What the log line says about the request a slot is answering.
#[derive(Debug)]
pub(crate) struct LogLine {
    method: heapless::String<8>,
    /// The target, cut at 64 bytes.
    target: heapless::String<64>,
    /// 0: nothing to log.
    status: u16,
    /// Body bytes queued so far.
    pub(crate) bytes: usize,
    start: Instant,
}

impl LogLine {
    pub(crate) const fn new() -> Self {
        LogLine {
            method: heapless::String::new(),
            target: heapless::String::new(),
            status: 0,
            bytes: 0,
            start: Instant::ZERO,
        }
    }

    /// Starts the line of a request answered with `status`.
    pub(crate) fn start(&mut self, req: &Request, status: Status, now: Instant) {
        let or_dash = |s: &'static str, v: &str| if v.is_empty() { s } else { "" };
        self.method.clear();
        self.target.clear();
        push_cut(&mut self.method, req.method_str);
        push_cut(&mut self.method, or_dash("-", req.method_str));
        push_cut(&mut self.target, req.target);
        push_cut(&mut self.target, or_dash("-", req.target));
        self.status = status.code();
        self.bytes = 0;
        self.start = now;
    }

    /// Logs the finished (or abandoned) request, once.
    pub(crate) fn finish(&mut self, peer: Option<IpEndpoint>, now: Instant, note: &str) {
        if self.status == 0 {
            return;
        }
        crate::logging::info!(
            "{} {} {} {} {} {}ms{}{}",
            PeerDisplay(peer),
            self.method,
            self.target,
            self.status,
            self.bytes,
            (now - self.start).total_millis(),
            if note.is_empty() { "" } else { " " },
            note
        );
        self.status = 0;
    }
}

/// Appends what fits of `s`, whole characters only.
fn push_cut<const N: usize>(out: &mut heapless::String<N>, s: &str) {
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
}

/// `peer` or `-` in log lines: `192.168.69.100:41234`, `[fd69::100]:41234`.
pub(crate) struct PeerDisplay(pub(crate) Option<IpEndpoint>);

impl fmt::Display for PeerDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            #[cfg(feature = "ipv6")]
            Some(IpEndpoint {
                addr: IpAddress::Ipv6(addr),
                port,
            }) => write!(f, "[{addr}]:{port}"),
            Some(ep) => write!(f, "{ep}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;
    use smoltcp::wire::Ipv4Address;

    #[test]
    fn peers_print_as_urls_write_them() {
        let v4 = IpEndpoint::new(Ipv4Address::new(192, 168, 69, 100).into(), 41234);
        assert_eq!(PeerDisplay(Some(v4)).to_string(), "192.168.69.100:41234");
        assert_eq!(PeerDisplay(None).to_string(), "-");
        #[cfg(feature = "ipv6")]
        {
            use smoltcp::wire::Ipv6Address;
            let v6 = IpEndpoint::new(
                Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 0x100).into(),
                41234,
            );
            // RFC 3986's form: the port cannot be mistaken for the address's last group.
            assert_eq!(PeerDisplay(Some(v6)).to_string(), "[fd69::100]:41234");
        }
    }
}
