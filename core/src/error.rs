//! The library's error type and the one table of stable error codes the API exposes.

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable codes carried in GraphQL `extensions.code`. Clients switch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Validation,
    NotFound,
    Unauthenticated,
    Forbidden,
    Conflict,
    Unavailable,
    SlowConsumer,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

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
    #[error("already exists")]
    Duplicate(String),
    /// A dependency (database, queue) is unreachable; the detail is logged, never shown.
    #[error("service temporarily unavailable")]
    Unavailable(String),
    /// A subscriber fell too far behind the live stream and was dropped; it may resume from
    /// its last sequence number.
    #[error(
        "subscriber too slow: dropped after falling behind; resubscribe with afterSeq to resume"
    )]
    SlowConsumer,
    /// A bug or unexpected state; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
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
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
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
            D::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Error::Unavailable(info.message().to_string())
            }
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                tracing::warn!(detail = %info.message(), "serialization failure");
                Error::Conflict("a concurrent update interfered; retry".into())
            }
            other => Error::Internal(format!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::Unavailable(format!("database pool: {e}"))
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Unavailable(format!("redis: {e}"))
    }
}
