//! Syncing snapshots from the MDM APIs: Jamf Pro (`computers-inventory`, paged, at most 5
//! requests at once, departments resolved) and Microsoft Graph (`managedDevices`, following
//! `@odata.nextLink`). Both honour `Retry-After` on 429 and back off on 5xx, and refresh their
//! token when it expires. A sync produces a snapshot in the provider's native list format,
//! which is what the gateway persists and loads — the same format as a `file` snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Serialize;
use serde_json::{json, Value};
use thoth_config::{IntuneApi, JamfApi, JamfAuth, MdmProvider, MdmSource};
use thoth_http::{describe_error, retry_after, ClientCredentials, ClientSettings, Jitter};
use tokio::sync::Semaphore;

use crate::error::MdmError;
use crate::record::EndpointRecord;
use crate::snapshot::{parse_snapshot, read_snapshot};

/// Jamf's guidance: never more than 5 concurrent connections.
const JAMF_MAX_CONCURRENT: usize = 5;
/// Attempts for one request before the sync fails.
const MAX_ATTEMPTS: u32 = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest page read from an MDM API (a Jamf page of 2 000 computers is about 10 MiB).
const MAX_PAGE_BYTES: usize = 64 << 20;
/// Backoff between attempts: 200 ms doubling to 10 s, with full jitter.
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What a sync found, compared with the previous snapshot (`mdm sync`, `PUT /v1/mdm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Endpoints in the new snapshot.
    pub imported: usize,
    /// New or changed endpoints.
    pub upserted: usize,
    pub unchanged: usize,
    /// Endpoints in the previous snapshot and not in this one.
    pub removed: usize,
}

/// Compares two snapshots by MDM device id.
pub fn compare(old: &[EndpointRecord], new: &[EndpointRecord]) -> SyncCounts {
    let before: std::collections::HashMap<&str, &EndpointRecord> =
        old.iter().map(|r| (r.mdm_device_id.as_str(), r)).collect();
    let mut counts = SyncCounts {
        imported: new.len(),
        ..SyncCounts::default()
    };
    let mut seen = std::collections::HashSet::new();
    for r in new {
        seen.insert(r.mdm_device_id.as_str());
        match before.get(r.mdm_device_id.as_str()) {
            Some(old) if *old == r => counts.unchanged += 1,
            _ => counts.upserted += 1,
        }
    }
    counts.removed = before.keys().filter(|id| !seen.contains(*id)).count();
    counts
}

/// Reports progress: (items so far, total when known).
pub type Progress = Arc<dyn Fn(usize, Option<usize>) + Send + Sync>;

/// Fetches the provider's inventory and returns it as a native snapshot (JSON bytes).
pub async fn fetch(provider: &MdmProvider, progress: Progress) -> Result<Vec<u8>, MdmError> {
    let client = thoth_http::build_client(&ClientSettings::new(REQUEST_TIMEOUT))?;
    match &provider.source {
        MdmSource::Jamf(api) => fetch_jamf(&client, api, progress).await,
        MdmSource::Intune(api) => fetch_intune(&client, api, progress).await,
        MdmSource::File | MdmSource::Push => Err(MdmError::Api(format!(
            "provider {:?} has no API to sync from",
            provider.name
        ))),
    }
}

/// The most endpoints a provider's API may report (the largest fleets have a few hundred
/// thousand).
const MAX_PROVIDER_ENDPOINTS: u64 = 10_000_000;

/// The longest `Retry-After` a sync waits for: longer asks hold up the MDM task no longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// GETs `url` as JSON with `token`, retrying 429 (after `Retry-After`), 5xx and transport
/// errors with backoff, and renewing the token once on 401.
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &TokenSource,
) -> Result<Value, MdmError> {
    let mut renewed = false;
    let mut jitter = Jitter::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let bearer = token.get(client).await?;
        let backoff =
            thoth_http::backoff(attempt, BACKOFF_INITIAL, BACKOFF_MAX, jitter.next_unit());
        let mut resp = match client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, bearer)
            .header("accept", "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                if attempt == MAX_ATTEMPTS {
                    return Err(MdmError::Api(format!("GET {url}: {}", describe_error(&e))));
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let status = resp.status();
        if status.is_success() {
            let body = thoth_http::read_bounded(&mut resp, MAX_PAGE_BYTES + 1).await;
            if body.len() > MAX_PAGE_BYTES {
                return Err(MdmError::Api(format!(
                    "GET {url}: the response is larger than {} MiB; lower page_size",
                    MAX_PAGE_BYTES >> 20
                )));
            }
            return serde_json::from_slice(&body)
                .map_err(|e| MdmError::Api(format!("GET {url}: unreadable JSON: {e}")));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED && !renewed {
            renewed = true;
            token.invalidate();
            continue;
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            if attempt == MAX_ATTEMPTS {
                return Err(MdmError::Api(format!(
                    "GET {url}: HTTP {status} after {MAX_ATTEMPTS} attempts"
                )));
            }
            let wait = retry_after(resp.headers(), MAX_RETRY_AFTER).unwrap_or(backoff);
            tokio::time::sleep(wait).await;
            continue;
        }
        let body = thoth_http::read_bounded(&mut resp, 4096).await;
        return Err(MdmError::Api(format!(
            "GET {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    Err(MdmError::Api(format!("GET {url}: gave up")))
}

/// Where bearer tokens come from: a fixed token, or client credentials (cached).
enum TokenSource {
    Fixed(HeaderValue),
    Fetched(ClientCredentials),
}

impl TokenSource {
    fn fixed(token: &str) -> Result<TokenSource, MdmError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| MdmError::Api("the API token holds characters a header cannot".into()))?;
        header.set_sensitive(true);
        Ok(TokenSource::Fixed(header))
    }

    async fn get(&self, client: &reqwest::Client) -> Result<HeaderValue, MdmError> {
        match self {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::Fetched(credentials) => Ok(credentials.get(client).await?),
        }
    }

    fn invalidate(&self) {
        if let TokenSource::Fetched(credentials) = self {
            credentials.invalidate();
        }
    }
}

async fn fetch_jamf(
    client: &reqwest::Client,
    api: &JamfApi,
    progress: Progress,
) -> Result<Vec<u8>, MdmError> {
    let token = match &api.auth {
        JamfAuth::Token(t) => TokenSource::fixed(t.expose())?,
        JamfAuth::ClientCredentials {
            client_id,
            client_secret,
        } => TokenSource::Fetched(ClientCredentials::new(
            "Jamf Pro",
            &api.url,
            format!("{}/api/oauth/token", api.url),
            vec![
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().to_string()),
            ],
        )),
    };
    let page_url = |page: u64| {
        format!(
            "{}{}?section=GENERAL&section=HARDWARE&section=USER_AND_LOCATION&section=OPERATING_SYSTEM&section=EXTENSION_ATTRIBUTES&page={page}&page-size={}&sort=id%3Aasc",
            api.url, api.inventory_path, api.page_size
        )
    };
    // Departments, to name userAndLocation.departmentId.
    let departments = get_json(
        client,
        &format!("{}/api/v1/departments?page=0&page-size=2000", api.url),
        &token,
    )
    .await?;
    let departments = departments["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    let first = get_json(client, &page_url(0), &token).await?;
    let total = first["totalCount"].as_u64().unwrap_or(0);
    // Range-checked like every parsed value: the page table is sized from it.
    if total > MAX_PROVIDER_ENDPOINTS {
        return Err(MdmError::Api(format!(
            "Jamf reports totalCount {total}, more than the {MAX_PROVIDER_ENDPOINTS} endpoints one provider may hold"
        )));
    }
    let mut pages: Vec<Option<Vec<Value>>> =
        vec![None; total.div_ceil(api.page_size.max(1)).max(1) as usize];
    let total = total as usize;
    pages[0] = Some(first["results"].as_array().cloned().unwrap_or_default());
    let mut fetched = pages[0].as_ref().map_or(0, Vec::len);
    progress(fetched, Some(total));

    // The other pages, at most 5 requests at once.
    let slots = Arc::new(Semaphore::new(JAMF_MAX_CONCURRENT));
    let token = Arc::new(token);
    let mut tasks = tokio::task::JoinSet::new();
    for page in 1..pages.len() as u64 {
        let (client, url, slots) = (client.clone(), page_url(page), slots.clone());
        let token = token.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire().await;
            (page, get_json(&client, &url, &token).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (page, result) = done.map_err(|e| MdmError::Api(e.to_string()))?;
        let results = result?["results"].as_array().cloned().unwrap_or_default();
        fetched += results.len();
        progress(fetched, Some(total));
        pages[page as usize] = Some(results);
    }
    let results: Vec<Value> = pages.into_iter().flatten().flatten().collect();
    Ok(serde_json::to_vec(&json!({
        "totalCount": results.len(),
        "results": results,
        "departments": departments,
    }))
    .expect("JSON"))
}

async fn fetch_intune(
    client: &reqwest::Client,
    api: &IntuneApi,
    progress: Progress,
) -> Result<Vec<u8>, MdmError> {
    let token = TokenSource::Fetched(ClientCredentials::entra(&api.entra));
    let select = "id,deviceName,serialNumber,operatingSystem,osVersion,userPrincipalName,emailAddress,deviceCategoryDisplayName,model,managementAgent,complianceState,lastSyncDateTime";
    let mut next = Some(format!(
        "{}/v1.0/deviceManagement/managedDevices?$select={select}",
        api.url
    ));
    let mut devices = Vec::new();
    while let Some(url) = next.take() {
        let page = get_json(client, &url, &token).await?;
        devices.extend(page["value"].as_array().cloned().unwrap_or_default());
        progress(devices.len(), None);
        // Follow the whole nextLink as given, never build a skip token.
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    Ok(serde_json::to_vec(&json!({ "value": devices })).expect("JSON"))
}

/// One sync: fetch, check that the snapshot parses, compare with the current one, and store it
/// atomically where the gateway loads it from.
pub async fn sync_provider(
    provider: &MdmProvider,
    progress: Progress,
) -> Result<SyncCounts, MdmError> {
    let snapshot = fetch(provider, progress).await?;
    store_snapshot(provider, &snapshot)
}

/// Checks a snapshot (native format), compares it with the provider's current one and stores
/// it as the provider's snapshot. Used by syncs.
pub fn store_snapshot(provider: &MdmProvider, snapshot: &[u8]) -> Result<SyncCounts, MdmError> {
    let new = parse_snapshot(
        provider.kind,
        snapshot,
        provider.endpoint_id_attribute.as_deref(),
    )?;
    let tmp = staging_path(provider)?;
    std::fs::write(&tmp, snapshot)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(|e| {
            MdmError::Storage(format!(
                "cannot store the snapshot at {}: {e}",
                tmp.display()
            ))
        })?;
    install(provider, &tmp, &new)
}

/// Like [`store_snapshot`] for a snapshot already written to `staged` (a `PUT` body streamed
/// to disk): it is parsed from the file as a stream, never held whole in memory, and moved
/// into place when valid. `staged` is removed when it is not.
pub fn store_snapshot_file(provider: &MdmProvider, staged: &Path) -> Result<SyncCounts, MdmError> {
    let parsed = std::fs::File::open(staged)
        .map_err(|e| MdmError::Storage(format!("cannot read {}: {e}", staged.display())))
        .and_then(|f| read_snapshot(provider.kind, f, provider.endpoint_id_attribute.as_deref()));
    match parsed {
        Ok(new) => install(provider, staged, &new),
        Err(e) => {
            let _ = std::fs::remove_file(staged);
            Err(e)
        }
    }
}

/// Where a new snapshot of `provider` is written before it replaces the current one: beside
/// it (so the rename is atomic), under a name of its own (a push and a sync may overlap).
pub fn staging_path(provider: &MdmProvider) -> Result<PathBuf, MdmError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = provider.file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| MdmError::Storage(format!("{}: {e}", dir.display())))?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(provider
        .file
        .with_extension(format!("json.{}-{n}.tmp", std::process::id())))
}

/// Removes staging files of `provider` that a process left behind (killed in the middle of a
/// push or a sync): they are never moved into place and would only take disk. Returns how
/// many. Run at start, before any push or sync of this process.
pub fn remove_stale_staging(provider: &MdmProvider) -> usize {
    let (Some(dir), Some(name)) = (
        provider.file.parent(),
        provider.file.file_stem().and_then(|n| n.to_str()),
    ) else {
        return 0;
    };
    let prefix = format!("{name}.json.");
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".tmp")
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Counts `new` against the provider's current snapshot and moves the synced file `staged` in
/// its place (rename, then the directory synced).
fn install(
    provider: &MdmProvider,
    staged: &Path,
    new: &[EndpointRecord],
) -> Result<SyncCounts, MdmError> {
    let old = std::fs::File::open(&provider.file)
        .ok()
        .and_then(|f| {
            read_snapshot(provider.kind, f, provider.endpoint_id_attribute.as_deref()).ok()
        })
        .unwrap_or_default();
    let counts = compare(&old, new);
    let dir = provider.file.parent().unwrap_or(Path::new("."));
    std::fs::rename(staged, &provider.file)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| {
            MdmError::Storage(format!(
                "cannot store the snapshot at {}: {e}",
                provider.file.display()
            ))
        })?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, host: &str) -> EndpointRecord {
        EndpointRecord {
            mdm_device_id: id.into(),
            hostname: Some(host.into()),
            ..Default::default()
        }
    }

    #[test]
    fn counts_new_changed_unchanged_removed() {
        let old = vec![rec("1", "a"), rec("2", "b"), rec("3", "c")];
        let new = vec![rec("1", "a"), rec("2", "B"), rec("4", "d")];
        assert_eq!(
            compare(&old, &new),
            SyncCounts {
                imported: 3,
                upserted: 2,
                unchanged: 1,
                removed: 1
            }
        );
        assert_eq!(compare(&[], &new).upserted, 3);
    }

    #[test]
    fn staging_files_left_behind_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acme-jamf.json");
        let provider = MdmProvider {
            name: "acme-jamf".into(),
            tenant_id: "acme".into(),
            kind: thoth_config::MdmKind::Jamf,
            file: file.clone(),
            source: MdmSource::Push,
            endpoint_id_attribute: None,
        };
        let staged = staging_path(&provider).unwrap();
        std::fs::write(&staged, "partial").unwrap();
        std::fs::write(&file, "{}").unwrap();
        std::fs::write(dir.path().join("other.json.1-0.tmp"), "x").unwrap();
        assert_eq!(remove_stale_staging(&provider), 1);
        assert!(!staged.exists() && file.exists());
        assert!(dir.path().join("other.json.1-0.tmp").exists());
    }
}
