//! Reading MDM snapshots in the providers' native list-response formats.
//!
//! * Jamf Pro `computers-inventory`: `{"totalCount", "results": [...]}`, optionally with a
//!   top-level `"departments": [{"id","name"}]` (from `/api/v1/departments`) to name
//!   `userAndLocation.departmentId`.
//! * Microsoft Graph `managedDevices`: `{"value": [...]}`.

use crate::error::MdmError;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::de::{IoRead, SliceRead};
use thoth_config::MdmKind;

use crate::record::EndpointRecord;

/// Parses a snapshot of the given kind.
pub fn parse_snapshot(
    kind: MdmKind,
    bytes: &[u8],
    endpoint_id_attribute: Option<&str>,
) -> Result<Vec<EndpointRecord>, MdmError> {
    parse_from(kind, SliceRead::new(bytes), endpoint_id_attribute)
}

/// Parses a snapshot read from `reader` (a file) without holding its text in memory: a
/// 100 000-endpoint Jamf snapshot is about 48 MB of JSON, a 1 000 000-endpoint one ten times
/// that.
pub fn read_snapshot(
    kind: MdmKind,
    reader: impl std::io::Read,
    endpoint_id_attribute: Option<&str>,
) -> Result<Vec<EndpointRecord>, MdmError> {
    let reader = std::io::BufReader::with_capacity(256 * 1024, reader);
    parse_from(kind, IoRead::new(reader), endpoint_id_attribute)
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    kind: MdmKind,
    read: R,
    endpoint_id_attribute: Option<&str>,
) -> Result<Vec<EndpointRecord>, MdmError> {
    match kind {
        MdmKind::Jamf => parse_jamf(read, endpoint_id_attribute),
        MdmKind::Intune => parse_intune(read),
    }
}

