//! The single mapping from library errors to GraphQL errors with a stable `extensions.code`.

use async_graphql::{ErrorExtensions, Response};
use tms_core::Error;
use tms_core::error::ErrorCode;

/// Converts a library error into a GraphQL error. The client gets `public_message()` only;
/// internal details (`Display`, which carries the cause) are logged here, so nothing about SQL,
/// Redis or the host reaches the client.
pub fn to_gql(e: Error) -> async_graphql::Error {
    let code = e.code().as_str();
    match &e {
        Error::Internal(_) | Error::Unavailable(_) => {
            tracing::error!(code, error = %e, "request failed");
        }
        Error::Duplicate(constraint) => {
            tracing::warn!(code, constraint = %constraint, "unmapped unique violation");
        }
        _ => {}
    }
    let message = e.public_message();
    async_graphql::Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        if let Error::QueryLimit { limit, max, field } = &e {
            ext.set("limit", *limit);
            ext.set("max", *max as u64);
            if let Some(field) = field {
                ext.set("field", *field);
            }
        }
        if let Error::RateLimited {
            retry_after_seconds,
        } = &e
        {
            ext.set("retryAfterSeconds", *retry_after_seconds);
        }
        if let Error::Validation(fields) = &e {
            if let Some(first) = fields.first() {
                ext.set("field", first.field.as_str());
                ext.set("reason", first.message.as_str());
            }
            let details: Vec<async_graphql::Value> = fields
                .iter()
                .map(|f| {
                    let mut m = async_graphql::indexmap::IndexMap::new();
                    m.insert(
                        async_graphql::Name::new("field"),
                        async_graphql::Value::from(f.field.as_str()),
                    );
                    m.insert(
                        async_graphql::Name::new("message"),
                        async_graphql::Value::from(f.message.as_str()),
                    );
                    async_graphql::Value::Object(m)
                })
                .collect();
            ext.set("details", async_graphql::Value::List(details));
        }
    })
}

/// `.gql()` on library results inside resolvers.
pub trait GqlResult<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResult<T> for Result<T, Error> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(to_gql)
    }
}

/// Gives every error in a response a code: errors raised by async-graphql itself (parse,
/// validation, limits, argument coercion) carry none, and clients must be able to rely on one.
pub fn ensure_codes(mut resp: Response) -> Response {
    for err in &mut resp.errors {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if err.path.is_empty() {
            ErrorCode::GraphqlValidation.as_str()
        } else if err.message.starts_with("Failed to parse")
            || err.message.starts_with("Invalid value")
        {
            ErrorCode::BadUserInput.as_str()
        } else {
            tracing::error!(message = %err.message, "resolver error without a code");
            err.message = "internal error".into();
            ErrorCode::Internal.as_str()
        };
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    resp
}
