//! The hot path behind ingest: enrich each event of a batch, run the global transform when
//! there is one, and append the batch to the WAL as one frame. An event the transform aborts
//! (or fails on) goes to the `ingest` dead-letter queue with the VRL error — durably, before
//! the batch is acknowledged.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use thoth_enrich::Enricher;
use thoth_event::{now_rfc3339, record, Event};
use thoth_ingest::{Submit, SubmitError, SubmitFuture};
use thoth_sinks::{DeadLetter, DeadLetterQueue, Tap};
use thoth_transform::{TransformMetrics, VrlProgram};
use thoth_wal::{FrameBuilder, Wal, WalError};
use time::OffsetDateTime;

/// The dead-letter queue of what could not be accepted into the pipeline.
pub const INGEST_DLQ: &str = "ingest";

/// Enriches and transforms batches and makes them durable in the WAL.
pub struct Pipeline {
    pub enricher: Arc<Enricher>,
    /// The global transform; replaced by a config reload.
    pub transform: ArcSwapOption<VrlProgram>,
    pub ingest_dlq: DeadLetterQueue,
    pub metrics: TransformMetrics,
    pub wal: Wal,
    /// `/v1/tap` watchers of the `ingest` and `enriched` stages.
    pub tap: Tap,
}

impl Pipeline {
    /// Installs a reloaded global transform; batches in flight finish with the old one.
    pub fn set_transform(&self, program: Option<Arc<VrlProgram>>) {
        self.transform.store(program);
    }

    /// The WAL frame of a batch, and the dead letters of events the transform refused.
    fn build_frame(&self, events: &[Event]) -> (FrameBuilder, Vec<DeadLetter>) {
        let now = OffsetDateTime::now_utc();
        // About what a 700-byte decision takes enriched; the frame grows if needed.
        let mut frame = FrameBuilder::with_capacity(events.len() * 1536);
        let mut refused = Vec::new();
        let mut enriched = Vec::with_capacity(1024);
        let transform = self.transform.load();
        let watched = self.tap.is_watched();
        for event in events {
            if watched {
                let mut raw = Vec::new();
                event.write_enriched(&mut raw, &[]);
                self.tap.offer("ingest", &event.tenant_id, &raw);
            }
            match &*transform {
                // No transform: enrich straight into the frame, no copy, no conversion.
                None if !watched => frame.push_with(|buf| {
                    record::encode_header(buf, &event.tenant_id);
                    self.enricher.enrich_into(event, now, buf);
                }),
                None => {
                    enriched.clear();
                    self.enricher.enrich_into(event, now, &mut enriched);
                    self.tap.offer("enriched", &event.tenant_id, &enriched);
                    frame.push_with(|buf| record::encode(buf, &event.tenant_id, &enriched));
                }
                Some(program) => {
                    enriched.clear();
                    self.enricher.enrich_into(event, now, &mut enriched);
                    // The program's output goes straight into the frame.
                    let mut json_start = 0;
                    let remapped = frame.try_push_with(|buf| {
                        record::encode_header(buf, &event.tenant_id);
                        json_start = buf.len();
                        program.remap_json_into(&enriched, buf)
                    });
                    match remapped {
                        Ok(()) => {
                            if watched {
                                let json = frame.written_since(json_start);
                                self.tap.offer("enriched", &event.tenant_id, json);
                            }
                        }
                        Err(e) => {
                            self.metrics.errors.with_label_values(&["global"]).inc();
                            refused.push(DeadLetter::new(
                                INGEST_DLQ,
                                &event.tenant_id,
                                &enriched,
                                &format!("{}: {e}", program.key()),
                                1,
                                now_rfc3339(),
                            ));
                        }
                    }
                }
            }
        }
        (frame, refused)
    }
}

impl Submit for Pipeline {
    fn submit(&self, events: Vec<Event>) -> SubmitFuture<'_> {
        Box::pin(async move {
            let (frame, refused) = self.build_frame(&events);
            if !refused.is_empty() {
                tracing::warn!(tenant_id = %refused[0].tenant_id, events = refused.len(), reason = %refused[0].reason, "the global transform refused events; they are in the ingest dead-letter queue");
                let dlq = self.ingest_dlq.clone();
                tokio::task::spawn_blocking(move || dlq.append(&refused))
                    .await
                    .map_err(|e| SubmitError::Unavailable(e.to_string()))?
                    .map_err(|e| {
                        SubmitError::Unavailable(format!("cannot write dead letters: {e}"))
                    })?;
            }
            if frame.is_empty() {
                return Ok(events.len());
            }
            match self.wal.append(frame).await {
                Ok(_) => Ok(events.len()),
                Err(WalError::Full { .. }) => Err(SubmitError::Full),
                Err(WalError::Closed) => Err(SubmitError::ShuttingDown),
                Err(e @ WalError::TooLarge { .. }) => Err(SubmitError::TooLarge(e.to_string())),
                Err(e) => Err(SubmitError::Unavailable(e.to_string())),
            }
        })
    }
}
