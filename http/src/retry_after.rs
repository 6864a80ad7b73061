use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait a `Retry-After` header asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP
/// date), at most `max`; an unreadable value counts as absent. A date in the past is no
/// wait.
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let after = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => {
            let when =
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822)
                    .ok()?;
            let delta = when - time::OffsetDateTime::now_utc();
            Duration::try_from(delta).unwrap_or(Duration::ZERO)
        }
    };
    Some(after.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates_bounded() {
        let max = Duration::from_secs(3600);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, max), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, max), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&h, Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, max), Some(Duration::ZERO));
        for v in [
            "18446744073709551615",
            "99999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            h.insert("retry-after", v.parse().unwrap());
            assert_eq!(retry_after(&h, max), Some(max), "{v}");
        }
        for v in ["soon", "-1", "1.5", ""] {
            h.insert("retry-after", v.parse().unwrap());
            assert_eq!(retry_after(&h, max), None, "{v:?}");
        }
    }
}
