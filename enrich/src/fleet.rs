//! Fleet rules: the first rule whose `when` matches an endpoint record assigns its fleet.

use thoth_config::FleetRule;

use crate::record::EndpointRecord;

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The first rule of `tenant_id` (or of any tenant) that matches the record.
pub fn assign_fleet<'r>(
    rules: &'r [FleetRule],
    tenant_id: &str,
    record: &EndpointRecord,
) -> Option<&'r FleetRule> {
    rules.iter().find(|rule| {
        rule.tenant_id.as_deref().is_none_or(|t| t == tenant_id)
            && rule.when.iter().all(|(field, pattern)| {
                record.field(field).is_some_and(|v| glob_match(pattern, &v))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("macOS", "macOS"));
        assert!(!glob_match("macOS", "macOS 15"));
        assert!(glob_match("mac*", "macOS"));
        assert!(glob_match("*OS", "macOS"));
        assert!(glob_match("m*c*S", "macOS"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*a", "a"));
        assert!(!glob_match("Mac*", "macOS"));
    }

    fn rule(tenant: Option<&str>, when: &[(&str, &str)], id: &str) -> FleetRule {
        FleetRule {
            tenant_id: tenant.map(str::to_string),
            when: when
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            fleet_id: id.into(),
            fleet_name: id.into(),
        }
    }

    #[test]
    fn first_matching_rule_of_the_tenant_wins() {
        let rules = vec![
            rule(Some("globex"), &[("os", "*")], "globex-all"),
            rule(
                Some("acme"),
                &[("department", "Engineering"), ("os", "mac*")],
                "eng-macs",
            ),
            rule(None, &[("managed", "true")], "managed"),
        ];
        let mut r = EndpointRecord {
            department: Some("Engineering".into()),
            os: Some("macOS".into()),
            managed: true,
            ..Default::default()
        };
        assert_eq!(
            assign_fleet(&rules, "acme", &r).unwrap().fleet_id,
            "eng-macs"
        );
        assert_eq!(
            assign_fleet(&rules, "globex", &r).unwrap().fleet_id,
            "globex-all"
        );
        r.os = Some("Windows".into());
        assert_eq!(
            assign_fleet(&rules, "acme", &r).unwrap().fleet_id,
            "managed"
        );
        r.managed = false;
        assert!(assign_fleet(&rules, "acme", &r).is_none());
    }
}
