//! Dead-letter files as `dlq list` and the replay read them: any bytes split into letters and
//! reported unreadable lines, every non-blank line accounted for once, nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let listing = thoth_sinks::parse_letters(data);
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(listing.letters.len() + listing.unreadable.len(), lines);
    for u in &listing.unreadable {
        assert!(u.line >= 1);
    }
});
