//! Diesel table definitions, kept in step with `migrations/` by hand (diesel CLI optional).

/// The Postgres enum types of run, task and event states.
pub mod sql_types {
    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "run_status"))]
    pub struct PgRunStatus;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "run_trigger"))]
    pub struct PgRunTrigger;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "task_status"))]
    pub struct PgTaskStatus;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "event_kind"))]
    pub struct PgEventKind;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "event_status"))]
    pub struct PgEventStatus;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "import_format"))]
    pub struct PgImportFormat;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "import_batch_status"))]
    pub struct PgImportBatchStatus;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "import_action"))]
    pub struct PgImportAction;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "audit_action"))]
    pub struct PgAuditAction;

    #[derive(diesel::query_builder::QueryId, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "audit_outcome"))]
    pub struct PgAuditOutcome;
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamptz,
        oidc_issuer -> Nullable<Text>,
        oidc_subject -> Nullable<Text>,
    }
}

diesel::table! {
    user_roles (user_id, role) {
        user_id -> Uuid,
        role -> Text,
        granted_at -> Timestamptz,
        granted_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    workflows (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        current_version -> Int4,
        archived_at -> Nullable<Timestamptz>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        schedule_cron -> Nullable<Text>,
        schedule_timezone -> Nullable<Text>,
        schedule_enabled -> Bool,
        schedule_fired_through -> Nullable<Timestamptz>,
        legacy_id -> Nullable<Text>,
        import_checksum -> Nullable<Text>,
        import_meta -> Nullable<Jsonb>,
        max_concurrent_runs -> Nullable<Int4>,
        rate_limit_runs -> Nullable<Int4>,
        rate_limit_seconds -> Nullable<Int4>,
    }
}

diesel::table! {
    workflow_versions (workflow_id, version) {
        workflow_id -> Uuid,
        version -> Int4,
        spec -> Jsonb,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::{PgRunStatus, PgRunTrigger};

    runs (id) {
        id -> Uuid,
        workflow_id -> Uuid,
        version -> Int4,
        status -> PgRunStatus,
        inputs -> Jsonb,
        idempotency_key -> Nullable<Text>,
        no_cache -> Bool,
        triggered_by -> Nullable<Uuid>,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        deliveries -> Int4,
        last_seq -> Int8,
        cancel_requested_at -> Nullable<Timestamptz>,
        trigger -> PgRunTrigger,
        scheduled_for -> Nullable<Timestamptz>,
        not_before -> Nullable<Timestamptz>,
        dead_lettered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::PgTaskStatus;

    tasks (run_id, name) {
        run_id -> Uuid,
        name -> Text,
        position -> Int4,
        status -> PgTaskStatus,
        attempt -> Int4,
        depends_on -> Array<Text>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        exit_code -> Nullable<Int4>,
        log_tail -> Text,
        error -> Nullable<Text>,
        progress_percent -> Nullable<Float8>,
        progress_at -> Nullable<Timestamptz>,
        output_manifest -> Nullable<Text>,
        output_bytes -> Nullable<Int8>,
        cache_key -> Nullable<Text>,
        cache_parts -> Nullable<Jsonb>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::{PgImportBatchStatus, PgImportFormat};

    import_batches (id) {
        id -> Uuid,
        created_at -> Timestamptz,
        actor_id -> Nullable<Uuid>,
        format -> PgImportFormat,
        checksum -> Text,
        tag -> Nullable<Text>,
        task_count -> Int4,
        workflow_count -> Int4,
        created_count -> Int4,
        updated_count -> Int4,
        unchanged_count -> Int4,
        status -> PgImportBatchStatus,
        problems -> Jsonb,
        skipped -> Array<Text>,
        rolled_back_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::PgImportAction;

    import_batch_workflows (batch_id, workflow_id) {
        batch_id -> Uuid,
        workflow_id -> Uuid,
        legacy_id -> Text,
        action -> PgImportAction,
        version -> Int4,
        previous -> Nullable<Jsonb>,
        tags -> Array<Text>,
        has_schedule -> Bool,
        enabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    artifact_manifests (hash) {
        hash -> Text,
        files -> Jsonb,
        file_count -> Int4,
        total_bytes -> Int8,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
    }
}

diesel::table! {
    cache_entries (key) {
        key -> Text,
        workflow_id -> Uuid,
        step -> Text,
        manifest -> Text,
        parts -> Jsonb,
        source_run_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        hits -> Int8,
        last_hit_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::{PgEventKind, PgEventStatus};

    run_events (run_id, seq) {
        run_id -> Uuid,
        seq -> Int8,
        kind -> PgEventKind,
        status -> Nullable<PgEventStatus>,
        step -> Nullable<Text>,
        percent -> Float8,
        eta_seconds -> Nullable<Float8>,
        message -> Nullable<Text>,
        at -> Timestamptz,
        workflow_id -> Uuid,
        step_percent -> Nullable<Float8>,
    }
}

diesel::table! {
    job_outbox (id) {
        id -> Int8,
        run_id -> Uuid,
        payload -> Jsonb,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::{PgAuditAction, PgAuditOutcome};

    audit_log (seq) {
        seq -> Int8,
        at -> Timestamptz,
        actor_id -> Nullable<Uuid>,
        api_token_id -> Nullable<Uuid>,
        actor_email -> Nullable<Text>,
        action -> PgAuditAction,
        resource -> Text,
        outcome -> PgAuditOutcome,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Jsonb,
        prev_hash -> Text,
        hash -> Text,
    }
}

// --- api tokens (migration 2026-12-02-000002_api_tokens) ---
diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        name -> Text,
        role -> Text,
        token_hash -> Text,
        created_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}
diesel::joinable!(api_tokens -> users (created_by));
diesel::allow_tables_to_appear_in_same_query!(api_tokens, users);
diesel::allow_tables_to_appear_in_same_query!(api_tokens, user_roles);
// --- end api tokens ---
// --- sessions (refresh-token families, login throttling) ---

diesel::table! {
    refresh_families (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        token_hash -> Text,
        created_at -> Timestamptz,
        idle_expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_throttle (key) {
        key -> Text,
        failures -> Int4,
        window_started_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(refresh_families -> users (user_id));
diesel::joinable!(refresh_tokens -> refresh_families (family_id));
diesel::allow_tables_to_appear_in_same_query!(refresh_tokens, refresh_families, users);

// --- single sign-on (2026-12-02-000003_sso) ---
diesel::table! {
    sso_logins (state_hash) {
        state_hash -> Text,
        binding_hash -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        consumed_at -> Nullable<Timestamptz>,
        native_redirect_uri -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        client_state -> Nullable<Text>,
    }
}

diesel::table! {
    sso_handoffs (code_hash) {
        code_hash -> Text,
        user_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        consumed_at -> Nullable<Timestamptz>,
        code_challenge -> Nullable<Text>,
    }
}

diesel::table! {
    sso_role_grants (user_id, role) {
        user_id -> Uuid,
        role -> Text,
        group_name -> Text,
        granted_at -> Timestamptz,
    }
}

// --- end single sign-on ---

diesel::joinable!(user_roles -> users (user_id));
diesel::table! {
    task_logs (run_id, step, attempt, seq) {
        run_id -> Uuid,
        step -> Text,
        attempt -> Int4,
        seq -> Int4,
        content -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(workflow_versions -> workflows (workflow_id));
diesel::joinable!(runs -> workflows (workflow_id));
diesel::joinable!(tasks -> runs (run_id));
diesel::joinable!(run_events -> runs (run_id));
diesel::joinable!(job_outbox -> runs (run_id));
diesel::joinable!(task_logs -> runs (run_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    user_roles,
    workflows,
    workflow_versions,
    runs,
    tasks,
    run_events,
    task_logs,
    job_outbox,
);

// --- monitoring (2026-12-02-000004_monitoring) ---

diesel::table! {
    worker_heartbeats (name) {
        name -> Text,
        version -> Text,
        started_at -> Timestamptz,
        last_heartbeat_at -> Timestamptz,
        busy_slots -> Int4,
        total_slots -> Int4,
    }
}

// --- schedules (2026-12-06-000001_schedules) ---

diesel::table! {
    scheduler_lease (id) {
        id -> Int2,
        holder -> Text,
        epoch -> Int8,
        expires_at -> Timestamptz,
    }
}

diesel::joinable!(import_batch_workflows -> import_batches (batch_id));
diesel::allow_tables_to_appear_in_same_query!(import_batch_workflows, import_batches);
