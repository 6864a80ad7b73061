//! The cursor watermark: batches complete out of order, but the cursor may only move past a
//! sequence number once everything before it is delivered or dead-lettered.

use std::collections::BTreeMap;

/// Tracks batches `[start, end)` in flight.
#[derive(Debug)]
pub struct Watermark {
    /// Everything before this is done.
    done_upto: u64,
    /// start → (end, finished)
    batches: BTreeMap<u64, (u64, bool)>,
}

impl Watermark {
    pub fn new(cursor: u64) -> Self {
        Watermark {
            done_upto: cursor,
            batches: BTreeMap::new(),
        }
    }

    /// A batch was read: `[start, end)`.
    pub fn begin(&mut self, start: u64, end: u64) {
        self.batches.insert(start, (end, false));
    }

    /// A batch finished. Returns the new watermark when it moved.
    pub fn finish(&mut self, start: u64) -> Option<u64> {
        if let Some(b) = self.batches.get_mut(&start) {
            b.1 = true;
        }
        let before = self.done_upto;
        while let Some((&s, &(end, true))) = self.batches.first_key_value() {
            self.batches.remove(&s);
            self.done_upto = self.done_upto.max(end);
        }
        (self.done_upto != before).then_some(self.done_upto)
    }

    pub fn done_upto(&self) -> u64 {
        self.done_upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_over_a_finished_prefix() {
        let mut w = Watermark::new(10);
        w.begin(10, 20);
        w.begin(20, 25);
        w.begin(30, 40); // a gap in sequence numbers (a skipped corrupt frame) is fine
        assert_eq!(w.finish(20), None);
        assert_eq!(w.finish(30), None);
        assert_eq!(w.finish(10), Some(40));
        assert_eq!(w.done_upto(), 40);
        w.begin(40, 41);
        assert_eq!(w.finish(40), Some(41));
    }
}
