//! The reviewed statement of who may read or call each field of the schema: one rule for every
//! `Type.field` a client can reach. Authorization itself happens in core's services
//! (`audit::require`, deny by default); this table says what they enforce, `tests/schema_rules.rs`
//! proves it covers the whole schema, and the end-to-end matrix test (`tests/tests/rbac.rs`)
//! proves the services behave as it says for every role.
//!
//! Rules:
//! - `Public`: no token needed. Only the sign-in fields, whose argument is the credential.
//! - `Authenticated`: any valid token, whatever its roles.
//! - `Requires(p)`: the resolver's service checks `p` itself (`Permission::roles()` says who
//!   holds it; `admin` holds all). Root fields are `Public`, `Authenticated` or `Requires`.
//! - `Parent`: a nested field with no check of its own: whoever may see the parent object may
//!   see it. This is only sound while the parent type is reachable from the roots one expects,
//!   so the types carrying sensitive data are confined ([`CONFINED`]) and the types reachable
//!   without a token are listed ([`PUBLIC_TYPES`]); the schema test checks both.

use tms_core::auth::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Public,
    Authenticated,
    Requires(Permission),
    Parent,
}

use Permission::*;
use Rule::*;

/// Every reachable field's rule. Grouped by type; keep it in schema order when adding fields.
pub const RULES: &[(&str, Rule)] = &[
    // Query
    ("Query.me", Requires(ReadSelf)),
    ("Query.users", Requires(ManageUsers)),
    ("Query.apiTokens", Requires(ManageUsers)),
    ("Query.workflow", Requires(ReadWorkflows)),
    ("Query.workflows", Requires(ReadWorkflows)),
    ("Query.run", Requires(ReadRuns)),
    ("Query.runs", Requires(ReadRuns)),
    ("Query.explainCache", Requires(ReadRuns)),
    ("Query.importBatches", Requires(ReadWorkflows)),
    ("Query.auditLog", Requires(ReadAudit)),
    ("Query.verifyAuditChain", Requires(ReadAudit)),
    ("Query.systemHealth", Requires(ReadMonitoring)),
    ("Query.queueStats", Requires(ReadMonitoring)),
    ("Query.workers", Requires(ReadMonitoring)),
    ("Query.runStats", Requires(ReadMonitoring)),
    // Mutation
    ("Mutation.login", Public),
    ("Mutation.refreshToken", Public),
    ("Mutation.logout", Public),
    ("Mutation.createWorkflow", Requires(WriteWorkflows)),
    ("Mutation.updateWorkflow", Requires(WriteWorkflows)),
    ("Mutation.archiveWorkflow", Requires(WriteWorkflows)),
    ("Mutation.setScheduleEnabled", Requires(WriteWorkflows)),
    ("Mutation.triggerRun", Requires(OperateRuns)),
    ("Mutation.cancelRun", Requires(OperateRuns)),
    ("Mutation.retryRun", Requires(OperateRuns)),
    ("Mutation.assignRole", Requires(ManageUsers)),
    ("Mutation.revokeRole", Requires(ManageUsers)),
    ("Mutation.setUserDisabled", Requires(ManageUsers)),
    ("Mutation.createApiToken", Requires(ManageUsers)),
    ("Mutation.revokeApiToken", Requires(ManageUsers)),
    ("Mutation.importTasks", Requires(WriteWorkflows)),
    ("Mutation.verifyImport", Requires(WriteWorkflows)),
    ("Mutation.enableImportPhase", Requires(WriteWorkflows)),
    ("Mutation.rollbackImport", Requires(WriteWorkflows)),
    // Subscription
    ("Subscription.runProgress", Requires(ReadRuns)),
    ("Subscription.runEvents", Requires(ReadRuns)),
    // Identities: `me` (oneself), `users` and the role mutations (admins). `roles` and
    // `disabled` are no one else's business, hence `User` is confined.
    ("User.id", Parent),
    ("User.email", Parent),
    ("User.name", Parent),
    ("User.displayName", Parent),
    ("User.disabled", Parent),
    ("User.createdAt", Parent),
    ("User.roles", Parent),
    ("UserConnection.pageInfo", Parent),
    ("UserConnection.edges", Parent),
    ("UserConnection.nodes", Parent),
    ("UserEdge.node", Parent),
    ("UserEdge.cursor", Parent),
    // Tokens. `AuthPayload` answers the public sign-in fields: the caller's own tokens.
    ("AuthPayload.accessToken", Parent),
    ("AuthPayload.refreshToken", Parent),
    ("AuthPayload.expiresIn", Parent),
    ("AuthPayload.tokenType", Parent),
    ("ApiTokenPayload.token", Parent),
    ("ApiTokenPayload.apiToken", Parent),
    ("ApiToken.id", Parent),
    ("ApiToken.name", Parent),
    ("ApiToken.role", Parent),
    ("ApiToken.createdAt", Parent),
    ("ApiToken.expiresAt", Parent),
    ("ApiToken.lastUsedAt", Parent),
    // Workflows. A workflow's runs are checked again (`ReadRuns`) by the runs service.
    ("Workflow.id", Parent),
    ("Workflow.name", Parent),
    ("Workflow.description", Parent),
    ("Workflow.currentVersion", Parent),
    ("Workflow.archived", Parent),
    ("Workflow.legacyId", Parent),
    ("Workflow.archivedAt", Parent),
    ("Workflow.maxConcurrentRuns", Parent),
    ("Workflow.rateLimit", Parent),
    ("RateLimit.runs", Parent),
    ("RateLimit.perSeconds", Parent),
    ("Workflow.createdAt", Parent),
    ("Workflow.updatedAt", Parent),
    ("Workflow.steps", Parent),
    ("Workflow.version", Parent),
    ("Workflow.versions", Parent),
    ("Workflow.runs", Requires(ReadRuns)),
    ("Workflow.schedule", Parent),
    ("Schedule.cron", Parent),
    ("Schedule.timezone", Parent),
    ("Schedule.enabled", Parent),
    ("Schedule.nextFireAt", Parent),
    ("WorkflowConnection.pageInfo", Parent),
    ("WorkflowConnection.edges", Parent),
    ("WorkflowConnection.nodes", Parent),
    ("WorkflowEdge.node", Parent),
    ("WorkflowEdge.cursor", Parent),
    ("WorkflowVersion.version", Parent),
    ("WorkflowVersion.createdAt", Parent),
    ("WorkflowVersion.steps", Parent),
    // Steps show secret names only, never values; env values are plain configuration.
    ("Step.name", Parent),
    ("Step.image", Parent),
    ("Step.run", Parent),
    ("Step.command", Parent),
    ("Step.env", Parent),
    ("Step.secrets", Parent),
    ("Step.dependsOn", Parent),
    ("Step.workdir", Parent),
    ("Step.timeoutSeconds", Parent),
    ("Step.retries", Parent),
    ("Step.retryBackoffSeconds", Parent),
    ("Step.cache", Parent),
    ("Step.cacheTtlSeconds", Parent),
    ("Step.cachePaths", Parent),
    ("EnvVar.name", Parent),
    ("EnvVar.value", Parent),
    // Runs. A run's workflow is readable by every role that reads runs (`ReadWorkflows` and
    // `ReadRuns` are held by the same roles; the rules test keeps it that way).
    ("Run.id", Parent),
    ("Run.status", Parent),
    ("Run.workflow", Parent),
    ("Run.version", Parent),
    ("Run.trigger", Parent),
    ("Run.scheduledFor", Parent),
    ("Run.inputs", Parent),
    ("Run.idempotencyKey", Parent),
    ("Run.noCache", Parent),
    ("Run.createdAt", Parent),
    ("Run.startedAt", Parent),
    ("Run.finishedAt", Parent),
    ("Run.error", Parent),
    ("Run.deadLetteredAt", Parent),
    ("Run.deliveries", Parent),
    ("Run.lastSeq", Parent),
    ("Run.percent", Parent),
    ("Run.etaSeconds", Parent),
    ("Run.cancelRequestedAt", Parent),
    ("Run.tasks", Parent),
    ("RunConnection.pageInfo", Parent),
    ("RunConnection.edges", Parent),
    ("RunConnection.nodes", Parent),
    ("RunEdge.node", Parent),
    ("RunEdge.cursor", Parent),
    ("Task.name", Parent),
    ("Task.status", Parent),
    ("Task.attempt", Parent),
    ("Task.dependsOn", Parent),
    ("Task.startedAt", Parent),
    ("Task.finishedAt", Parent),
    ("Task.exitCode", Parent),
    ("Task.cached", Parent),
    ("ImportBatchConnection.pageInfo", Parent),
    ("ImportBatchConnection.edges", Parent),
    ("ImportBatchConnection.nodes", Parent),
    ("ImportBatchEdge.node", Parent),
    ("ImportBatchEdge.cursor", Parent),
    ("ImportPhase.batchId", Parent),
    ("ImportPhase.enabled", Parent),
    ("ImportDifference.legacyId", Parent),
    ("ImportDifference.kind", Parent),
    ("ImportDifference.detail", Parent),
    ("ImportVerification.ok", Parent),
    ("ImportVerification.differences", Parent),
    ("ImportReport.dryRun", Parent),
    ("ImportReport.batch", Parent),
    ("ImportReport.created", Parent),
    ("ImportReport.updated", Parent),
    ("ImportReport.unchanged", Parent),
    ("ImportReport.problems", Parent),
    ("ImportReport.skipped", Parent),
    ("ImportBatch.id", Parent),
    ("ImportBatch.createdAt", Parent),
    ("ImportBatch.actor", Parent),
    ("ImportBatch.format", Parent),
    ("ImportBatch.checksum", Parent),
    ("ImportBatch.tag", Parent),
    ("ImportBatch.counts", Parent),
    ("ImportBatch.status", Parent),
    ("ImportBatch.problems", Parent),
    ("ImportBatch.skipped", Parent),
    ("ImportProblem.position", Parent),
    ("ImportProblem.reason", Parent),
    ("ImportProblem.legacyId", Parent),
    ("ImportCounts.tasks", Parent),
    ("ImportCounts.workflows", Parent),
    ("CacheExplanation.step", Parent),
    ("CacheExplanation.key", Parent),
    ("CacheExplanation.hit", Parent),
    ("CacheExplanation.reason", Parent),
    ("CacheExplanation.changed", Parent),
    ("Task.logTail", Parent),
    ("Task.progressPercent", Parent),
    ("Task.error", Parent),
    ("RunEvent.seq", Parent),
    ("RunEvent.runId", Parent),
    ("RunEvent.workflowId", Parent),
    ("RunEvent.kind", Parent),
    ("RunEvent.status", Parent),
    ("RunEvent.step", Parent),
    ("RunEvent.percent", Parent),
    ("RunEvent.etaSeconds", Parent),
    ("RunEvent.stepPercent", Parent),
    ("RunEvent.message", Parent),
    ("RunEvent.at", Parent),
    ("PageInfo.hasPreviousPage", Parent),
    ("PageInfo.hasNextPage", Parent),
    ("PageInfo.startCursor", Parent),
    ("PageInfo.endCursor", Parent),
    // Audit log (auditors and admins).
    ("AuditEventConnection.pageInfo", Parent),
    ("AuditEventConnection.edges", Parent),
    ("AuditEventConnection.nodes", Parent),
    ("AuditEventEdge.node", Parent),
    ("AuditEventEdge.cursor", Parent),
    ("AuditEvent.seq", Parent),
    ("AuditEvent.at", Parent),
    ("AuditEvent.actor", Parent),
    ("AuditEvent.apiTokenId", Parent),
    ("AuditEvent.action", Parent),
    ("AuditEvent.resource", Parent),
    ("AuditEvent.outcome", Parent),
    ("AuditEvent.ip", Parent),
    ("AuditEvent.userAgent", Parent),
    ("AuditEvent.detail", Parent),
    ("AuditEvent.hash", Parent),
    ("AuditActor.id", Parent),
    ("AuditActor.email", Parent),
    ("AuditChainReport.ok", Parent),
    ("AuditChainReport.checked", Parent),
    ("AuditChainReport.firstBrokenSeq", Parent),
    // Monitoring (monitors and admins).
    ("SystemHealth.status", Parent),
    ("SystemHealth.components", Parent),
    ("ComponentHealth.name", Parent),
    ("ComponentHealth.status", Parent),
    ("ComponentHealth.latencyMs", Parent),
    ("ComponentHealth.detail", Parent),
    ("QueueStats.pending", Parent),
    ("QueueStats.running", Parent),
    ("QueueStats.retrying", Parent),
    ("QueueStats.dead", Parent),
    ("QueueStats.oldestPendingAgeSeconds", Parent),
    ("WorkerStatus.name", Parent),
    ("WorkerStatus.version", Parent),
    ("WorkerStatus.startedAt", Parent),
    ("WorkerStatus.lastHeartbeatAt", Parent),
    ("WorkerStatus.busySlots", Parent),
    ("WorkerStatus.totalSlots", Parent),
    ("WorkerStatus.stale", Parent),
    ("RunStats.windowSeconds", Parent),
    ("RunStats.total", Parent),
    ("RunStats.succeeded", Parent),
    ("RunStats.failed", Parent),
    ("RunStats.cancelled", Parent),
    ("RunStats.timedOut", Parent),
    ("RunStats.running", Parent),
    ("RunStats.p50DurationSeconds", Parent),
    ("RunStats.p95DurationSeconds", Parent),
    ("RunStats.failureRate", Parent),
    ("RunStats.cacheHitRatio", Parent),
];

