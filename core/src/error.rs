//! The library's error type and the one table of stable error codes the API exposes.

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

mod codes;

pub use codes::{CodeDoc, ErrorCode};

/// One problem with one input field; `field` is the GraphQL path, e.g. `input.steps[2].dependsOn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Display` (and `source`) is for logs and carries the cause; [`Error::public_message`] is what
/// a client may see. Keeping them apart lets every `error = %e` log line name what really
/// failed without any of it reaching a GraphQL response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", validation_message(.0))]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// A unique constraint (named) rejected a write; services turn it into a precise message.
    #[error("already exists (unique constraint `{0}`)")]
    Duplicate(String),
    /// A dependency (database, queue) is unreachable; the detail is logged, never shown.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A subscriber fell too far behind the live stream and was dropped; it may resume from
    /// its last sequence number.
    #[error(
        "subscriber too slow: dropped after falling behind; resubscribe with afterSeq to resume"
    )]
    SlowConsumer,
    /// The request exceeded `limit` (a stable name such as `depth` or `pageSize`), whose maximum
    /// is `max`; `field` names the argument at fault when there is one (`first`).
    #[error("query exceeds the {limit} limit of {max}")]
    QueryLimit {
        limit: &'static str,
        max: usize,
        field: Option<&'static str>,
    },
    /// Sign-in refused without checking the password: too many recent failures for the
    /// account or the client address.
    #[error("too many failed sign-ins; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    /// An automatic persisted query was sent by hash alone and its hash is unknown here. The
    /// message is the one Apollo clients key on to resend with the query text.
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    /// A bug or unexpected state; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and its chain of causes on one line (`a: b: c`), for logs and operator-facing
/// messages of errors whose `Display` leaves the cause to `source()`. A cause whose text the line
/// already holds (some libraries print their source in their own message) is not repeated.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn validation_message(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid input".into(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, rest @ ..] => format!(
            "{}: {} (and {} more problem(s))",
            first.field,
            first.message,
            rest.len()
        ),
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Validation(_) => ErrorCode::Validation,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Conflict(_) | Error::Duplicate(_) => ErrorCode::Conflict,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::SlowConsumer => ErrorCode::SlowConsumer,
            Error::QueryLimit { .. } => ErrorCode::QueryLimit,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::PersistedQueryNotFound => ErrorCode::PersistedQueryNotFound,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message a client may see: never a detail of `Internal`, `Unavailable` or the
    /// constraint of `Duplicate` (SQL, Redis, host names stay in the logs).
    pub fn public_message(&self) -> String {
        match self {
            Error::Duplicate(_) => "already exists".into(),
            Error::Unavailable(_) => "service temporarily unavailable".into(),
            Error::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn query_limit(limit: &'static str, max: usize) -> Self {
        Error::QueryLimit {
            limit,
            max,
            field: None,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match e {
            D::NotFound => Error::NotFound("record"),
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Error::Duplicate(info.constraint_name().unwrap_or("unknown").to_string())
            }
            D::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Error::Unavailable(format!("{DATABASE_UNREACHABLE}: {}", info.message())),
            // A server shutting down (SQLSTATE 57P01) ends its sessions with this message.
            D::DatabaseError(_, info) if info.message().starts_with("terminating connection") => {
                Error::Unavailable(format!("{DATABASE_UNREACHABLE}: {}", info.message()))
            }
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                tracing::warn!(detail = %info.message(), "serialization failure");
                Error::Conflict("a concurrent update interfered; retry".into())
            }
            // The whole chain: e.g. a field that failed to deserialize says which value it met.
            other => Error::Internal(format!("database: {}", report(&other))),
        }
    }
}

/// How every `Unavailable` that means "Postgres cannot be reached" begins, so the pool can tell
/// them from other outages (Redis) and fail fast while the database is away.
pub const DATABASE_UNREACHABLE: &str = "database unreachable";

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::Unavailable(format!("{DATABASE_UNREACHABLE}: pool: {e}"))
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Unavailable(format!("redis: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_see_the_cause_clients_do_not() {
        let e = Error::Internal("database: relation \"runs\" does not exist".into());
        assert_eq!(
            e.to_string(),
            "internal error: database: relation \"runs\" does not exist"
        );
        assert_eq!(e.public_message(), "internal error");

        let e = Error::Unavailable("database pool: connection refused".into());
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert_eq!(e.public_message(), "service temporarily unavailable");
        assert!(!e.public_message().contains("refused"));

        let e = Error::Duplicate("workflows_name_key".into());
        assert!(e.to_string().contains("workflows_name_key"), "{e}");
        assert_eq!(e.public_message(), "already exists");
    }

    #[test]
    fn public_messages_of_client_errors_are_their_display() {
        let e = Error::field("input.name", "must not be empty");
        assert_eq!(e.public_message(), "input.name: must not be empty");
        assert_eq!(e.public_message(), e.to_string());
        assert_eq!(Error::NotFound("run").public_message(), "run not found");
        assert_eq!(
            Error::Forbidden("runs:write".into()).public_message(),
            "permission denied: runs:write"
        );
        assert_eq!(
            Error::Conflict("run already finished".into()).public_message(),
            "run already finished"
        );
    }

    #[test]
    fn reports_carry_the_whole_chain_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open the session")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("query failed: {0}")]
        struct Echoing(#[source] std::io::Error);

        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(report(&Outer(io())), "cannot open the session: refused");
        assert_eq!(report(&Echoing(io())), "query failed: refused");
    }

    #[test]
    fn every_code_is_listed_once_documented_and_a_metrics_label() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} listed twice");
            let doc = code.doc();
            assert!(!doc.meaning.is_empty() && !doc.message.is_empty() && !doc.when.is_empty());
            assert!(
                crate::metrics::http::CODES.contains(&code.as_str()),
                "{code:?} is not a label of tms_graphql_operations_total"
            );
        }
    }

    #[test]
    fn pool_and_redis_failures_keep_their_cause() {
        let e: Error = redis::RedisError::from((redis::ErrorKind::Io, "connection refused")).into();
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(e.to_string().contains("connection refused"), "{e}");
        assert!(!e.public_message().contains("refused"));
    }
}
