//! Request bodies written to files for an outside load generator (`wrk` with
//! `benches/wrk/post_batches.lua`): the same events `send` posts, so the gateway can be
//! measured without this crate's sender sharing its process or its HTTP stack.

use std::io::{self, Write};
use std::path::Path;

use crate::generate::{BatchTemplate, Rng, Workload};
use crate::send::TenantToken;

/// Writes `files` NDJSON batches into `dir` (`batch-0000.ndjson`, …), rotating over the
/// tenants, and `manifest.txt` with one `TOKEN FILE` line per batch. Event ids are unique
/// across the files; a generator that posts the files over and over repeats them, which the
/// gateway accepts (it does not deduplicate decisions).
pub fn write_bodies(
    dir: &Path,
    files: usize,
    tenants: &[TenantToken],
    workload: &Workload,
    time: &str,
) -> io::Result<u64> {
    assert!(!tenants.is_empty(), "at least one tenant");
    std::fs::create_dir_all(dir)?;
    let mut manifest = io::BufWriter::new(std::fs::File::create(dir.join("manifest.txt"))?);
    let mut rng = Rng::new(0x7407);
    let mut body = Vec::new();
    let mut bytes = 0;
    for i in 0..files {
        let tenant = &tenants[i % tenants.len()];
        let worker = u16::try_from(i).unwrap_or(u16::MAX);
        let template = BatchTemplate::build(workload, &tenant.tenant, worker, time, &mut rng);
        template.stamp(0, &mut body);
        let name = format!("batch-{i:04}.ndjson");
        std::fs::write(dir.join(&name), &body)?;
        writeln!(manifest, "{} {name}", tenant.token)?;
        bytes += body.len() as u64;
    }
    manifest.flush()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_named_in_the_manifest_with_its_tenants_token() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = [
            TenantToken {
                tenant: "acme".into(),
                token: "t-acme".into(),
            },
            TenantToken {
                tenant: "globex".into(),
                token: "t-globex".into(),
            },
        ];
        let workload = Workload {
            batch: 10,
            endpoints: 5,
            ..Workload::default()
        };
        write_bodies(dir.path(), 3, &tenants, &workload, "2026-12-01T10:00:00Z").unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("manifest.txt")).unwrap();
        let lines: Vec<&str> = manifest.lines().collect();
        assert_eq!(
            lines,
            [
                "t-acme batch-0000.ndjson",
                "t-globex batch-0001.ndjson",
                "t-acme batch-0002.ndjson"
            ]
        );
        let second = std::fs::read_to_string(dir.path().join("batch-0001.ndjson")).unwrap();
        assert_eq!(second.lines().count(), 10);
        for line in second.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["tenant_id"], "globex");
        }
    }
}
