//! `thoth-load`: a load generator for thoth-gateway (or any forwarder taking NDJSON over
//! HTTP) and fast Splunk HEC / Elasticsearch `_bulk` receivers to sink into, so a benchmark
//! measures the forwarder rather than its destinations.
//!
//! Pure parts (event generation, MDM snapshots, counting events in a sink's body, the
//! latency summary) are plain functions with unit tests; `send` and `receive` are the I/O.

pub mod bodies;
pub mod counting;
pub mod generate;
pub mod receive;
pub mod send;
pub mod snapshot;
pub mod summary;
pub mod two_sends;
