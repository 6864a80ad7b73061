//! How many request bodies are decoded, enriched and written at once. Bodies are read in
//! parallel (each is bounded and timed out), but the CPU-bound part waits for a slot: with 32
//! clients posting at once, 32 half-decoded batches would hold their events and frames in
//! memory together and crowd the sinks out of the CPU, so delivery would fall behind while
//! the WAL absorbed the difference. With a few slots the other requests wait their turn,
//! holding only their bodies, and the waiting is the clients' backpressure.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots per CPU core: one decoding while another waits for its WAL append (fsync).
pub const SLOTS_PER_CORE: usize = 2;

/// The batch slots of one gateway, shared by `/v1/events` and `/v1/hooks/*`.
#[derive(Debug, Clone)]
pub struct BatchSlots(Arc<Semaphore>);

impl BatchSlots {
    pub fn new(slots: usize) -> Self {
        BatchSlots(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// [`SLOTS_PER_CORE`] per core this process may run on.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        BatchSlots::new(slots_for(cores))
    }

    /// Waits for a slot; it is given back when the permit is dropped.
    pub async fn take(&self) -> OwnedSemaphorePermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Slots not taken now.
    pub fn free(&self) -> usize {
        self.0.available_permits()
    }
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
}
