//! One provider's endpoints, stored compactly: every endpoint's own strings one after the
//! other in a single text with their ends relative to the endpoint's start, and the runs of
//! `context.endpoint` that endpoints commonly share (see [`crate::endpoint_json`]) stored once.
//! Sized for 10^5–10^6 endpoints, where one allocation per string (each with its allocator
//! rounding and a 16-byte pointer) and a copy of the same OS, model and site per endpoint cost
//! more than what is particular to each.

use std::collections::HashMap;
use std::sync::Arc;

use crate::endpoint_json::{is_shared, Members, RUNS};

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
    pub endpoint_members: Members<'a>,
    /// When the provider's snapshot was taken.
    pub snapshot: &'a str,
}

/// The strings one endpoint is stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointText<'a> {
    pub endpoint_members: Members<'a>,
    pub mdm_device_id: &'a str,
    pub endpoint_id: Option<&'a str>,
    pub serial: Option<&'a str>,
    /// The key of the hostname lookup: the hostname in lower case.
    pub host_key: Option<&'a str>,
}

/// The endpoint's own strings in the text, in this order: its four own runs of members, then
/// these.
const OWN_RUNS: usize = RUNS.div_ceil(2);
const DEVICE_ID: usize = OWN_RUNS;
const ENDPOINT_ID: usize = OWN_RUNS + 1;
const SERIAL: usize = OWN_RUNS + 2;
const HOST_KEY: usize = OWN_RUNS + 3;
const STRINGS: usize = OWN_RUNS + 4;

/// One endpoint: where its strings lie in the text and which shared runs it has. 64 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    /// Ends of its strings, from `start`.
    ends: [u32; STRINGS],
    /// Its shared runs, as indices into `shared`.
    shared: [u32; RUNS / 2],
    /// An index into `fleets`, or `NO_FLEET`.
    fleet: u32,
    /// Bit `i` set: string `i` is absent (not merely empty).
    absent: u8,
}

const NO_FLEET: u32 = u32::MAX;

/// Why an endpoint was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the record's strings come to 4 GiB or more")]
pub struct TooLarge;

/// The endpoints of one provider, in snapshot order.
#[derive(Debug, Default)]
pub struct EndpointStore {
    text: String,
    slots: Vec<Slot>,
    /// Each distinct shared run once.
    shared: Vec<Box<str>>,
    /// While endpoints are added: the index of each shared run in `shared`.
    interned: HashMap<Box<str>, u32>,
    /// One `context.fleet` JSON per fleet rule, shared by the endpoints it matches.
    fleets: Vec<Arc<str>>,
    snapshot: Arc<str>,
}

impl EndpointStore {
    /// An empty store for about `capacity` endpoints of a snapshot taken at `snapshot`, with
    /// the fleets they may be given.
    pub fn new(capacity: usize, fleets: Vec<Arc<str>>, snapshot: Arc<str>) -> EndpointStore {
        EndpointStore {
            slots: Vec::with_capacity(capacity),
            fleets,
            snapshot,
            ..EndpointStore::default()
        }
    }

    /// Adds an endpoint; `fleet` indexes the fleets given to `new`.
    pub fn push(&mut self, text: EndpointText<'_>, fleet: Option<usize>) -> Result<(), TooLarge> {
        let runs = text.endpoint_members.runs;
        let own = runs.iter().enumerate().filter(|(i, _)| !is_shared(*i));
        let strings = own.map(|(_, run)| Some(*run)).chain([
            Some(text.mdm_device_id),
            text.endpoint_id,
            text.serial,
            text.host_key,
        ]);
        let start = self.text.len();
        let mut slot = Slot {
            start,
            ends: [0; STRINGS],
            shared: [0; RUNS / 2],
            fleet: fleet
                .filter(|&f| f < self.fleets.len())
                .and_then(|f| u32::try_from(f).ok())
                .unwrap_or(NO_FLEET),
            absent: 0,
        };
        for (i, s) in strings.enumerate() {
            match s {
                Some(s) => self.text.push_str(s),
                None => slot.absent |= 1 << i,
            }
            let Ok(end) = u32::try_from(self.text.len() - start) else {
                self.text.truncate(start);
                return Err(TooLarge);
            };
            slot.ends[i] = end;
        }
        for (n, run) in runs.iter().enumerate().filter(|(i, _)| is_shared(*i)) {
            slot.shared[n / 2] = self.intern(run);
        }
        self.slots.push(slot);
        Ok(())
    }

