//! The gateway's configuration (docs/configuration.md): the TOML schema, defaults, durations and sizes,
//! secrets, and validation that reports every error with its key path.
//!
//! Relative paths in a config file are resolved against the directory of that file.

pub mod reload_rules;
mod schema;
mod secret;
pub mod units;
mod walker;

#[cfg(test)]
mod drift_tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secret::Secret;

/// The JSON Schema (2020-12) of the config file, as `thoth-gateway config schema` prints it.
/// Kept equal to what the parser reads by this crate's drift tests.
pub const JSON_SCHEMA: &str = include_str!("../../docs/schema/config.schema.json");

/// One configuration mistake: where (`sinks.archive.batch.max_events`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub wal: WalConfig,
    pub tenants: Vec<Tenant>,
    pub mdm: MdmConfig,
    pub checkins: CheckinsConfig,
    /// `[state]`: where the state replicas share lives.
    pub state: StateConfig,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// `[[sources.webhooks]]`: signed inbound webhooks at `/v1/hooks/{name}`.
    pub webhook_sources: Vec<WebhookSourceConfig>,
    /// `[[sources.kafka]]`: consumer groups reading decisions and check-ins.
    pub kafka_sources: Vec<KafkaSourceConfig>,
    /// `[transform]`: the global VRL program, run after enrichment.
    pub transform: Option<VrlSource>,
    /// `[[tests]]`, run by `thoth-gateway test`.
    pub tests: Vec<ConfigTest>,
    /// What is valid but unwise (a token shorter than 16 bytes, say): `validate` prints these
    /// and `run` logs them; they never make the config invalid.
    pub warnings: Vec<ConfigError>,
}

/// A VRL program's source and the config key it was found at (for diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrlSource {
    pub key: String,
    pub source: String,
}

/// One `[[tests]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTest {
    pub name: String,
    pub path: String,
    /// The input event, as JSON.
    pub input: serde_json::Value,
    /// The exact set of sinks the event must reach.
    pub expect_sinks: Option<Vec<String>>,
    /// A VRL assertion program run on the transformed event.
    pub expect: Option<VrlSource>,
    /// Per sink: a VRL assertion program run on that sink's `remap` result.
    pub expect_remap: Vec<(String, VrlSource)>,
}

/// One `[[sources.kafka]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceConfig {
    pub name: String,
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    /// Events from this source must be of this tenant (else dead-lettered).
    pub tenant_id: Option<String>,
    /// librdkafka properties passed through (SASL, TLS, timeouts, …).
    pub librdkafka: Vec<(String, String)>,
}

/// One `[[sources.webhooks]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSourceConfig {
    pub name: String,
    /// Events from this hook must be of this tenant (else 403).
    pub tenant_id: Option<String>,
    /// Any of these verifies (rotation).
    pub secrets: Vec<thoth_event::WebhookSecret>,
    pub tolerance: Duration,
}

/// `type = "webhook"`: signed HTTP POSTs (SOAR, PAM, any HTTP target).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSinkConfig {
    pub url: String,
    /// One signature per secret (rotation).
    pub secrets: Vec<thoth_event::WebhookSecret>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// When set, also `X-Hub-Signature-256` with this key.
    pub hub_secret: Option<Secret>,
}

/// `[api]`: the HTTP listener and who may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub max_event_bytes: u64,
    pub max_depth: u64,
    /// Most members of any one object in an event.
    pub max_members: u64,
    pub max_batch_events: u64,
    pub max_connections: u64,
    pub tokens: Vec<TokenConfig>,
    /// `[api.tls]`: HTTPS (and client certificates) for the listener.
    pub tls: Option<IngestTls>,
}

/// `[api.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestTls {
    /// PEM certificate chain of the listener.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificate(s) that sign clients' certificates; enables client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// `client_auth = "required"`: a connection without a valid client certificate is refused.
    pub client_auth_required: bool,
    /// `[[api.tls.clients]]`: client certificates that authenticate event submission.
    pub clients: Vec<ClientCertConfig>,
}

/// One `[[api.tls.clients]]`: a client certificate (by DNS name or fingerprint) standing for a
/// tenant's token (or an admin's) on `POST /v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCertConfig {
    pub dns_name: Option<String>,
    pub sha256: Option<[u8; 32]>,
    pub tenant_id: Option<String>,
    pub admin: bool,
    pub max_events_per_second: Option<u64>,
}

/// One `[[api.tokens]]` entry. Only the SHA-256 of the token is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The tenant this token may submit for; `None` for admin tokens.
    pub tenant_id: Option<String>,
    pub admin: bool,
    pub sha256: [u8; 32],
    /// Events per second this token may submit (a burst of one second's worth); above it
    /// ingest answers 429 with `Retry-After`. `None`: unlimited.
    pub max_events_per_second: Option<u64>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("tenant_id", &self.tenant_id)
            .field("admin", &self.admin)
            .field("max_events_per_second", &self.max_events_per_second)
            .finish_non_exhaustive()
    }
}

