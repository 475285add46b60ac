//! Parsing client-supplied IDs and opaque pagination cursors into typed values.

use async_graphql::ID;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tms_core::Error;
use uuid::Uuid;

pub fn uuid(id: &ID, field: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id.as_str()).map_err(|_| Error::field(field, "is not a valid ID"))
}

pub fn encode_cursor(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

pub fn decode_cursor(kind: &str, cursor: &str) -> Result<String, Error> {
    let bad = || Error::field("after", "is not a cursor returned by this connection");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix(&format!("{kind}:"))
        .map(str::to_string)
        .ok_or_else(bad)
}

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// A page over `MAX_PAGE` is a limit (`QUERY_LIMIT`), one under 1 a plain input mistake
/// (`VALIDATION`). The limits extension refuses oversized pages before any resolver runs; this
/// check is the backstop for a `first` it cannot see statically.
pub fn page_size(first: Option<i32>) -> Result<i64, Error> {
    match first {
        None => Ok(DEFAULT_PAGE as i64),
        Some(n) if n > MAX_PAGE => Err(Error::QueryLimit {
            limit: "pageSize",
            max: MAX_PAGE as usize,
            field: Some("first"),
        }),
        Some(n) if n >= 1 => Ok(n as i64),
        Some(_) => Err(Error::field("first", "must be at least 1")),
    }
}