/// Rules written ahead for DESIGN fields that other branches add. The schema test tolerates
/// their absence and fails once one of them exists, so it is moved out of this list at merge.
pub const PENDING: &[&str] = &[];

/// The only root fields callable without a token.
pub const PUBLIC_ROOTS: &[&str] = &["Mutation.login", "Mutation.refreshToken", "Mutation.logout"];

/// The only object types a caller without a token can reach (through [`PUBLIC_ROOTS`]).
pub const PUBLIC_TYPES: &[&str] = &["AuthPayload"];

/// Types whose `Parent` fields hold what only some callers may see, with the only root fields
/// they may be reached from. Returning a `User` from a run, say, would hand its `roles` to
/// every viewer: the schema test refuses it until the rules are thought through again.
pub const CONFINED: &[(&str, &[&str])] = &[
    (
        "User",
        &[
            "Query.me",
            "Query.users",
            "Mutation.assignRole",
            "Mutation.revokeRole",
            "Mutation.setUserDisabled",
        ],
    ),
    ("UserConnection", &["Query.users"]),
    ("ApiToken", &["Query.apiTokens", "Mutation.createApiToken"]),
    ("ApiTokenPayload", &["Mutation.createApiToken"]),
    ("AuthPayload", &["Mutation.login", "Mutation.refreshToken"]),
    ("AuditEvent", &["Query.auditLog"]),
    ("AuditChainReport", &["Query.verifyAuditChain"]),
    ("SystemHealth", &["Query.systemHealth"]),
    ("ComponentHealth", &["Query.systemHealth"]),
    ("QueueStats", &["Query.queueStats"]),
    ("WorkerStatus", &["Query.workers"]),
    ("RunStats", &["Query.runStats"]),
];

/// The rule for `Type.field`, if the table has one.
pub fn rule(field: &str) -> Option<Rule> {
    RULES.iter().find(|(f, _)| *f == field).map(|(_, r)| *r)
}

/// Whether a caller holding only `role` may use the root field `field` (`None`: no token).
/// `None` when the field has no rule or is not a root.
pub fn root_allows(field: &str, role: Option<tms_core::auth::Role>) -> Option<bool> {
    Some(match (rule(field)?, role) {
        (Public, _) => true,
        (Authenticated, r) => r.is_some(),
        (Requires(p), r) => r.is_some_and(|r| p.granted_to(r)),
        (Parent, _) => return None,
    })
}