/// When the WAL calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    Always,
    Interval(Duration),
}

/// `[wal]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WalConfig {
    pub max_bytes: u64,
    pub fsync: FsyncMode,
    /// Segment size; by default 64 MiB or a sixteenth of `max_bytes`, whichever is smaller.
    pub segment_bytes: Option<u64>,
}

/// `[[tenants]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub compliance_profile: Option<String>,
}

/// `[mdm]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MdmConfig {
    pub refresh_interval: Duration,
    /// The largest snapshot `PUT /v1/mdm/{provider}` takes, in bytes.
    pub max_push_bytes: u64,
    pub providers: Vec<MdmProvider>,
    pub fleet_rules: Vec<FleetRule>,
}

/// `kind` of an MDM provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdmKind {
    Jamf,
    Intune,
}

impl MdmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MdmKind::Jamf => "jamf",
            MdmKind::Intune => "intune",
        }
    }
}

/// `[[mdm.providers]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MdmProvider {
    pub name: String,
    pub tenant_id: String,
    pub kind: MdmKind,
    /// Where the current snapshot (the provider's native list-response format) is read from:
    /// the configured `file`, or `data_dir/mdm/{name}.json` where syncs and pushes keep the
    /// last good one.
    pub file: PathBuf,
    /// How the snapshot is obtained.
    pub source: MdmSource,
    /// Jamf extension attribute holding the Thoth endpoint id.
    pub endpoint_id_attribute: Option<String>,
}

/// How a provider's snapshot is obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum MdmSource {
    /// A file someone else keeps up to date; reloaded when it changes.
    File,
    /// The Jamf Pro API, synced every `refresh_interval`.
    Jamf(JamfApi),
    /// Microsoft Graph (Intune), synced every `refresh_interval`.
    Intune(IntuneApi),
    /// Only `PUT /v1/mdm/{provider}`.
    Push,
}

/// Jamf Pro API access.
#[derive(Debug, Clone, PartialEq)]
pub struct JamfApi {
    pub url: String,
    pub auth: JamfAuth,
    /// The inventory endpoint (`/api/v3/computers-inventory` by default).
    pub inventory_path: String,
    pub page_size: u64,
}

/// How the gateway authenticates to Jamf Pro.
#[derive(Debug, Clone, PartialEq)]
pub enum JamfAuth {
    /// API client credentials (`/api/oauth/token`).
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// A bearer token given as is.
    Token(Secret),
}

/// Microsoft Graph access for Intune.
#[derive(Debug, Clone, PartialEq)]
pub struct IntuneApi {
    /// Graph's base URL (`https://graph.microsoft.com`).
    pub url: String,
    /// The app registration the gateway signs in as (scope defaults to Graph's).
    pub entra: EntraApp,
}

/// An Entra ID app registration signing in with client credentials: Intune's Graph access
/// and the Sentinel sink's ingestion access.
#[derive(Debug, Clone, PartialEq)]
pub struct EntraApp {
    pub azure_tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Entra ID authority, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// OAuth scope (sovereign clouds use another audience).
    pub scope: String,
}

impl EntraApp {
    /// The authority's token endpoint for the tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority, self.azure_tenant_id
        )
    }
}

/// The normalized endpoint fields a fleet rule may compare (docs/events.md).
pub const ENDPOINT_FIELDS: [&str; 13] = [
    "mdm_device_id",
    "serial",
    "hostname",
    "os",
    "os_version",
    "owner",
    "department",
    "site",
    "category",
    "model",
    "managed",
    "compliant",
    "endpoint_id",
];

/// `[[mdm.fleet_rules]]`: first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRule {
    pub tenant_id: Option<String>,
    /// Field → pattern (exact, `*` glob).
    pub when: Vec<(String, String)>,
    pub fleet_id: String,
    pub fleet_name: String,
}

/// `[checkins]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckinsConfig {
    pub stale_after: Duration,
    /// Most endpoints that no MDM snapshot knows whose check-ins are kept (oldest evicted).
    pub max_unknown_endpoints: u64,
}

/// `[state]`: where check-ins, replay ids and rate-limit buckets live. `local` keeps them in
/// the process and `data_dir`; `redis` shares them between replicas through a Redis-compatible
/// server.
#[derive(Debug, Clone, PartialEq)]
pub enum StateConfig {
    Local,
    Redis(RedisState),
}

/// `[state] backend = "redis"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisState {
    /// `redis://` or `rediss://` (TLS) URL; a password in it makes it a secret.
    pub url: Secret,
    /// Prefixed to every key, so several fleets can share one server.
    pub key_prefix: String,
    /// This replica's name in the shared state (who claimed what).
    pub replica_id: String,
    /// Replicas sharing the rate limits: each holds `limit / expected_replicas` while the
    /// server cannot be reached.
    pub expected_replicas: u64,
}

/// `when_full` of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    Block,
}