    fn intern(&mut self, run: &str) -> u32 {
        if let Some(&at) = self.interned.get(run) {
            return at;
        }
        let at = u32::try_from(self.shared.len()).expect("fewer than 2^32 distinct runs");
        self.shared.push(run.into());
        self.interned.insert(run.into(), at);
        at
    }

    /// Drops what only adding needed and the room reserved for growth, once every endpoint
    /// is in.
    pub fn finish(&mut self) {
        self.interned = HashMap::new();
        self.text.shrink_to_fit();
        self.slots.shrink_to_fit();
        self.shared.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The endpoint's own string `which`.
    #[inline]
    fn string(&self, i: usize, which: usize) -> Option<&str> {
        let slot = &self.slots[i];
        if slot.absent & (1 << which) != 0 {
            return None;
        }
        let from = if which == 0 { 0 } else { slot.ends[which - 1] };
        Some(&self.text[slot.start + from as usize..slot.start + slot.ends[which] as usize])
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

    fn members(&self, i: usize) -> Members<'_> {
        let slot = &self.slots[i];
        let mut runs = [""; RUNS];
        for (n, run) in runs.iter_mut().enumerate() {
            *run = if is_shared(n) {
                &self.shared[slot.shared[n / 2] as usize]
            } else {
                self.string(i, n / 2).unwrap_or_default()
            };
        }
        Members { runs }
    }

    /// Endpoint `i` as an enrichment reads it.
    pub fn get(&self, i: usize) -> IndexedEndpoint<'_> {
        let fleet = self.slots[i].fleet;
        IndexedEndpoint {
            mdm_device_id: self.string(i, DEVICE_ID).unwrap_or_default(),
            endpoint_id: self.endpoint_id(i),
            fleet_json: (fleet != NO_FLEET).then(|| &*self.fleets[fleet as usize]),
            endpoint_members: self.members(i),
            snapshot: &self.snapshot,
        }
    }

    /// Endpoint `i`'s strings as they were pushed.
    #[cfg(test)]
    fn text(&self, i: usize) -> EndpointText<'_> {
        EndpointText {
            endpoint_members: self.members(i),
            mdm_device_id: self.string(i, DEVICE_ID).unwrap_or_default(),
            endpoint_id: self.endpoint_id(i),
            serial: self.serial(i),
            host_key: self.host_key(i),
        }
    }

    /// The distinct shared runs stored.
    #[cfg(test)]
    fn shared_runs(&self) -> usize {
        self.shared.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(runs: [&str; RUNS]) -> Members<'_> {
        Members { runs }
    }

    fn text<'a>(
        members: Members<'a>,
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
        let shared_os = ",\"os\":\"macOS\"";
        let pushed = [
            text(
                members(["\"hostname\":\"a\"", shared_os, "", "x", "\"1\"", "", "}"]),
                "1",
                Some("ep-1"),
                Some("S1"),
                Some("a"),
            ),
            // Absent and empty are told apart; an empty string at either end of the text.
            text(members([""; RUNS]), "", None, Some(""), None),
            text(
                members(["é", shared_os, "ü", "y", "\"2\"", ",z", "}"]),
                "2",
                Some(""),
                None,
                Some("ü"),
            ),
            text(members([""; RUNS]), "3", None, None, Some("")),
        ];
        let fleets: Vec<Arc<str>> = vec![r#"{"id":"f"}"#.into()];
        let mut store = EndpointStore::new(1, fleets, "2026-11-28T09:55:00Z".into());
        for (i, t) in pushed.iter().enumerate() {
            store.push(*t, (i == 2).then_some(0)).unwrap();
        }
        store.finish();
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
        // "", the OS run, "x", "y", ",z": each stored once.
        assert_eq!(store.shared_runs(), 5);
    }

    #[test]
    fn a_fleet_that_is_not_one_of_the_stores_is_none() {
        let mut store = EndpointStore::new(0, Vec::new(), "t".into());
        store
            .push(text(members([""; RUNS]), "1", None, None, None), Some(0))
            .unwrap();
        store
            .push(
                text(members([""; RUNS]), "2", None, None, None),
                Some(usize::MAX),
            )
            .unwrap();
        assert_eq!(store.get(0).fleet_json, None);
        assert_eq!(store.get(1).fleet_json, None);
    }
}
