//! Check-ins in the shared state: one sorted set whose members are (tenant, endpoint) and
//! whose scores are the last receive time in Unix milliseconds. `ZADD GT` keeps the newest
//! whichever replica writes it; a replica reads what changed since a time with
//! `ZRANGEBYSCORE`.

/// One check-in: tenant, endpoint, receive time (Unix ms).
pub type FleetCheckin = (String, String, i64);

/// The member of a (tenant, endpoint): the tenant's length, a colon, the tenant, the
/// endpoint — unambiguous whatever characters the ids hold.
pub fn member(tenant: &str, endpoint: &str) -> String {
    format!("{}:{tenant}{endpoint}", tenant.len())
}

/// The (tenant, endpoint) of a member, `None` for one this build did not write.
pub fn parse_member(member: &str) -> Option<(&str, &str)> {
    let (len, rest) = member.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if !rest.is_char_boundary(len) || len > rest.len() {
        return None;
    }
    let (tenant, endpoint) = rest.split_at(len);
    (!tenant.is_empty() && !endpoint.is_empty()).then_some((tenant, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_whatever_the_ids_hold() {
        for (t, e) in [("acme", "ep-1"), ("a:b", "3:c"), ("ü", "ß:"), ("12", "34")] {
            assert_eq!(parse_member(&member(t, e)), Some((t, e)));
        }
    }

    #[test]
    fn a_member_this_build_did_not_write_is_refused_not_misread() {
        for m in [
            "",
            "x",
            "4:abc",
            "a:b",
            "0:ep",
            "1:üx",
            "99999999999999999999:x",
            "4:acme",
        ] {
            assert_eq!(parse_member(m), None, "{m:?}");
        }
    }
}
