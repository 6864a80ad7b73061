//! The hot path behind ingest: enrich each event of a batch, run the global transform when
//! there is one, and append the batch to the WAL as one frame. An event the transform aborts
//! (or fails on) goes to the `ingest` dead-letter queue with the VRL error — durably, before
//! the batch is acknowledged.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use thoth_enrich::Enricher;
use thoth_event::{now_rfc3339, Event, Layout};
use thoth_ingest::{Submit, SubmitError, SubmitFuture};
use thoth_sinks::{DeadLetter, DeadLetterQueue, Tap};
use thoth_transform::{TransformMetrics, VrlProgram};
use thoth_wal::record::RecordWriter;
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
        // Where the members of the enriched event and of the program's output are: the
        // program does not scan the event again, and the WAL record keeps where the fields
        // sinks map are.
        let mut layout = Layout::default();
        let mut records = RecordWriter::default();
        for event in events {
            if watched {
                let mut raw = Vec::new();
                event.write_enriched(&mut raw, &[]);
                self.tap.offer("ingest", &event.tenant_id, &raw);
            }
            let tenant = &event.tenant_id;
            match &*transform {
                // No transform: enrich straight into the frame, no copy, no conversion.
                None if !watched => frame.push_with(|buf| {
                    let written = records.write(buf, tenant, |buf, layout| {
                        self.enricher.enrich_into(event, now, buf, layout);
                        Ok::<(), std::convert::Infallible>(())
                    });
                    let Ok(()) = written;
                }),
                None => {
                    enriched.clear();
                    layout.begin(0);
                    self.enricher
                        .enrich_into(event, now, &mut enriched, &mut layout);
                    self.tap.offer("enriched", tenant, &enriched);
                    frame.push_with(|buf| records.write_copy(buf, tenant, &enriched, &layout));
                }
                Some(program) => {
                    enriched.clear();
                    layout.begin(0);
                    self.enricher
                        .enrich_into(event, now, &mut enriched, &mut layout);
                    // The program's output goes straight into the frame.
                    let mut json = 0..0;
                    let remapped = frame.try_push_with(|buf| {
                        records.write(buf, tenant, |buf, out_layout| {
                            json.start = buf.len();
                            program.remap_laid_out_into(&enriched, &layout, buf, out_layout)?;
                            json.end = buf.len();
                            Ok::<(), thoth_transform::RunError>(())
                        })
                    });
                    match remapped {
                        Ok(()) => {
                            if watched {
                                let written = frame.written_since(json.start);
                                let json = &written[..json.len().min(written.len())];
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

#[cfg(test)]
mod tests {
    use super::*;
    use thoth_event::EnrichedView;
    use thoth_wal::record;
    use thoth_wal::{FsyncPolicy, WalOptions};

    fn pipeline(dir: &std::path::Path, transform: Option<&str>) -> Pipeline {
        let config = thoth_config::Config::from_toml(
            &format!(
                "data_dir = {:?}\n[[api.tokens]]\ntenant_id = \"acme\"\ntoken = \"t0123456789abcdef\"\n\
                 [[tenants]]\nid = \"acme\"\nname = \"Acme\"\n[sinks.f]\ntype = \"file\"\npath = \"out\"\n",
                dir.display().to_string()
            ),
            dir,
        )
        .unwrap();
        let registry = prometheus::Registry::new();
        let (wal, _) = Wal::open(
            &dir.join("wal"),
            WalOptions::with_max_bytes(1 << 20, FsyncPolicy::Always),
            &[],
        )
        .unwrap();
        Pipeline {
            enricher: Enricher::new(&config, &registry).unwrap(),
            transform: ArcSwapOption::new(
                transform.map(|src| Arc::new(VrlProgram::compile("t", src).unwrap().0)),
            ),
            ingest_dlq: DeadLetterQueue::new(&dir.join("dlq"), INGEST_DLQ),
            metrics: TransformMetrics::new(&registry).unwrap(),
            wal,
            tap: Tap::default(),
        }
    }

    /// The records of a frame's payload (`u32` length, record bytes).
    fn records(payload: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            let len = u32::from_le_bytes(payload[at..at + 4].try_into().unwrap()) as usize;
            out.push(&payload[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        out
    }

    #[test]
    fn records_carry_the_index_of_the_fields_sinks_map() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Event> = [
            r#"{"type":"decision","tenant_id":"acme","endpoint_id":"ep","risk":"high","decision":"block","hostn\u0061me":"h","x":{"risk":"no"}}"#,
            r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep","proxy_version":"1"}"#,
        ]
        .iter()
        .map(|s| Event::parse(s.as_bytes(), "2026-12-01T10:00:00Z").unwrap())
        .collect();
        // (transform, whether its output's layout is known)
        let cases = [
            (None, true),
            (
                Some(".fleet = .context.fleet.id\ndel(.proxy_version)\n.risk = \"low\""),
                true,
            ),
            (Some(". = merge(., {\"x\": 1})"), false),
        ];
        for (transform, indexed) in cases {
            let p = pipeline(dir.path(), transform);
            let (frame, refused) = p.build_frame(&events);
            assert!(refused.is_empty());
            let payload = frame.written_since(0);
            for (i, bytes) in records(payload).into_iter().enumerate() {
                let rec = record::decode(bytes).unwrap();
                assert_eq!(rec.fields.is_some(), indexed, "{transform:?}");
                serde_json::from_slice::<serde_json::Value>(rec.json).expect("the JSON alone");
                let by_index = EnrichedView::read(rec.json, rec.fields.as_ref()).unwrap();
                let by_scan = EnrichedView::parse(rec.json).unwrap();
                assert_eq!(format!("{by_index:?}"), format!("{by_scan:?}"));
                // The escaped key `hostn\u0061me` is found under its decoded name.
                assert_eq!(by_index.hostname.is_some(), i == 0);
            }
        }
    }
}
