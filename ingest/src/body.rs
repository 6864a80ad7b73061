//! Reading a request body within the limits: size (before and after gzip), read time, and
//! the content types the API takes.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use thoth_event::BodyFormat;

use crate::error::ApiError;

/// The body format named by `Content-Type` (parameters such as `charset` are ignored).
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let unsupported = |got: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {got} is not accepted; send application/x-ndjson (one event per line) or application/json (an event or an array of events)"
            ),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("(none)"));
    };
    let text = value.to_str().map_err(|_| unsupported("(not text)"))?;
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(BodyFormat::Ndjson)
        }
        "application/json" => Ok(BodyFormat::Json),
        _ => Err(unsupported(&format!("{text:?}"))),
    }
}

/// Bytes of a body over the limit still read (and dropped) before answering 413, so that a
/// client that is still sending reads the answer instead of a reset connection.
const OVERFLOW_DRAIN_BYTES: usize = 1024 * 1024;

fn too_large(max: usize, limit_key: &str, what: &str) -> ApiError {
    let hint = if limit_key == "api.max_body_bytes" {
        "; send smaller batches"
    } else {
        ""
    };
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the {what} is over {limit_key} ({max} bytes){hint}"),
    )
}

/// Where a body's bytes go as they arrive.
trait BodySink {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()>;
}

impl BodySink for Vec<u8> {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

impl BodySink for tokio::fs::File {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, data).await
    }
}

/// `Content-Encoding`: `true` for gzip; 415 for anything but gzip or none.
fn gzip_encoded(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") | Some("") => Ok(false),
        Some("gzip") | Some("x-gzip") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("Content-Encoding {other:?} is not accepted; use gzip or none"),
        )),
    }
}

/// The body length `Content-Length` declares, if it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The most a declared length reserves before its bytes arrive. A webhook's body is read
/// before its signature can be checked, so an unauthenticated client must not make the
/// gateway reserve `max` per connection by declaring it; larger bodies grow from here.
const RESERVED_UP_FRONT: usize = 1024 * 1024;

/// The buffer for a body of the declared length (at most `max` and [`RESERVED_UP_FRONT`]):
/// sized once, so a typical batch is not copied again at each doubling.
fn body_buffer(headers: &HeaderMap, max: usize) -> Vec<u8> {
    let declared = declared_length(headers).unwrap_or(0);
    let limit = max.min(RESERVED_UP_FRONT);
    Vec::with_capacity(usize::try_from(declared).unwrap_or(limit).min(limit))
}

/// Streams a body into `sink` as it arrives: at most `max` bytes (`limit_key` names the
/// limit in the 413), within `timeout` for the whole body. Returns the bytes read.
async fn stream_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    limit_key: &str,
    timeout: Duration,
    sink: &mut impl BodySink,
) -> Result<usize, ApiError> {
    if let Some(len) = declared_length(headers) {
        // Far over the limit: answer at once (the connection closes).
        if len > max.saturating_add(OVERFLOW_DRAIN_BYTES) as u64 {
            return Err(too_large(max, limit_key, "body"));
        }
    }
    let read = async {
        let mut body = body;
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_read_error",
                    format!("the body could not be read: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen <= max {
                sink.write(&data).await.map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "body_store_failed",
                        format!("the body could not be stored: {e}"),
                    )
                })?;
            } else if seen > max.saturating_add(OVERFLOW_DRAIN_BYTES) {
                break;
            }
        }
        if seen > max {
            return Err(too_large(max, limit_key, "body"));
        }
        Ok(seen)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body was not received within {} s", timeout.as_secs()),
        )),
        Ok(result) => result,
    }
}

/// Reads the whole body: at most `max` bytes, within `timeout`, gunzipped when
/// `Content-Encoding: gzip` (the decompressed size is limited to `max` as well).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let gzip = gzip_encoded(headers)?;
    let mut raw = body_buffer(headers, max);
    stream_body(headers, body, max, "api.max_body_bytes", timeout, &mut raw).await?;
    if !gzip {
        return Ok(Bytes::from(raw));
    }
    gunzip(&raw, max).map(Bytes::from)
}

/// Streams a body into a new file at `path` (for payloads too large to hold in memory, such
/// as MDM snapshots): at most `max` bytes (`limit_key` names the limit), within `timeout`,
/// synced before this returns. Compressed bodies are refused (415). On an error the file is
/// removed.
pub async fn read_body_to_file(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    limit_key: &str,
    timeout: Duration,
    path: &std::path::Path,
) -> Result<u64, ApiError> {
    if gzip_encoded(headers)? {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            "this endpoint takes an uncompressed body",
        ));
    }
    let stored = async {
        let mut file = tokio::fs::File::create(path).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "body_store_failed",
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
        let n = stream_body(headers, body, max, limit_key, timeout, &mut file).await?;
        file.sync_all().await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "body_store_failed",
                format!("cannot sync {}: {e}", path.display()),
            )
        })?;
        Ok(n as u64)
    }
    .await;
    if stored.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    stored
}

/// Decompresses gzip, refusing output past `max` bytes (a gzip bomb stops there).
pub fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity((raw.len() * 4).min(max));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(max as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
            format!("Content-Encoding is gzip but the body is not valid gzip: {e}"),
        )
    })?;
    if out.len() > max {
        return Err(too_large(max, "api.max_body_bytes", "decompressed body"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_round_trip_and_bomb_limit() {
        assert_eq!(gunzip(&gz(b"hello"), 100).unwrap(), b"hello");
        let bomb = gz(&vec![b'a'; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20_000);
        let e = gunzip(&bomb, 1024 * 1024).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut truncated = gz(b"hello world");
        truncated.truncate(truncated.len() - 6);
        assert_eq!(gunzip(&truncated, 100).unwrap_err().code, "invalid_gzip");
    }

    #[test]
    fn the_body_buffer_is_the_declared_length_within_the_limit() {
        let with_length = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, v.parse().unwrap());
            h
        };
        assert_eq!(body_buffer(&with_length("1000"), 4096).capacity(), 1000);
        assert_eq!(body_buffer(&with_length("4096"), 4096).capacity(), 4096);
        // Over the limit, or a length no usize holds: the limit, never more.
        assert_eq!(body_buffer(&with_length("5000"), 4096).capacity(), 4096);
        assert_eq!(
            body_buffer(&with_length("18446744073709551615"), 4096).capacity(),
            4096
        );
        // Never more than a megabyte before the bytes arrive, whatever the limit.
        let ten_mib = 10 * 1024 * 1024;
        assert_eq!(
            body_buffer(&with_length("10485760"), ten_mib).capacity(),
            RESERVED_UP_FRONT
        );
        assert_eq!(
            body_buffer(&with_length("65536"), ten_mib).capacity(),
            65536
        );
        // Absent or not a number: grown as the body arrives.
        assert_eq!(body_buffer(&HeaderMap::new(), 4096).capacity(), 0);
        assert_eq!(body_buffer(&with_length("12x"), 4096).capacity(), 0);
        assert_eq!(body_buffer(&with_length("-1"), 4096).capacity(), 0);
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(body_format(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson".parse().unwrap(),
        );
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Ndjson);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            body_format(&h).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
