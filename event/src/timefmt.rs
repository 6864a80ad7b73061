//! RFC 3339 timestamps as the gateway writes them: UTC, millisecond precision, `Z`.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, as `2026-11-28T10:00:00.120Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339_millis(OffsetDateTime::now_utc())
}

/// Formats a time as UTC RFC 3339 with milliseconds.
pub fn format_rfc3339_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_millis() {
        let t = parse_rfc3339("2026-11-28T11:00:00.12+01:00").unwrap();
        assert_eq!(format_rfc3339_millis(t), "2026-11-28T10:00:00.120Z");
    }
}
