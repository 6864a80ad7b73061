//! `thoth-gateway dlq list|replay|purge --config PATH --sink NAME [--json]`: a sink's dead
//! letters. Safe beside a running gateway: every operation holds the queue's file lock.

use std::path::Path;

use clap::ValueEnum;
use serde_json::json;
use thoth_sinks::DeadLetterQueue;

/// What to do with the dead letters.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DlqAction {
    /// Show them.
    List,
    /// Hand them back to the sink, which sends them again (alone, not to other sinks).
    Replay,
    /// Delete them.
    Purge,
}

/// Returns the exit code: 0 done, 1 the operation failed, 2 bad usage or config.
pub fn run(action: DlqAction, config_path: &Path, sink: &str, json: bool) -> i32 {
    let config = match super::load_config_or_exit(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if sink != "ingest" && !config.sinks.contains_key(sink) {
        let names: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
        eprintln!(
            "no sink named {sink:?} in {}; sinks: {}, or `ingest`",
            config_path.display(),
            names.join(", ")
        );
        return 2;
    }
    let queue = DeadLetterQueue::new(&config.dlq_dir(), sink);
    let result = match action {
        DlqAction::List => queue.list().map(|listing| {
            let letters = &listing.letters;
            if json {
                let entries: Vec<_> = letters
                    .iter()
                    .map(|l| {
                        json!({
                            "event_id": l.event_id,
                            "reason": l.reason,
                            "attempts": l.attempts,
                            "first_failed_at": l.first_failed_at,
                            "origin": l.origin,
                            "event": l.event,
                        })
                    })
                    .collect();
                let unreadable: Vec<_> = listing
                    .unreadable
                    .iter()
                    .map(|u| json!({"line": u.line, "reason": u.reason}))
                    .collect();
                println!(
                    "{}",
                    json!({"sink": sink, "count": letters.len(), "entries": entries, "unreadable": unreadable})
                );
            } else {
                println!("{sink}: {} dead letter(s)", letters.len());
                for l in letters {
                    println!(
                        "  {}  first failed {}  attempts {}  {}",
                        l.event_id, l.first_failed_at, l.attempts, l.reason
                    );
                }
                for u in &listing.unreadable {
                    println!("  line {} cannot be read: {}", u.line, u.reason);
                }
            }
        }),
        DlqAction::Replay => queue.replay().map(|n| {
            if json {
                println!("{}", json!({"sink": sink, "replayed": n}));
            } else {
                println!("{sink}: {n} dead letter(s) handed back to the sink");
            }
        }),
        DlqAction::Purge => queue.purge().map(|n| {
            if json {
                println!("{}", json!({"sink": sink, "purged": n}));
            } else {
                println!("{sink}: {n} dead letter(s) deleted");
            }
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if json {
                println!("{}", json!({"sink": sink, "error": e.to_string()}));
            } else {
                eprintln!("thoth-gateway dlq: {e}");
            }
            1
        }
    }
}
