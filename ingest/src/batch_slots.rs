//! How many request bodies are decoded, enriched and written at once. Bodies are read in
//! parallel (each is bounded and timed out), but the CPU-bound part waits for a slot: with 32
//! clients posting at once, 32 half-decoded batches would hold their events and frames in
//! memory together and crowd the sinks out of the CPU, so delivery would fall behind while
//! the WAL absorbed the difference. With a few slots the other requests wait their turn,
//! holding only their bodies, and the waiting is the clients' backpressure.
//!
//! While a sink that is delivering falls behind anyway, the gateway narrows the slots to one
//! ([`BatchSlots::yield_to_delivery`]): ingest goes on, slower, and the CPU it leaves lets the
//! sinks catch up before the WAL is the only buffer left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots per CPU core: one decoding while another waits for its WAL append (fsync).
pub const SLOTS_PER_CORE: usize = 2;

/// The batch slots of one gateway, shared by `/v1/events` and `/v1/hooks/*`.
#[derive(Debug, Clone)]
pub struct BatchSlots(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    slots: Arc<Semaphore>,
    /// The one slot batches also need while ingest yields to delivery.
    narrow: Arc<Semaphore>,
    yielding: AtomicBool,
}

/// A batch's slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _slot: OwnedSemaphorePermit,
    _narrow: Option<OwnedSemaphorePermit>,
}

impl BatchSlots {
    pub fn new(slots: usize) -> Self {
        BatchSlots(Arc::new(Inner {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            narrow: Arc::new(Semaphore::new(1)),
            yielding: AtomicBool::new(false),
        }))
    }

    /// [`SLOTS_PER_CORE`] per core this process may run on.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        BatchSlots::new(slots_for(cores))
    }

    /// Waits for a slot (and, while ingest yields to delivery, for the one narrow slot too).
    pub async fn take(&self) -> Slot {
        let narrow = if self.0.yielding.load(Ordering::Relaxed) {
            Some(permit(&self.0.narrow).await)
        } else {
            None
        };
        Slot {
            _slot: permit(&self.0.slots).await,
            _narrow: narrow,
        }
    }

    /// Slots not taken now.
    pub fn free(&self) -> usize {
        self.0.slots.available_permits()
    }

    /// Whether batches go one at a time (a delivering sink is behind).
    pub fn yield_to_delivery(&self, yielding: bool) {
        self.0.yielding.store(yielding, Ordering::Relaxed);
    }

    pub fn is_yielding(&self) -> bool {
        self.0.yielding.load(Ordering::Relaxed)
    }
}

async fn permit(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphores are never closed")
}

/// The number of slots for `cores` cores.
pub fn slots_for(cores: usize) -> usize {
    cores.max(1) * SLOTS_PER_CORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_slots_per_core_and_never_none() {
        assert_eq!(slots_for(0), 2);
        assert_eq!(slots_for(1), 2);
        assert_eq!(slots_for(2), 4);
        assert_eq!(BatchSlots::new(0).free(), 1);
    }

    #[tokio::test]
    async fn a_batch_waits_for_a_slot_and_gets_it_when_one_is_given_back() {
        let slots = BatchSlots::new(1);
        let first = slots.take().await;
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(slots.free(), 0);
        drop(first);
        let _second = waiting.await.unwrap();
        assert_eq!(slots.free(), 0);
    }

    #[tokio::test]
    async fn while_ingest_yields_batches_go_one_at_a_time_and_all_slots_return_after() {
        let slots = BatchSlots::new(4);
        slots.yield_to_delivery(true);
        let first = slots.take().await;
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "three slots are free, the narrow one is not"
        );
        assert_eq!(slots.free(), 3);
        drop(first);
        let second = waiting.await.unwrap();
        slots.yield_to_delivery(false);
        let (_a, _b, _c) = (slots.take().await, slots.take().await, slots.take().await);
        assert_eq!(slots.free(), 0, "caught up: every slot is usable again");
        drop(second);
        assert_eq!(slots.free(), 1);
    }
}
