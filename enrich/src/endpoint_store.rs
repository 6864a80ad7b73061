//! One provider's endpoints, stored compactly: every endpoint's strings one after the other
//! in a single text, and per endpoint only where they end. Sized for 10^5–10^6 endpoints,
//! where one allocation per string (five per endpoint, each with its allocator rounding and a
//! 16-byte pointer) cost more than the strings themselves.

use std::sync::Arc;

/// An endpoint as an enrichment reads it, borrowed from its provider's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedEndpoint<'a> {
    /// The MDM's id of the device.
    pub mdm_device_id: &'a str,
    /// The Thoth endpoint id the MDM carries, if any (the key of the id lookup).
    pub endpoint_id: Option<&'a str>,
    /// The `context.fleet` object of the matching rule, if any.
    pub fleet_json: Option<&'a str>,
    /// The members of `context.endpoint` after `id` (hostname, serial, …, mdm), no braces.
    pub endpoint_members: &'a str,
    /// When the provider's snapshot was taken.
    pub snapshot: &'a str,
}

/// The strings one endpoint is stored with, in the order they lie in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointText<'a> {
    pub endpoint_members: &'a str,
    pub mdm_device_id: &'a str,
    pub endpoint_id: Option<&'a str>,
    pub serial: Option<&'a str>,
    /// The key of the hostname lookup: the hostname in lower case.
    pub host_key: Option<&'a str>,
}

const MEMBERS: usize = 0;
const DEVICE_ID: usize = 1;
const ENDPOINT_ID: usize = 2;
const SERIAL: usize = 3;
const HOST_KEY: usize = 4;

/// Where one endpoint's strings end in the text; the first starts where the previous
/// endpoint's last ends. 48 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ends: [usize; 5],
    /// Bit `i` set: string `i` is absent (not merely empty).
    absent: u8,
    /// An index into `fleets`, or `NO_FLEET`.
    fleet: u32,
}

const NO_FLEET: u32 = u32::MAX;

/// The endpoints of one provider, in snapshot order.
#[derive(Debug, Default)]
pub struct EndpointStore {
    text: String,
    slots: Vec<Slot>,
    /// One `context.fleet` JSON per fleet rule, shared by the endpoints it matches.
    fleets: Vec<Arc<str>>,
    snapshot: Arc<str>,
}

impl EndpointStore {
    /// An empty store for about `capacity` endpoints of a snapshot taken at `snapshot`, with
    /// the fleets they may be given.
    pub fn new(capacity: usize, fleets: Vec<Arc<str>>, snapshot: Arc<str>) -> EndpointStore {
        EndpointStore {
            text: String::new(),
            slots: Vec::with_capacity(capacity),
            fleets,
            snapshot,
        }
    }

    /// Adds an endpoint; `fleet` indexes the fleets given to `new`.
    pub fn push(&mut self, text: EndpointText<'_>, fleet: Option<usize>) {
        let mut slot = Slot {
            ends: [0; 5],
            absent: 0,
            fleet: fleet
                .filter(|&f| f < self.fleets.len())
                .and_then(|f| u32::try_from(f).ok())
                .unwrap_or(NO_FLEET),
        };
        let strings = [
            Some(text.endpoint_members),
            Some(text.mdm_device_id),
            text.endpoint_id,
            text.serial,
            text.host_key,
        ];
        for (i, s) in strings.into_iter().enumerate() {
            match s {
                Some(s) => self.text.push_str(s),
                None => slot.absent |= 1 << i,
            }
            slot.ends[i] = self.text.len();
        }
        self.slots.push(slot);
    }

    /// Gives back the room reserved for growth, once every endpoint is in.
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.slots.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// String `which` of endpoint `i`.
    fn string(&self, i: usize, which: usize) -> Option<&str> {
        let slot = &self.slots[i];
        if slot.absent & (1 << which) != 0 {
            return None;
        }
        let start = match which {
            0 if i == 0 => 0,
            0 => self.slots[i - 1].ends[HOST_KEY],
            _ => slot.ends[which - 1],
        };
        Some(&self.text[start..slot.ends[which]])
    }

    pub fn endpoint_id(&self, i: usize) -> Option<&str> {
        self.string(i, ENDPOINT_ID)
    }

    pub fn serial(&self, i: usize) -> Option<&str> {
        self.string(i, SERIAL)
    }

    pub fn host_key(&self, i: usize) -> Option<&str> {
        self.string(i, HOST_KEY)
    }

    /// Endpoint `i` as an enrichment reads it.
    pub fn get(&self, i: usize) -> IndexedEndpoint<'_> {
        let fleet = self.slots[i].fleet;
        IndexedEndpoint {
            mdm_device_id: self.string(i, DEVICE_ID).unwrap_or_default(),
            endpoint_id: self.endpoint_id(i),
            fleet_json: (fleet != NO_FLEET).then(|| &*self.fleets[fleet as usize]),
            endpoint_members: self.string(i, MEMBERS).unwrap_or_default(),
            snapshot: &self.snapshot,
        }
    }

    /// Endpoint `i`'s strings as they were pushed.
    #[cfg(test)]
    fn text(&self, i: usize) -> EndpointText<'_> {
        EndpointText {
            endpoint_members: self.string(i, MEMBERS).unwrap_or_default(),
            mdm_device_id: self.string(i, DEVICE_ID).unwrap_or_default(),
            endpoint_id: self.endpoint_id(i),
            serial: self.serial(i),
            host_key: self.host_key(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(
        members: &'a str,
        id: &'a str,
        endpoint_id: Option<&'a str>,
        serial: Option<&'a str>,
        host_key: Option<&'a str>,
    ) -> EndpointText<'a> {
        EndpointText {
            endpoint_members: members,
            mdm_device_id: id,
            endpoint_id,
            serial,
            host_key,
        }
    }

    #[test]
    fn every_endpoint_reads_back_as_pushed() {
        let pushed = [
            text(
                r#""hostname":"a""#,
                "1",
                Some("ep-1"),
                Some("S1"),
                Some("a"),
            ),
            // Absent and empty are told apart; an empty string at either end of the text.
            text("", "", None, Some(""), None),
            text(r#""serial":"é""#, "2", Some(""), None, Some("ü")),
            text("", "3", None, None, Some("")),
        ];
        let fleets: Vec<Arc<str>> = vec![r#"{"id":"f"}"#.into()];
        let mut store = EndpointStore::new(1, fleets, "2026-11-28T09:55:00Z".into());
        for (i, t) in pushed.iter().enumerate() {
            store.push(*t, (i == 2).then_some(0));
        }
        store.shrink_to_fit();
        assert_eq!(store.len(), pushed.len());
        for (i, t) in pushed.iter().enumerate() {
            assert_eq!(store.text(i), *t, "endpoint {i}");
            let e = store.get(i);
            assert_eq!(e.mdm_device_id, t.mdm_device_id);
            assert_eq!(e.endpoint_id, t.endpoint_id);
            assert_eq!(e.endpoint_members, t.endpoint_members);
            assert_eq!(e.snapshot, "2026-11-28T09:55:00Z");
            assert_eq!(e.fleet_json, (i == 2).then_some(r#"{"id":"f"}"#));
        }
    }

    #[test]
    fn a_fleet_that_is_not_one_of_the_stores_is_none() {
        let mut store = EndpointStore::new(0, Vec::new(), "t".into());
        store.push(text("", "1", None, None, None), Some(0));
        store.push(text("", "2", None, None, None), Some(usize::MAX));
        assert_eq!(store.get(0).fleet_json, None);
        assert_eq!(store.get(1).fleet_json, None);
    }
}
