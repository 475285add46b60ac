//! The one table of stable error codes: their names, HTTP statuses and reference text.

/// Stable codes carried in GraphQL `extensions.code`. Clients switch on these, never on messages.
/// This is the one table of codes: `docs/reference/errors.md` is generated from [`ErrorCode::ALL`]
/// and [`ErrorCode::doc`] (`tms-api print-docs errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Validation,
    NotFound,
    Unauthenticated,
    Forbidden,
    Conflict,
    Unavailable,
    SlowConsumer,
    /// A request exceeded one of the GraphQL limits (depth, complexity, page size, aliases,
    /// document size, batch size) and was refused before any resolver ran.
    QueryLimit,
    /// Too many failed sign-ins for one account or address: retry after
    /// `extensions.retryAfterSeconds`.
    RateLimited,
    /// An automatic persisted query was sent by hash alone and this api does not know the hash:
    /// send the query text with the hash once (Apollo clients do this by themselves).
    PersistedQueryNotFound,
    /// The document does not parse or does not validate against the schema (unknown field,
    /// wrong argument type, a mutation sent with GET...). Raised by the GraphQL layer itself.
    GraphqlValidation,
    /// A value could not be coerced to its argument's type (e.g. a malformed `ID` or
    /// `DateTime`). Raised by the GraphQL layer itself.
    BadUserInput,
    Internal,
}

/// What [`ErrorCode::doc`] says about one code, for the generated error reference.
#[derive(Debug, Clone, Copy)]
pub struct CodeDoc {
    /// What the code means for a client, in one sentence.
    pub meaning: &'static str,
    /// The public message (or its shape) a client sees with it.
    pub message: &'static str,
    /// When it happens, and what to do.
    pub when: &'static str,
}

impl ErrorCode {
    /// Every code, in the order the reference lists them.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Validation,
        ErrorCode::BadUserInput,
        ErrorCode::GraphqlValidation,
        ErrorCode::NotFound,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::Conflict,
        ErrorCode::QueryLimit,
        ErrorCode::RateLimited,
        ErrorCode::PersistedQueryNotFound,
        ErrorCode::SlowConsumer,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::QueryLimit => "QUERY_LIMIT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::GraphqlValidation => "GRAPHQL_VALIDATION",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status the plain-HTTP JSON endpoints (`/auth/*`, the step-log download) answer
    /// with this code. `/graphql` answers 200 with the code in `extensions.code`, as GraphQL
    /// over HTTP does.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Validation | ErrorCode::BadUserInput | ErrorCode::GraphqlValidation => 400,
            ErrorCode::QueryLimit | ErrorCode::PersistedQueryNotFound => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::SlowConsumer | ErrorCode::Internal => 500,
        }
    }

    /// The reference text of a code.
    pub fn doc(self) -> CodeDoc {
        let (meaning, message, when) = match self {
            ErrorCode::Validation => (
                "An input value is invalid; `extensions.field` names the first one at fault (its GraphQL path, e.g. `input.steps[2].dependsOn`), `extensions.reason` says why and `extensions.details` lists every problem as `{field, message}`.",
                "`<field>: <reason>`, with `(and N more problem(s))` when there are several",
                "A workflow with a cycle or an unknown dependency, an empty name, a bad cron expression, a password too short, a malformed persisted-query extension... Fix the named field and resend.",
            ),
            ErrorCode::BadUserInput => (
                "A value could not be coerced to its argument's type.",
                "The GraphQL layer's own message, e.g. `Failed to parse \"ID\": ...`",
                "A malformed `ID`, `DateTime` or enum value in an argument or variable.",
            ),
            ErrorCode::GraphqlValidation => (
                "The document does not parse or does not fit the schema.",
                "The GraphQL layer's own message, e.g. `Unknown field \"x\" on type \"Query\"`",
                "A syntax error, an unknown field or argument, a missing required argument, a variable of the wrong type, or a mutation sent with `GET /graphql` (use POST). Introspection and suggestions are off when `TMS_PRODUCTION` is on.",
            ),
            ErrorCode::NotFound => (
                "The object does not exist, or the caller may not know it exists.",
                "`<thing> not found`, e.g. `run not found`",
                "An id of a deleted or never-created object, or an object outside the caller's reach.",
            ),
            ErrorCode::Unauthenticated => (
                "No valid credentials came with the request.",
                "A short reason, e.g. `authentication required`, `invalid or expired access token` or `invalid email or password`",
                "A missing, malformed, expired or revoked access token or API token, wrong sign-in credentials, or a refresh token that is unknown or expired. Sign in again (or refresh).",
            ),
            ErrorCode::Forbidden => (
                "The caller is known but its role does not allow the operation.",
                "`permission denied: <permission>`",
                "A role without the permission the field needs (see the role named in each field's description in the API reference). The refusal is audited as `access.denied`.",
            ),
            ErrorCode::Conflict => (
                "The operation does not fit the current state of the object.",
                "A sentence naming the conflict, e.g. `run already finished` or `already exists`",
                "Cancelling a finished run, retrying a run that is not finished, a name already taken, or a concurrent update that interfered (retry).",
            ),
            ErrorCode::QueryLimit => (
                "The request exceeded a GraphQL limit and was refused before any resolver ran; `extensions.limit` names the limit (`depth`, `complexity`, `aliases`, `documentBytes`, `batch`, `pageSize`, `recursiveDepth`, `directives`) and `extensions.max` its maximum.",
                "`query exceeds the <limit> limit of <max>`",
                "A query nested too deep, too many fields or aliases, `first` above 100, a document over 32 KiB or a batch of more than 10 operations. Split the request.",
            ),
            ErrorCode::RateLimited => (
                "Sign-in refused without checking the password: too many recent failures for the account or the client address; `extensions.retryAfterSeconds` says when to retry.",
                "`too many failed sign-ins; retry in <n> s`",
                "More than `TMS_LOGIN_FAILURE_LIMIT` failed sign-ins within 15 minutes for one account (four times as many for one address).",
            ),
            ErrorCode::PersistedQueryNotFound => (
                "An automatic persisted query was sent by its SHA-256 hash alone and this api does not know the hash.",
                "`PersistedQueryNotFound` (the message Apollo clients key on)",
                "The first use of a query, or after the api restarted or evicted it from its bounded cache. Resend with both the query text and the hash; Apollo clients do this by themselves.",
            ),
            ErrorCode::SlowConsumer => (
                "A subscriber fell too far behind the live stream and was dropped.",
                "`subscriber too slow: dropped after falling behind; resubscribe with afterSeq to resume`",
                "A `runProgress` subscriber that does not read its socket fast enough. Resubscribe with `afterSeq` set to the last sequence number received: nothing is lost.",
            ),
            ErrorCode::Unavailable => (
                "A dependency (Postgres, Redis) cannot be reached; the request may succeed if retried later.",
                "`service temporarily unavailable`",
                "A database or Redis outage or restart. The cause is in the api's log (`request failed`), never in the response; `/readyz` says which component is down.",
            ),
            ErrorCode::Internal => (
                "A bug or unexpected state; the details are in the api's log, never in the response.",
                "`internal error`",
                "Anything unexpected. Look for the `request failed` line with `code=INTERNAL` (and its trace id) in the api's log.",
            ),
        };
        CodeDoc {
            meaning,
            message,
            when,
        }
    }
}
