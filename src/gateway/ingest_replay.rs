//! Replays the `ingest` dead-letter queue: what `dlq replay --sink ingest` hands back (Kafka
//! messages the gateway could not accept, events the global transform aborted) goes through
//! the pipeline again — decoded, its tenant checked against `[[tenants]]`, enriched,
//! transformed and appended to the WAL for every sink. An entry that still cannot be
//! accepted is dead-lettered again with the new reason. Entries leave the replay only once
//! accepted or dead-lettered again.

use std::sync::Arc;

use thoth_event::{decode_batch, now_rfc3339, BatchError, BodyFormat, Event, Limits};
use thoth_ingest::{SharedAccess, Submit};
use thoth_sinks::{DeadLetter, DeadLetterQueue};
use tokio::sync::watch;

use crate::pipeline::INGEST_DLQ;

/// How often the queue is checked for handed-back entries.
const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What replaying one entry gives: events to submit, or why it is refused again.
pub fn decode_entry(
    letter: &DeadLetter,
    limits: &Limits,
    tenants: &std::collections::HashSet<String>,
) -> Result<Vec<Event>, String> {
    // A payload that was not JSON is kept as a JSON string of its text.
    let text = letter.event.get();
    let payload = match serde_json::from_str::<String>(text) {
        Ok(s) => s,
        Err(_) => text.to_string(),
    };
    let events = decode_batch(
        payload.as_bytes(),
        BodyFormat::Ndjson,
        limits,
        &now_rfc3339(),
    )
    .map_err(|e| match e {
        BatchError::Invalid { errors, .. } => errors
            .iter()
            .map(|e| format!("line {}: {}", e.index, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| !tenants.contains(&e.tenant_id))
    {
        return Err(format!(
            "line {i}: tenant {:?} is not configured in [[tenants]]",
            e.tenant_id
        ));
    }
    Ok(events)
}

/// Runs until `stop`.
pub async fn run(
    dlq: DeadLetterQueue,
    submit: Arc<dyn Submit>,
    access: SharedAccess,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let Some(letters) = dlq.next_replay().await else {
            continue;
        };
        if replay(&dlq, &letters, submit.as_ref(), &access, &limits).await {
            dlq.end_replay().await;
        }
    }
}

/// Submits or dead-letters every entry; `false` when the WAL refused (the entries stay
/// handed back and are tried again: at least once).
async fn replay(
    dlq: &DeadLetterQueue,
    letters: &[DeadLetter],
    submit: &dyn Submit,
    access: &SharedAccess,
    limits: &Limits,
) -> bool {
    let tenants = access.load().tenants.clone();
    let mut refused = Vec::new();
    let mut accepted = 0usize;
    for letter in letters {
        match decode_entry(letter, limits, &tenants) {
            Ok(events) => match submit.submit(events).await {
                Ok(n) => accepted += n,
                Err(e) => {
                    tracing::warn!(error = ?e, "the WAL refused replayed ingest entries; trying again later");
                    return false;
                }
            },
            Err(reason) => {
                let mut again = letter.clone();
                again.reason = reason;
                again.attempts += 1;
                refused.push(again);
            }
        }
    }
    if !refused.is_empty() {
        let (queue, batch) = (dlq.clone(), refused);
        let n = batch.len();
        match tokio::task::spawn_blocking(move || queue.append(&batch)).await {
            Ok(Ok(())) => {
                tracing::warn!(
                    sink = INGEST_DLQ,
                    events = n,
                    "replayed entries dead-lettered again"
                )
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot dead-letter replayed entries again; trying later");
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "the dead-letter task failed");
                return false;
            }
        }
    }
    tracing::info!(
        sink = INGEST_DLQ,
        events = accepted,
        "replayed entries accepted"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(event: &str) -> DeadLetter {
        DeadLetter::new(
            INGEST_DLQ,
            "",
            event.as_bytes(),
            "was refused",
            1,
            now_rfc3339(),
        )
    }

    #[test]
    fn entries_decode_as_they_were_received() {
        let tenants = ["acme".to_string()].into_iter().collect();
        let limits = Limits::default();
        // An NDJSON Kafka message (kept as a string: it is not one JSON value).
        let two = "{\"type\":\"checkin\",\"tenant_id\":\"acme\",\"endpoint_id\":\"e\"}\n{\"type\":\"checkin\",\"tenant_id\":\"acme\",\"endpoint_id\":\"f\"}";
        assert_eq!(
            decode_entry(&letter(two), &limits, &tenants).unwrap().len(),
            2
        );
        // An enriched event the transform aborted: the gateway's own members are replaced.
        let enriched = r#"{"type":"decision","tenant_id":"acme","endpoint_id":"e","risk":"low","decision":"allow","event_id":"x","time":"2026-12-01T00:00:00Z","context":{"tenant":{"id":"acme"}},"enrichment":{"status":"unmatched"}}"#;
        let events = decode_entry(&letter(enriched), &limits, &tenants).unwrap();
        assert_eq!(events[0].event_id, "x");
        // Still invalid, or of a tenant no longer configured: refused again with the reason.
        let e = decode_entry(&letter("not json"), &limits, &tenants).unwrap_err();
        assert!(e.starts_with("line 0: invalid JSON"), "{e}");
        let other = r#"{"type":"checkin","tenant_id":"initech","endpoint_id":"e"}"#;
        let e = decode_entry(&letter(other), &limits, &tenants).unwrap_err();
        assert!(e.contains("\"initech\" is not configured"), "{e}");
    }
}
