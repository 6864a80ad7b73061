//! The members of `context.endpoint` after `id` (hostname, serial, …, mdm), no braces, written
//! once per endpoint when the index is built, in seven runs: the endpoint's own values
//! alternating with what endpoints commonly share (the OS and its version; the department,
//! site, category, model and MDM provider; whether it is managed and compliant). The index
//! stores each shared run once for all the endpoints that have it.

use std::fmt;

use crate::record::EndpointRecord;

/// Runs 0, 2, 4, 6 are the endpoint's own; 1, 3, 5 are commonly shared.
pub const RUNS: usize = 7;

/// Whether run `i` is one endpoints commonly share.
pub fn is_shared(run: usize) -> bool {
    run % 2 == 1
}

/// The members as their runs, borrowed; written out in order they are the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Members<'a> {
    pub runs: [&'a str; RUNS],
}

impl Members<'_> {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for run in self.runs {
            out.extend_from_slice(run.as_bytes());
        }
    }

    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Members<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.runs.iter().try_for_each(|run| f.write_str(run))
    }
}

/// A reusable buffer the members of one record are written into.
#[derive(Debug, Default)]
pub struct MembersWriter {
    text: Vec<u8>,
    ends: [usize; RUNS],
    /// No member written yet at the current nesting level (no comma before the next).
    first: bool,
}

impl MembersWriter {
    /// Writes the members of `r` (`kind`: the MDM's name) and returns them.
    pub fn write(&mut self, r: &EndpointRecord, kind: &str) -> Members<'_> {
        self.text.clear();
        self.first = true;
        self.string("hostname", r.hostname.as_deref());
        self.string("serial", r.serial.as_deref());
        self.end_run(0);
        self.string("os", r.os.as_deref());
        self.string("os_version", r.os_version.as_deref());
        self.end_run(1);
        self.string("owner", r.owner.as_deref());
        self.end_run(2);
        self.string("department", r.department.as_deref());
        self.string("site", r.site.as_deref());
        self.string("category", r.category.as_deref());
        self.string("model", r.model.as_deref());
        self.key("mdm");
        self.text.push(b'{');
        self.first = true;
        self.string("provider", Some(kind));
        self.key("device_id");
        self.end_run(3);
        self.json_string(&r.mdm_device_id);
        self.end_run(4);
        self.key("managed");
        self.boolean(r.managed);
        if let Some(compliant) = r.compliant {
            self.key("compliant");
            self.boolean(compliant);
        }
        self.end_run(5);
        self.string("last_sync", r.last_sync.as_deref());
        self.text.push(b'}');
        self.end_run(6);
        let mut runs = [""; RUNS];
        let mut start = 0;
        for (run, &end) in runs.iter_mut().zip(&self.ends) {
            // Runs end at ASCII punctuation, so each is UTF-8 on its own.
            *run = std::str::from_utf8(&self.text[start..end]).expect("serde_json writes UTF-8");
            start = end;
        }
        Members { runs }
    }

    fn end_run(&mut self, run: usize) {
        self.ends[run] = self.text.len();
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.text.push(b',');
        }
        self.first = false;
        self.json_string(key);
        self.text.push(b':');
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.key(key);
            self.json_string(value);
        }
    }

    fn boolean(&mut self, value: bool) {
        self.text
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn json_string(&mut self, s: &str) {
        serde_json::to_writer(&mut self.text, s).expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    // The members as serde writes the same fields as a struct: what the runs must equal.
    #[derive(Serialize)]
    struct MdmJson<'a> {
        provider: &'a str,
        device_id: &'a str,
        managed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        compliant: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_sync: Option<&'a str>,
    }

    #[derive(Serialize)]
    struct EndpointJson<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        serial: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        os: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        os_version: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        department: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        site: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        category: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<&'a str>,
        mdm: MdmJson<'a>,
    }

    fn by_serde(r: &EndpointRecord, kind: &str) -> String {
        let json = serde_json::to_string(&EndpointJson {
            hostname: r.hostname.as_deref(),
            serial: r.serial.as_deref(),
            os: r.os.as_deref(),
            os_version: r.os_version.as_deref(),
            owner: r.owner.as_deref(),
            department: r.department.as_deref(),
            site: r.site.as_deref(),
            category: r.category.as_deref(),
            model: r.model.as_deref(),
            mdm: MdmJson {
                provider: kind,
                device_id: &r.mdm_device_id,
                managed: r.managed,
                compliant: r.compliant,
                last_sync: r.last_sync.as_deref(),
            },
        })
        .unwrap();
        json[1..json.len() - 1].to_string()
    }

    #[test]
    fn the_runs_are_what_serde_writes_for_every_combination_of_fields() {
        let odd = "a \"quoted\" \\ value\n\u{1}é😀";
        let mut w = MembersWriter::default();
        // Every subset of the nine optional strings (2^9), with odd and plain values.
        for mask in 0u32..(1 << 9) {
            let v = |bit: u32, plain: &'static str| -> Option<String> {
                (mask & (1 << bit) != 0).then(|| {
                    if mask % 3 == 0 {
                        format!("{plain}{odd}")
                    } else {
                        plain.to_string()
                    }
                })
            };
            let r = EndpointRecord {
                mdm_device_id: if mask % 5 == 0 {
                    odd.into()
                } else {
                    "42".into()
                },
                hostname: v(0, "host"),
                serial: v(1, "SN1"),
                os: v(2, "macOS"),
                os_version: v(3, "15.1"),
                owner: v(4, "u@x"),
                department: v(5, "Eng"),
                site: v(6, "Berlin"),
                category: v(7, "Laptops"),
                model: v(8, "MacBook"),
                managed: mask % 2 == 0,
                compliant: [None, Some(true), Some(false)][(mask % 3) as usize],
                last_sync: (mask % 7 != 0).then(|| "2026-12-01T09:00:00Z".to_string()),
                endpoint_id: None,
            };
            let members = w.write(&r, "jamf");
            assert_eq!(
                members.to_string(),
                by_serde(&r, "jamf"),
                "fields {mask:09b}"
            );
            let mut bytes = Vec::new();
            members.write_to(&mut bytes);
            assert_eq!(bytes.len(), members.len());
            assert!(!members.is_empty(), "the mdm member is always there");
        }
    }

    #[test]
    fn the_shared_runs_hold_no_value_of_the_endpoints_own() {
        let r = EndpointRecord {
            mdm_device_id: "D-1".into(),
            hostname: Some("host-1".into()),
            serial: Some("SN-1".into()),
            os: Some("macOS".into()),
            owner: Some("u1@x".into()),
            model: Some("MacBook".into()),
            last_sync: Some("2026-12-01T09:00:01Z".into()),
            managed: true,
            ..Default::default()
        };
        let mut w = MembersWriter::default();
        let members = w.write(&r, "jamf");
        for (i, run) in members.runs.iter().enumerate() {
            if is_shared(i) {
                for own in ["D-1", "host-1", "SN-1", "u1@x", "09:00:01"] {
                    assert!(!run.contains(own), "run {i} {run:?} holds {own}");
                }
            }
        }
        assert_eq!(members.runs[1], r#","os":"macOS""#);
        assert_eq!(members.runs[4], r#""D-1""#);
    }
}
