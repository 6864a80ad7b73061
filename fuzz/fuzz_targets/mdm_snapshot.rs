//! MDM snapshot parsing (Jamf Pro computers-inventory, Graph managedDevices): never panics on
//! any bytes; the index builds from whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_config::MdmKind;
use thoth_enrich::{parse_snapshot, EndpointIndex, ProviderSnapshot};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let kind = if mode & 1 == 0 {
        MdmKind::Jamf
    } else {
        MdmKind::Intune
    };
    if let Ok(records) = parse_snapshot(kind, rest, Some("Thoth Endpoint ID")) {
        let snapshot = ProviderSnapshot {
            provider: "fuzz".into(),
            tenant_id: "acme".into(),
            kind,
            taken_at: "2026-12-01T00:00:00Z".into(),
            records,
        };
        let index = EndpointIndex::build(&[snapshot], &[]);
        let _ = index.len();
    }
});
