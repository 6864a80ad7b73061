//! RFC 3339 timestamps as the gateway parses them (event `time`, saved check-in state): any
//! text either parses to a UTC time within the years 0000-9999 or is refused; what parses
//! formats and parses back to the same millisecond. Nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_event::{format_rfc3339_millis, parse_rfc3339};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = parse_rfc3339(text) {
        assert_eq!(t.offset(), time::UtcOffset::UTC);
        assert!((0..=9999).contains(&t.year()), "{text}");
        let back = parse_rfc3339(&format_rfc3339_millis(t)).expect("its own format parses");
        assert_eq!(
            back.unix_timestamp_nanos().div_euclid(1_000_000),
            t.unix_timestamp_nanos().div_euclid(1_000_000)
        );
    }
});
