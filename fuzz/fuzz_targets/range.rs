//! The Range header parser: no panic, and a satisfiable range lies inside the representation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolhttpd::server::{parse_range, RangeSpec};

fuzz_target!(|input: (&[u8], u32)| {
    let (value, len) = input;
    let len = u64::from(len);
    if let RangeSpec::Bytes(a, b) = parse_range(value, len) {
        assert!(a <= b && b < len, "{a}-{b} of {len}");
    }
});
