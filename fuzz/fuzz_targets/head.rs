//! The request head parser and path normaliser on arbitrary bytes: no panic, and what they
//! accept has the shape they promise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolhttpd::config::{MAX_HEADERS, REQUEST_BUF};
use smolhttpd::http::{self, Parse};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(REQUEST_BUF)];
    let full = data.len() == REQUEST_BUF;
    match http::parse::<MAX_HEADERS>(data, full) {
        Parse::Done(req) => {
            assert!(req.head_len <= data.len());
            if let Ok((path, _query)) = http::split_target(req.target) {
                let mut out = heapless::Vec::<u8, 256>::new();
                if http::normalize(path, &mut out).is_ok() {
                    let s = core::str::from_utf8(&out).expect("normalised paths are UTF-8");
                    assert!(s.starts_with('/'));
                    assert!(!s.split('/').any(|seg| seg == ".." || seg == "."));
                    assert!(!s.contains('\0') && !s.contains('\\') && !s.contains("//"));
                }
            }
        }
        Parse::Partial => assert!(!full, "a full buffer is always a verdict"),
        Parse::Reject(status) => assert!(status.is_error()),
    }
});
