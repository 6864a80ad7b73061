//! The normalized endpoint record (docs/events.md): what fleet rules and `context.endpoint` see,
//! whichever MDM it came from.

use std::borrow::Cow;
use std::sync::Arc;

use thoth_config::MdmKind;

/// One endpoint as an MDM knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRecord {
    pub mdm_device_id: String,
    pub serial: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub owner: Option<String>,
    pub department: Option<String>,
    pub site: Option<String>,
    pub category: Option<String>,
    pub model: Option<String>,
    pub managed: bool,
    pub compliant: Option<bool>,
    pub last_sync: Option<String>,
    /// The Thoth endpoint id, when the MDM carries it.
    pub endpoint_id: Option<String>,
}

impl EndpointRecord {
    /// A field by its documented name, as fleet rules compare it (booleans as `"true"`/`"false"`).
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        fn s(v: &Option<String>) -> Option<Cow<'_, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        match name {
            "mdm_device_id" => Some(Cow::Borrowed(&self.mdm_device_id)),
            "serial" => s(&self.serial),
            "hostname" => s(&self.hostname),
            "os" => s(&self.os),
            "os_version" => s(&self.os_version),
            "owner" => s(&self.owner),
            "department" => s(&self.department),
            "site" => s(&self.site),
            "category" => s(&self.category),
            "model" => s(&self.model),
            "managed" => Some(Cow::Borrowed(if self.managed { "true" } else { "false" })),
            "compliant" => self
                .compliant
                .map(|c| Cow::Borrowed(if c { "true" } else { "false" })),
            "endpoint_id" => s(&self.endpoint_id),
            _ => None,
        }
    }
}

/// Where a set of records came from.
#[derive(Debug, Clone)]
pub struct ProviderSnapshot {
    pub provider: String,
    pub tenant_id: String,
    pub kind: MdmKind,
    /// When the snapshot was taken (the file's modification time), RFC 3339.
    pub taken_at: Arc<str>,
    pub records: Vec<EndpointRecord>,
}
