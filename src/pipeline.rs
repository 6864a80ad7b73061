//! The hot path behind ingest: enrich each event of a batch into one WAL frame and append it.

use std::sync::Arc;

use thoth_enrich::Enricher;
use thoth_event::{record, Event};
use thoth_ingest::{Submit, SubmitError, SubmitFuture};
use thoth_wal::{FrameBuilder, Wal, WalError};
use time::OffsetDateTime;

/// Enriches batches and makes them durable in the WAL.
pub struct Pipeline {
    pub enricher: Arc<Enricher>,
    pub wal: Wal,
}

impl Submit for Pipeline {
    fn submit(&self, events: Vec<Event>) -> SubmitFuture<'_> {
        Box::pin(async move {
            let now = OffsetDateTime::now_utc();
            let mut frame = FrameBuilder::new();
            for event in &events {
                frame.push_with(|buf| {
                    record::encode_header(buf, &event.tenant_id);
                    self.enricher.enrich_into(event, now, buf);
                });
            }
            match self.wal.append(frame).await {
                Ok(ack) => Ok(ack.count as usize),
                Err(WalError::Full { .. }) => Err(SubmitError::Full),
                Err(WalError::Closed) => Err(SubmitError::ShuttingDown),
                Err(e @ WalError::TooLarge { .. }) => Err(SubmitError::TooLarge(e.to_string())),
                Err(e) => Err(SubmitError::Unavailable(e.to_string())),
            }
        })
    }
}
