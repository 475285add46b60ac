//! The GraphQL schema: types, roots and the limits every request is held to.

pub mod api_tokens;
pub mod audit;
pub mod cache;
pub mod compiled;
pub mod descriptions;
pub mod events;
pub mod ids;
pub mod imports;
pub mod limits;
pub mod loaders;
pub mod logs;
pub mod monitoring;
pub mod mutation;
pub mod op_metrics;
pub mod permissions;
pub mod persisted;
pub mod pipeline;
pub mod query;
pub mod runs;
pub mod schema_walk;
pub mod sessions;
pub mod users;
pub mod workflow_input;
pub mod workflows;

use async_graphql::{Schema, SchemaBuilder};

use crate::state::Services;

pub type TmsSchema = Schema<query::QueryRoot, mutation::MutationRoot, events::SubscriptionRoot>;

pub use limits::{MAX_COMPLEXITY, MAX_DEPTH, MAX_DIRECTIVES, MAX_RECURSIVE_DEPTH};

pub fn builder() -> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, events::SubscriptionRoot>
{
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        events::SubscriptionRoot,
    )
    .register_output_type::<descriptions::SchemaDescriptions>()
}

/// The schema HTTP requests execute on, after [`pipeline::execute`] has checked the limits: no
/// extension (each would wrap every field resolution); the library's limits stay as a backstop;
/// in production neither introspection nor "did you mean" suggestions, which would map the
/// schema for an attacker.
pub fn build(services: Services, production: bool) -> TmsSchema {
    finish(
        builder()
            .data(services)
            .limit_depth(MAX_DEPTH)
            .limit_complexity(MAX_COMPLEXITY),
        production,
    )
}

/// The schema WebSocket subscriptions execute on: the protocol machine runs each subscribe
/// message itself, so the limits are checked by [`limits::Limits`].
pub fn build_ws(services: Services, production: bool) -> TmsSchema {
    finish(
        builder().data(services).extension(limits::Limits),
        production,
    )
}

fn finish(
    b: SchemaBuilder<query::QueryRoot, mutation::MutationRoot, events::SubscriptionRoot>,
    production: bool,
) -> TmsSchema {
    let mut b = b
        .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
        .limit_directives(MAX_DIRECTIVES);
    if production {
        b = b.disable_introspection().disable_suggestions();
    }
    b.finish()
}

/// The SDL checked in as `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schema_matches_generated_sdl() {
        let checked_in = include_str!("../../../schema.graphql");
        let generated = super::sdl();
        assert!(
            checked_in == generated,
            "schema.graphql is stale: run `cargo run -q -p tms-api -- print-schema > schema.graphql`"
        );
    }

    #[test]
    fn every_type_field_argument_and_value_has_a_description() {
        let missing = crate::reference::api_md::undocumented(&super::sdl());
        assert!(
            missing.is_empty(),
            "{} schema item(s) without a description (doc comment, or `#[graphql(desc = \"...\")]` \
             on an argument):\n{}",
            missing.len(),
            missing.join("\n")
        );
    }

    #[test]
    fn lists_hold_non_null_items_and_ids_are_non_null() {
        let slips = crate::reference::api_md::nullability_slips(&super::sdl(), &["AuditActor.id"]);
        assert!(slips.is_empty(), "{}", slips.join("\n"));
    }
}
