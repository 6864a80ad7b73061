//! A Jamf Pro `computers-inventory` snapshot whose endpoints are the ones the generator sends
//! events for ([`crate::generate::endpoint_identity`]), so every event is enriched.

use std::io::{self, Write};

use crate::generate::endpoint_identity;

const DEPARTMENTS: [&str; 4] = ["Engineering", "Sales", "Finance", "Support"];

/// Writes `endpoints` computers of `tenant` as Jamf's list response, streaming (a million
/// endpoints is ~600 MB; nothing is held in memory). The Thoth endpoint id is the extension
/// attribute `Thoth Endpoint ID`, as the gateway's example configs expect.
pub fn write_jamf(tenant: &str, endpoints: u32, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "{{\"totalCount\":{endpoints},\"departments\":[")?;
    for (i, name) in DEPARTMENTS.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{sep}{{\"id\":\"{}\",\"name\":\"{name}\"}}", i + 1)?;
    }
    out.write_all(b"],\"results\":[")?;
    for n in 1..=endpoints {
        let ep = endpoint_identity(tenant, n);
        let sep = if n == 1 { "" } else { "," };
        let department = n as usize % DEPARTMENTS.len() + 1;
        write!(
            out,
            "{sep}\n{{\"id\":\"{n}\",\"general\":{{\"name\":\"{}\",\"platform\":\"Mac\",\
             \"lastContactTime\":\"2026-12-01T09:00:00Z\",\"site\":{{\"name\":\"Berlin\"}},\
             \"remoteManagement\":{{\"managed\":true}},\"extensionAttributes\":[{{\"name\":\
             \"Thoth Endpoint ID\",\"values\":[\"{}\"]}}]}},\"hardware\":{{\"serialNumber\":\"{}\",\
             \"model\":\"MacBook Pro (14-inch, 2023)\"}},\"userAndLocation\":{{\"username\":\
             \"user{n}\",\"email\":\"{}\",\"departmentId\":\"{department}\"}},\
             \"operatingSystem\":{{\"name\":\"macOS\",\"version\":\"15.1\"}}}}",
            ep.hostname, ep.endpoint_id, ep.serial, ep.user,
        )?;
    }
    out.write_all(b"\n]}\n")
}

/// Writes `endpoints` devices of `tenant` as Microsoft Graph's `managedDevices` list response,
/// streaming. Intune carries no Thoth endpoint id, so the gateway matches the generator's
/// decisions on their serial and its check-ins (which carry none) on their hostname: the
/// slower lookups a mixed Jamf / Intune fleet costs.
pub fn write_intune(tenant: &str, endpoints: u32, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(
        b"{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#deviceManagement/managedDevices\",\"value\":[",
    )?;
    for n in 1..=endpoints {
        let ep = endpoint_identity(tenant, n);
        let sep = if n == 1 { "" } else { "," };
        let compliance = if n % 10 == 0 {
            "noncompliant"
        } else {
            "compliant"
        };
        write!(
            out,
            "{sep}\n{{\"@odata.type\":\"#microsoft.graph.managedDevice\",\"id\":\"{n:08x}-0000-4000-8000-{n:012x}\",\
             \"deviceName\":\"{}\",\"managedDeviceOwnerType\":\"company\",\
             \"lastSyncDateTime\":\"2026-12-01T09:00:00Z\",\"operatingSystem\":\"Windows\",\
             \"osVersion\":\"10.0.26100.2314\",\"complianceState\":\"{compliance}\",\
             \"managementAgent\":\"mdm\",\"emailAddress\":\"{}\",\"userPrincipalName\":\"{}\",\
             \"deviceCategoryDisplayName\":\"{}\",\"model\":\"ThinkPad X1 Carbon Gen 12\",\
             \"manufacturer\":\"LENOVO\",\"serialNumber\":\"{}\"}}",
            ep.hostname,
            ep.user,
            ep.user,
            DEPARTMENTS[n as usize % DEPARTMENTS.len()],
            ep.serial,
        )?;
    }
    out.write_all(b"\n]}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intune_snapshot_is_graph_json_naming_the_generated_endpoints_by_serial_and_name() {
        let mut out = Vec::new();
        write_intune("globex", 3, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let devices = v["value"].as_array().unwrap();
        assert_eq!(devices.len(), 3);
        let ep = endpoint_identity("globex", 3);
        assert_eq!(devices[2]["serialNumber"], ep.serial.as_str());
        assert_eq!(devices[2]["deviceName"], ep.hostname.as_str());
        assert_eq!(devices[2]["userPrincipalName"], ep.user.as_str());
    }

    #[test]
    fn the_snapshot_is_jamf_json_naming_the_generated_endpoints() {
        let mut out = Vec::new();
        write_jamf("acme", 3, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["totalCount"], 3);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        let second = &results[1];
        let ep = endpoint_identity("acme", 2);
        assert_eq!(
            second["general"]["extensionAttributes"][0]["values"][0],
            ep.endpoint_id.as_str()
        );
        assert_eq!(second["hardware"]["serialNumber"], ep.serial.as_str());
        assert_eq!(second["userAndLocation"]["email"], ep.user.as_str());
    }
}
