//! Automatic persisted queries (Apollo's protocol): a client sends
//! `extensions.persistedQuery = {version: 1, sha256Hash}`, first without the query text; an
//! unknown hash answers `PersistedQueryNotFound` (`extensions.code = PERSISTED_QUERY_NOT_FOUND`),
//! the client resends hash and text, and the api keeps the document under that hash.
//!
//! Applied by `pipeline::execute`, with async-graphql's own bounded LRU storage, rather than by
//! installing the library's `ApolloPersistedQueries` extension: an installed extension sends
//! every field resolution through the extension chain (~30 % of read throughput), and that
//! extension blanks the query text before our limits could read it. Here a registered document
//! has passed every limit, and a hit is checked again against the limits that depend on the
//! request's variables.

use async_graphql::extensions::apollo_persisted_queries::{CacheStorage, LruCacheStorage};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, Value};
use sha2::{Digest, Sha256};
use tms_core::Error;

use crate::error::to_gql;

/// Documents kept per api process. Each holds at most `limits::MAX_DOCUMENT_BYTES` of text, so
/// the cache stays within a few tens of MiB; the least recently used is evicted first, and a
/// client whose hash was evicted just registers it again.
pub const MAX_ENTRIES: usize = 1024;

/// Where the extension sits in a request's `extensions`.
const EXTENSION: &str = "persistedQuery";

/// The persisted documents of this process (clones share them).
#[derive(Clone)]
pub struct PersistedQueries {
    storage: LruCacheStorage,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self {
            storage: LruCacheStorage::new(MAX_ENTRIES),
        }
    }
}

/// What a request's `persistedQuery` extension asks for.
pub enum Prepared {
    /// No extension: an ordinary request.
    Plain,
    /// Hash alone, and known: the stored document, still to be checked against the limits.
    Hit(ExecutableDocument),
    /// Hash and text that match: store the document under this hash once it passed the limits.
    Register(String),
}

impl PersistedQueries {
    /// Whether `req` carries the extension (and must go through [`PersistedQueries::prepare`]).
    pub fn in_request(req: &Request) -> bool {
        req.extensions.contains_key(EXTENSION)
    }

    /// Takes the extension out of `req` and says what to do with the request.
    pub async fn prepare(&self, req: &mut Request) -> Result<Prepared, ServerError> {
        let Some(value) = req.extensions.remove(EXTENSION) else {
            return Ok(Prepared::Plain);
        };
        let (version, hash) = parse_extension(value)?;
        if version != 1 {
            return Err(refusal(Error::field(
                "extensions.persistedQuery.version",
                "only version 1 is supported",
            )));
        }
        if req.query.is_empty() {
            return match self.storage.get(hash).await {
                Some(doc) => Ok(Prepared::Hit(doc)),
                None => Err(refusal(Error::PersistedQueryNotFound)),
            };
        }
        if hex::encode(Sha256::digest(req.query.as_bytes())) != hash {
            return Err(refusal(Error::field(
                "extensions.persistedQuery.sha256Hash",
                "does not match the SHA-256 of the query",
            )));
        }
        Ok(Prepared::Register(hash))
    }

    /// Keeps a document that passed the limits under its hash.
    pub async fn store(&self, hash: String, doc: ExecutableDocument) {
        self.storage.set(hash, doc).await;
    }
}

/// `{version: Int, sha256Hash: String}`; anything else is a validation error on the extension.
fn parse_extension(value: Value) -> Result<(i64, String), ServerError> {
    let bad = || {
        refusal(Error::field(
            "extensions.persistedQuery",
            "expected {version: 1, sha256Hash: \"<hex SHA-256 of the query>\"}",
        ))
    };
    let Value::Object(map) = value else {
        return Err(bad());
    };
    let version = match map.get("version") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let hash = match map.get("sha256Hash") {
        Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            h.to_ascii_lowercase()
        }
        _ => return Err(bad()),
    };
    Ok((version, hash))
}

/// The extension concerns the whole request, so the error points at no location.
fn refusal(e: Error) -> ServerError {
    let mut err = to_gql(e).into_server_error(Default::default());
    err.locations.clear();
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, hash: &str) -> Request {
        let mut req = Request::new(query);
        req.extensions.insert(
            EXTENSION.into(),
            async_graphql::value!({"version": 1, "sha256Hash": hash}),
        );
        req
    }

    fn code(e: &ServerError) -> String {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn unknown_hash_then_registration_then_hit() {
        let apq = PersistedQueries::default();
        let query = "{ me { id } }";
        let hash = hex::encode(Sha256::digest(query.as_bytes()));

        let err = match apq.prepare(&mut request("", &hash)).await {
            Err(e) => e,
            Ok(_) => panic!("an unknown hash was accepted"),
        };
        assert_eq!(err.message, "PersistedQueryNotFound");
        assert_eq!(code(&err), "\"PERSISTED_QUERY_NOT_FOUND\"");

        let Ok(Prepared::Register(h)) = apq.prepare(&mut request(query, &hash)).await else {
            panic!("a matching hash and query were not registered");
        };
        apq.store(h, async_graphql::parser::parse_query(query).unwrap())
            .await;
        assert!(matches!(
            apq.prepare(&mut request("", &hash)).await,
            Ok(Prepared::Hit(_))
        ));
        // Hex digits are case-insensitive.
        assert!(matches!(
            apq.prepare(&mut request("", &hash.to_ascii_uppercase()))
                .await,
            Ok(Prepared::Hit(_))
        ));
    }

    #[tokio::test]
    async fn a_hash_of_another_query_or_a_bad_extension_is_refused() {
        let apq = PersistedQueries::default();
        let other = hex::encode(Sha256::digest(b"{ other }"));
        let err = match apq.prepare(&mut request("{ me { id } }", &other)).await {
            Err(e) => e,
            Ok(_) => panic!("a mismatching hash was accepted"),
        };
        assert_eq!(code(&err), "\"VALIDATION\"");
        assert!(err.message.contains("sha256Hash"), "{}", err.message);

        let mut req = Request::new("{ me { id } }");
        req.extensions
            .insert(EXTENSION.into(), async_graphql::value!({"version": 2}));
        assert!(apq.prepare(&mut req).await.is_err());
    }
}