/// `[sinks.NAME.batch]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    pub max_events: u64,
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// `[sinks.NAME.retry]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_duration: Duration,
}

/// `[sinks.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    /// Only these tenants' events; `None` = all.
    pub tenants: Option<Vec<String>>,
    pub when_full: WhenFull,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// VRL: the sink takes an event only when this returns `true`.
    pub condition: Option<VrlSource>,
    /// VRL: what the sink sends instead of the enriched event.
    pub remap: Option<VrlSource>,
    /// Settings of sinks that send requests (unused by `file`).
    pub http: HttpSinkConfig,
    pub kind: SinkKind,
}

/// Request body compression of an HTTP sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

/// `[sinks.NAME.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any certificate (tests only; logged loudly).
    pub verify: bool,
}

/// How many requests an HTTP sink keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// AIMD on round-trip time and back-pressure answers, between 1 and `max_concurrency`.
    Adaptive,
    /// Exactly this many.
    Fixed(u64),
}

/// Options common to HTTP sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSinkConfig {
    /// Requests in flight at once: `"adaptive"` (the default) or a number.
    pub concurrency: Concurrency,
    /// The adaptive limit's ceiling.
    pub max_concurrency: u64,
    pub compression: Compression,
    pub tls: TlsConfig,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            concurrency: Concurrency::Adaptive,
            max_concurrency: 16,
            compression: Compression::Gzip,
            tls: TlsConfig {
                ca_file: None,
                verify: true,
            },
            timeout: Duration::from_secs(30),
        }
    }
}

impl HttpSinkConfig {
    /// The most requests that can be in flight at once.
    pub fn most_in_flight(&self) -> u64 {
        match self.concurrency {
            Concurrency::Fixed(n) => n,
            Concurrency::Adaptive => self.max_concurrency,
        }
    }
}

/// `type = "splunk_hec"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SplunkHecConfig {
    /// Base URL, e.g. `https://splunk.acme.com:8088`.
    pub endpoint: String,
    pub token: Secret,
    pub index: Option<String>,
    /// Indexer acknowledgement: a batch counts only once HEC acknowledges it.
    pub acknowledgements: bool,
    /// How long to wait for an acknowledgement before resending.
    pub ack_timeout: Duration,
    /// How often to poll `/services/collector/ack`.
    pub ack_poll_interval: Duration,
}

/// Authentication of an Elasticsearch sink.
#[derive(Debug, Clone, PartialEq)]
pub enum ElasticAuth {
    None,
    /// `Authorization: ApiKey <key>` (the base64 `id:api_key` Elasticsearch gives).
    ApiKey(Secret),
    Basic {
        username: String,
        password: Secret,
    },
}

/// Where an Elasticsearch sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElasticTarget {
    /// A data stream (`create` actions).
    DataStream(String),
    /// An index name, with `%Y`, `%m`, `%d` taken from each event's `@timestamp`.
    Index(String),
}

/// `type = "elasticsearch"` (Elasticsearch 8/9, OpenSearch 2).
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticConfig {
    /// Base URLs; requests go round-robin, skipping endpoints that just failed.
    pub endpoints: Vec<String>,
    pub auth: ElasticAuth,
    pub target: ElasticTarget,
}

/// `type = "sentinel"`: Azure Monitor Logs Ingestion API with Entra ID client credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelConfig {
    /// The data collection endpoint (or the DCR's own ingestion endpoint).
    pub endpoint: String,
    pub dcr_immutable_id: String,
    pub stream: String,
    /// The app registration (scope defaults to Azure Monitor's).
    pub entra: EntraApp,
}

/// The destination of a sink.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// Appends enriched NDJSON to a file.
    File { path: PathBuf },
    /// Splunk HTTP Event Collector.
    SplunkHec(SplunkHecConfig),
    /// Elasticsearch / OpenSearch `_bulk`.
    Elasticsearch(ElasticConfig),
    /// Microsoft Sentinel through the Logs Ingestion API.
    Sentinel(SentinelConfig),
    /// Standard Webhooks signed POSTs.
    Webhook(WebhookSinkConfig),
    /// Produces enriched events to a Kafka topic, keyed by endpoint id.
    Kafka(KafkaSinkConfig),
}

/// `type = "kafka"`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSinkConfig {
    pub bootstrap_servers: String,
    pub topic: String,
    /// librdkafka producer properties passed through.
    pub librdkafka: Vec<(String, String)>,
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File { .. } => "file",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::Sentinel(_) => "sentinel",
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Kafka(_) => "kafka",
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                path: path.display().to_string(),
                message: format!("cannot read the config file: {e}"),
            }]
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::from_toml(&text, base)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    /// Returns every error found, each with its key path.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
        schema::parse(text, base)
    }

    /// Looks up a tenant.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// Where dead letters live.
    pub fn dlq_dir(&self) -> PathBuf {
        self.data_dir.join("dlq")
    }

    /// Where the WAL lives.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }
}