/// Jamf ids are strings in the API but numbers in some exports; accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    S(String),
    N(u64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::S(s) => s,
            Id::N(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct JamfDepartment {
    id: Id,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JamfComputer {
    id: Id,
    general: Option<JamfGeneral>,
    hardware: Option<JamfHardware>,
    user_and_location: Option<JamfUser>,
    operating_system: Option<JamfOs>,
    extension_attributes: Option<Vec<JamfExtension>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JamfGeneral {
    name: Option<String>,
    last_contact_time: Option<String>,
    site: Option<JamfNamed>,
    remote_management: Option<JamfRemote>,
    extension_attributes: Option<Vec<JamfExtension>>,
}

#[derive(Deserialize)]
struct JamfNamed {
    name: Option<String>,
}

#[derive(Deserialize)]
struct JamfRemote {
    managed: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JamfHardware {
    serial_number: Option<String>,
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JamfUser {
    username: Option<String>,
    email: Option<String>,
    department_id: Option<Id>,
}

#[derive(Deserialize)]
struct JamfOs {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct JamfExtension {
    name: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

fn parse_jamf<'de, R: serde_json::de::Read<'de>>(
    read: R,
    attribute: Option<&str>,
) -> Result<Vec<EndpointRecord>, MdmError> {
    let convert = |c: JamfComputer| jamf_record(c, attribute);
    let (mut records, departments) = parse_list(read, "results", &convert).map_err(|e| {
        MdmError::Snapshot(format!("not a Jamf Pro computers-inventory response ({{\"totalCount\", \"results\": [...]}}): {e}"))
    })?;
    // Department names arrive in their own list, before or after the computers.
    let departments: HashMap<String, String> = departments
        .into_iter()
        .map(|d| (d.id.into_string(), d.name))
        .collect();
    for r in &mut records {
        r.department = r
            .department
            .take()
            .and_then(|id| departments.get(&id).cloned());
    }
    Ok(records)
}

/// One computer as a record; `department` holds the department *id* until the names are
/// known.
fn jamf_record(c: JamfComputer, attribute: Option<&str>) -> EndpointRecord {
    let general = c.general;
    let user = c.user_and_location;
    let os = c.operating_system;
    let hardware = c.hardware;
    let endpoint_id = attribute.and_then(|attr| {
        let general_eas = general
            .as_ref()
            .and_then(|g| g.extension_attributes.as_ref());
        c.extension_attributes
            .iter()
            .chain(general_eas)
            .flatten()
            .find(|ea| ea.name.as_deref() == Some(attr))
            .and_then(|ea| ea.values.first().cloned())
            .filter(|v| !v.is_empty())
    });
    let (owner, department) = match user {
        Some(u) => (
            non_empty(u.email).or(non_empty(u.username)),
            u.department_id.map(Id::into_string),
        ),
        None => (None, None),
    };
    let (os_name, os_version) = match os {
        Some(o) => (o.name, o.version),
        None => (None, None),
    };
    let (serial, model) = match hardware {
        Some(h) => (non_empty(h.serial_number), h.model),
        None => (None, None),
    };
    let (hostname, last_sync, site, managed) = match general {
        Some(g) => (
            non_empty(g.name),
            g.last_contact_time,
            g.site.and_then(|s| s.name),
            g.remote_management.and_then(|r| r.managed).unwrap_or(true),
        ),
        None => (None, None, None, true),
    };
    EndpointRecord {
        mdm_device_id: c.id.into_string(),
        serial,
        hostname,
        os: os_name,
        os_version,
        owner,
        department,
        site,
        category: None,
        model,
        managed,
        compliant: None,
        last_sync,
        endpoint_id,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntuneDevice {
    id: String,
    device_name: Option<String>,
    serial_number: Option<String>,
    operating_system: Option<String>,
    os_version: Option<String>,
    user_principal_name: Option<String>,
    email_address: Option<String>,
    device_category_display_name: Option<String>,
    model: Option<String>,
    management_agent: Option<String>,
    compliance_state: Option<String>,
    last_sync_date_time: Option<String>,
}

fn parse_intune<'de, R: serde_json::de::Read<'de>>(
    read: R,
) -> Result<Vec<EndpointRecord>, MdmError> {
    let (records, _) = parse_list(read, "value", &intune_record).map_err(|e| {
        MdmError::Snapshot(format!(
            "not a Microsoft Graph managedDevices response ({{\"value\": [...]}}): {e}"
        ))
    })?;
    Ok(records)
}

fn intune_record(d: IntuneDevice) -> EndpointRecord {
    EndpointRecord {
        mdm_device_id: d.id,
        serial: non_empty(d.serial_number),
        hostname: non_empty(d.device_name),
        os: d.operating_system,
        os_version: d.os_version,
        owner: non_empty(d.user_principal_name).or(non_empty(d.email_address)),
        department: None,
        site: None,
        category: non_empty(d.device_category_display_name),
        model: d.model,
        managed: d
            .management_agent
            .as_deref()
            .is_some_and(|a| a != "unknown"),
        compliant: d.compliance_state.map(|s| s == "compliant"),
        last_sync: d.last_sync_date_time,
        endpoint_id: None,
    }
}

/// Reads a list response `{ <field>: [...], "departments"?: [...], ... }`, converting each
/// element of `field` as soon as it is read: the providers' full objects (several times the
/// size of a record) never all exist at once, which was most of a large snapshot's peak
/// memory.
fn parse_list<'de, Source: serde_json::de::Read<'de>, T: Deserialize<'de>, R>(
    read: Source,
    field: &'static str,
    convert: &dyn Fn(T) -> R,
) -> Result<(Vec<R>, Vec<JamfDepartment>), serde_json::Error> {
    use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::marker::PhantomData;

    struct Items<'f, T, R>(&'f dyn Fn(T) -> R, PhantomData<T>);
    impl<'de, T: Deserialize<'de>, R> DeserializeSeed<'de> for Items<'_, T, R> {
        type Value = Vec<R>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<R>, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, T: Deserialize<'de>, R> Visitor<'de> for Items<'_, T, R> {
        type Value = Vec<R>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<R>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<T>()? {
                out.push((self.0)(item));
            }
            Ok(out)
        }
    }

    struct List<'f, T, R>(&'static str, &'f dyn Fn(T) -> R);
    impl<'de, T: Deserialize<'de>, R> Visitor<'de> for List<'_, T, R> {
        type Value = (Vec<R>, Vec<JamfDepartment>);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an object with `{}`", self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut items = None;
            let mut departments = Vec::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == self.0 {
                    if items.is_some() {
                        return Err(A::Error::duplicate_field(self.0));
                    }
                    items = Some(map.next_value_seed(Items(self.1, PhantomData))?);
                } else if key == "departments" {
                    departments = map.next_value()?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            let items = items.ok_or_else(|| A::Error::missing_field(self.0))?;
            Ok((items, departments))
        }
    }

    let mut de = serde_json::Deserializer::new(read);
    let out = serde::Deserializer::deserialize_map(&mut de, List(field, convert))?;
    de.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jamf_docs_example_normalizes() {
        let body = br#"{"totalCount":1,"results":[{
          "id":"1","udid":"123",
          "general":{"name":"Boalime","lastContactTime":"2018-10-31T18:04:13Z","site":{"id":"1","name":"Eau Claire"},
            "extensionAttributes":[{"definitionId":"7","name":"Thoth Endpoint ID","values":["ep-1"]}]},
          "hardware":{"make":"Apple","model":"13-inch MacBook Pro (Mid 2012)","serialNumber":"C02ZC2QYLVDL"},
          "userAndLocation":{"username":"Madison Anderson","email":"email@com.pl","departmentId":"1"},
          "operatingSystem":{"name":"Mac OS X","version":"10.9.5"}}],
          "departments":[{"id":"1","name":"Engineering"}]}"#;
        let r = &parse_snapshot(MdmKind::Jamf, body, Some("Thoth Endpoint ID")).unwrap()[0];
        assert_eq!(r.mdm_device_id, "1");
        assert_eq!(r.serial.as_deref(), Some("C02ZC2QYLVDL"));
        assert_eq!(r.hostname.as_deref(), Some("Boalime"));
        assert_eq!(r.os.as_deref(), Some("Mac OS X"));
        assert_eq!(r.owner.as_deref(), Some("email@com.pl"));
        assert_eq!(r.department.as_deref(), Some("Engineering"));
        assert_eq!(r.site.as_deref(), Some("Eau Claire"));
        assert!(r.managed);
        assert_eq!(r.compliant, None);
        assert_eq!(r.endpoint_id.as_deref(), Some("ep-1"));
    }

    #[test]
    fn jamf_owner_falls_back_to_username_and_managed_is_read() {
        let body = br#"{"totalCount":1,"results":[{"id":2,
          "general":{"name":"x","remoteManagement":{"managed":false}},
          "userAndLocation":{"username":"jdoe","email":""}}]}"#;
        let r = &parse_snapshot(MdmKind::Jamf, body, None).unwrap()[0];
        assert_eq!(r.mdm_device_id, "2");
        assert_eq!(r.owner.as_deref(), Some("jdoe"));
        assert!(!r.managed);
        assert_eq!(r.department, None);
    }

    #[test]
    fn jamf_departments_may_follow_the_computers_and_results_are_required() {
        let body = br#"{"results":[{"id":"1","userAndLocation":{"departmentId":"7"}},{"id":"2","userAndLocation":{"departmentId":"8"}}],
          "departments":[{"id":7,"name":"Sales"}]}"#;
        let records = parse_snapshot(MdmKind::Jamf, body, None).unwrap();
        assert_eq!(records[0].department.as_deref(), Some("Sales"));
        assert_eq!(records[1].department, None); // unknown id: no name
        let err = parse_snapshot(MdmKind::Jamf, br#"{"totalCount":0}"#, None).unwrap_err();
        assert!(err.to_string().contains("missing field `results`"), "{err}");
        let err =
            parse_snapshot(MdmKind::Intune, br#"{"value":[{"id":"1"}]} x"#, None).unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn reading_from_a_reader_gives_what_parsing_the_text_gives() {
        let body = br#"{"departments":[{"id":"1","name":"Eng"}],"results":[{"id":"1","general":{"name":"h"},"userAndLocation":{"departmentId":"1"}}]}"#;
        let parsed = parse_snapshot(MdmKind::Jamf, body, None).unwrap();
        let read = read_snapshot(MdmKind::Jamf, &body[..], None).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{read:?}"));
        assert_eq!(read[0].department.as_deref(), Some("Eng"));
        let err = read_snapshot(MdmKind::Jamf, &b"{\"results\":[{"[..], None).unwrap_err();
        assert!(err.to_string().contains("EOF"), "{err}");
    }

    #[test]
    fn intune_docs_example_normalizes() {
        let body = br##"{"value":[{"@odata.type":"#microsoft.graph.managedDevice","id":"705c",
          "deviceName":"DESKTOP-1","lastSyncDateTime":"2017-01-01T00:02:49.3205976-08:00",
          "operatingSystem":"Windows","complianceState":"noncompliant","managementAgent":"mdm",
          "osVersion":"10.0","emailAddress":"e@x","userPrincipalName":"","deviceCategoryDisplayName":"Laptops",
          "model":"XPS","serialNumber":"SN1"}]}"##;
        let r = &parse_snapshot(MdmKind::Intune, body, None).unwrap()[0];
        assert_eq!(r.hostname.as_deref(), Some("DESKTOP-1"));
        assert_eq!(r.owner.as_deref(), Some("e@x"));
        assert_eq!(r.category.as_deref(), Some("Laptops"));
        assert_eq!(r.compliant, Some(false));
        assert!(r.managed);
    }

    #[test]
    fn wrong_shapes_say_what_was_expected() {
        let e = parse_snapshot(MdmKind::Intune, br#"{"results":[]}"#, None).unwrap_err();
        assert!(e.to_string().contains("managedDevices"), "{e}");
        let e = parse_snapshot(MdmKind::Jamf, b"[", None).unwrap_err();
        assert!(e.to_string().contains("computers-inventory"), "{e}");
    }
}
