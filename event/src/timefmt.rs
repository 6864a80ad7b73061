//! RFC 3339 timestamps as the gateway writes them: UTC, millisecond precision, `Z`.
//!
//! Every time the gateway parses is range-checked here: RFC 3339 allows years 0000–9999 and
//! offsets up to ±23:59, so `9999-12-31T23:59:59-23:59` is well-formed but lies in year 10000
//! once converted to UTC. Such a value is refused as out of range instead of reaching code that
//! converts it (and would panic).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The earliest instant the gateway accepts or writes: `0000-01-01T00:00:00Z`.
fn earliest() -> OffsetDateTime {
    time::macros::datetime!(0000-01-01 00:00:00 UTC)
}

/// The latest instant the gateway accepts or writes: `9999-12-31T23:59:59.999999999Z`.
fn latest() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC)
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0}")]
    Format(String),
    #[error("out of range: in UTC it falls outside the years 0000-9999")]
    OutOfRange,
}

/// Now, as `2026-11-28T10:00:00.120Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339_millis(OffsetDateTime::now_utc())
}

/// Now, in milliseconds since the Unix epoch (0 on a clock set before 1970): the WAL's append
/// times and the delivery latencies measured from them.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix milliseconds `ms` as seconds with three decimals (`1795860000.120`).
pub fn write_epoch_ms(out: &mut Vec<u8>, ms: i128) {
    use std::io::Write;
    // The sign apart, so that a millisecond before 1970 is -0.001, not -1.999; u64 formats
    // faster than i128, and every time of the years 0000–9999 fits.
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs() as u64;
    let (secs, millis) = (abs / 1000, abs % 1000);
    write!(out, "{sign}{secs}.{millis:03}").expect("writing to a Vec cannot fail");
}

/// Formats a time as UTC RFC 3339 with milliseconds. A time outside the years 0000–9999 in UTC
/// (which [`parse_rfc3339`] never returns) is written as the nearest end of that range.
pub fn format_rfc3339_millis(t: OffsetDateTime) -> String {
    let t = to_utc(t).unwrap_or_else(|| if t < earliest() { earliest() } else { latest() });
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Formats a file time (say, an mtime) like [`format_rfc3339_millis`]; a time outside the years
/// 0000–9999 (`touch -d` can set one) saturates instead of panicking as `From<SystemTime>` does.
pub fn format_system_time(t: std::time::SystemTime) -> String {
    let nanos = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => i128::try_from(e.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        if nanos < 0 {
            earliest()
        } else {
            latest()
        }
    });
    format_rfc3339_millis(t)
}

/// `t` in UTC, when that lies within the years 0000–9999.
fn to_utc(t: OffsetDateTime) -> Option<OffsetDateTime> {
    t.checked_to_offset(UtcOffset::UTC)
        .filter(|u| (0..=9999).contains(&u.year()))
}

/// Parses an RFC 3339 timestamp; the result is in UTC and within the years 0000–9999.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, TimeError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| TimeError::Format(e.to_string()))?;
    to_utc(t).ok_or(TimeError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_millis() {
        let t = parse_rfc3339("2026-11-28T11:00:00.12+01:00").unwrap();
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!(format_rfc3339_millis(t), "2026-11-28T10:00:00.120Z");
    }

    #[test]
    fn offsets_that_leave_the_year_range_are_refused() {
        for s in [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:00:00-01:00",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert_eq!(parse_rfc3339(s), Err(TimeError::OutOfRange), "{s}");
        }
        for s in [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59+23:59",
            "0000-01-01T00:00:00Z",
            "0000-01-01T00:00:00-23:59",
        ] {
            let t = parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                parse_rfc3339(&format_rfc3339_millis(t)),
                Ok(t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
                    .unwrap())
            );
        }
        assert!(matches!(
            parse_rfc3339("yesterday"),
            Err(TimeError::Format(_))
        ));
    }

    #[test]
    fn file_times_never_panic() {
        let epoch = std::time::UNIX_EPOCH;
        assert_eq!(format_system_time(epoch), "1970-01-01T00:00:00.000Z");
        let far = epoch + std::time::Duration::from_secs(400_000_000_000);
        assert_eq!(format_system_time(far), "9999-12-31T23:59:59.999Z");
        let before = epoch - std::time::Duration::from_secs(400_000_000_000);
        assert_eq!(format_system_time(before), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn formatting_never_panics_and_saturates() {
        let far = time::macros::datetime!(9999-12-31 23:59:59 -23:59);
        assert_eq!(format_rfc3339_millis(far), "9999-12-31T23:59:59.999Z");
        let early = time::macros::datetime!(0000-01-01 00:00:00 +23:59);
        assert_eq!(format_rfc3339_millis(early), "0000-01-01T00:00:00.000Z");
    }

    proptest::proptest! {
        /// Any timestamp of the RFC 3339 grammar, with any offset: parsing never panics, what
        /// parses is in UTC within range, and formatting it parses back to the same instant
        /// (to the millisecond).
        #[test]
        fn every_well_formed_timestamp_parses_in_range_or_is_refused(
            year in 0u32..=9999, month in 1u32..=12, day in 1u32..=31,
            hour in 0u32..=23, minute in 0u32..=59, second in 0u32..=60,
            frac in proptest::option::of("[0-9]{1,9}"),
            offset in proptest::option::of((proptest::bool::ANY, 0u32..=23, 0u32..=59)),
        ) {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            let offset = match offset {
                None => "Z".to_string(),
                Some((east, h, m)) => format!("{}{h:02}:{m:02}", if east { '+' } else { '-' }),
            };
            let s = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{frac}{offset}");
            if let Ok(t) = parse_rfc3339(&s) {
                proptest::prop_assert_eq!(t.offset(), UtcOffset::UTC);
                proptest::prop_assert!((0..=9999).contains(&t.year()));
                let back = parse_rfc3339(&format_rfc3339_millis(t)).unwrap();
                proptest::prop_assert_eq!(back.unix_timestamp_nanos().div_euclid(1_000_000), t.unix_timestamp_nanos().div_euclid(1_000_000));
            }
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
