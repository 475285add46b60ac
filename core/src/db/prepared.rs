//! `prepared_statement!`: makes a hand-written statement type one diesel prepares and caches.
//!
//! diesel never caches `sql_query`'s statements, so one that runs on every event or trigger is
//! parsed and planned by Postgres each time. A type whose SQL text is the same on every call
//! can say so with a static `QueryId`; diesel then prepares it once per connection.

/// Implements `QueryId` (static), `Query` (untyped rows, read with `QueryableByName`) and
/// `RunQueryDsl` for a statement type whose `QueryFragment` pushes the same SQL on every call.
/// With a lifetime: `prepared_statement!(AppendAudit<'a>)`.
#[macro_export]
macro_rules! prepared_statement {
    ($name:ident) => {
        impl diesel::query_builder::QueryId for $name {
            type QueryId = $name;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl diesel::query_builder::Query for $name {
            type SqlType = diesel::sql_types::Untyped;
        }
        impl diesel::query_dsl::RunQueryDsl<diesel::PgConnection> for $name {}
    };
    ($name:ident<$lt:lifetime>) => {
        impl<$lt> diesel::query_builder::QueryId for $name<$lt> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl<$lt> diesel::query_builder::Query for $name<$lt> {
            type SqlType = diesel::sql_types::Untyped;
        }
        impl<$lt> diesel::query_dsl::RunQueryDsl<diesel::PgConnection> for $name<$lt> {}
    };
}
