//! What the core's integration tests share: a fresh migrated database on the Postgres and
//! Redis `scripts/test` provides, with the run service and a signed-in admin (`base`), and one
//! queued run of a two-step chain a -> b (`setup`).

#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use tms_core::auth::jwt::JwtKeys;
use tms_core::auth::service::{AuthService, bootstrap_admin};
use tms_core::bus::{EventBus, lazy_connection};
use tms_core::db::Db;
use tms_core::queue::relay::Relay;
use tms_core::repo;
use tms_core::runs::eta::Estimator;
use tms_core::runs::execution::{ClaimPolicy, Claimed, Execution, TaskEnd};
use tms_core::runs::service::{RunService, TriggerRequest};
use tms_core::runs::{EventKind, EventStatus, TaskStatus};
use tms_core::workflows::service::WorkflowService;
use tms_core::workflows::{StepSpec, WorkflowInput};
use uuid::Uuid;

pub const LEASE: Duration = Duration::from_secs(30);

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through `scripts/test`, which starts Postgres and Redis")
    })
}

/// A fresh migrated database with the services the core's tests drive and an admin principal.
pub struct Base {
    pub db: Db,
    pub url: String,
    pub bus: EventBus,
    pub runs: RunService,
    pub who: tms_core::auth::Principal,
}

/// A fresh migrated database named `<prefix>_<uuid>`, its run service on a queue of its own,
/// and a bootstrapped admin signed in.
pub async fn base(prefix: &str) -> Base {
    let admin = env("TMS_TEST_DATABASE_URL");
    let name = format!("{prefix}_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::establish(&admin).expect("connect to the test cluster");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create database");
    let url = format!("{}/{name}", admin.rsplit_once('/').expect("database url").0);
    let db = Db::new(&url, 4).expect("pool");
    db.migrate().await.expect("migrate");
    let redis = lazy_connection(&env("TMS_TEST_REDIS_URL")).expect("redis");
    let bus = EventBus::new(redis.clone());
    let queue = format!("q-{}", Uuid::new_v4().simple());
    let relay = Relay::new(db.clone(), redis, &queue);
    let auth = AuthService::new(
        db.clone(),
        JwtKeys::new(b"core-tests-secret-core-tests-secret-0", 600).expect("keys"),
    );
    assert!(
        bootstrap_admin(&db, "a@core.test", "password-for-tests")
            .await
            .expect("admin")
    );
    let token = auth
        .login("a@core.test", "password-for-tests", &Default::default())
        .await
        .expect("login")
        .access_token;
    let who = auth.authenticate(&token).await.expect("principal");
    let runs = RunService::new(db.clone(), bus.clone(), relay, Estimator::new());
    Base {
        db,
        url,
        bus,
        runs,
        who,
    }
}

/// A step running `true`, after `deps`.
pub fn step(name: &str, deps: &[&str]) -> StepSpec {
    StepSpec {
        name: name.into(),
        image: "alpine:3.20".into(),
        run: Some("true".into()),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

/// A workflow input of `steps` named `name`, without schedule or limits.
pub fn workflow(name: &str, steps: Vec<StepSpec>) -> WorkflowInput {
    WorkflowInput {
        name: name.into(),
        description: None,
        steps,
        schedule: None,
        max_concurrent_runs: None,
        rate_limit: None,
    }
}

impl Base {
    /// Creates `input` as the admin; returns the workflow's id.
    pub async fn create_workflow(&self, input: WorkflowInput) -> Uuid {
        WorkflowService::new(self.db.clone())
            .create(Some(&self.who), input)
            .await
            .expect("workflow")
            .id
    }

    /// The setup of run `run_id` of `workflow_id`, on this base.
    pub fn into_setup(self, workflow_id: Uuid, run_id: Uuid) -> Setup {
        Setup {
            db: self.db,
            bus: self.bus,
            url: self.url,
            run_id,
            workflow_id,
            runs: self.runs,
            who: self.who,
        }
    }

    /// Triggers a run of `workflow_id` as the admin; returns its id.
    pub async fn trigger(&self, workflow_id: Uuid) -> Uuid {
        let req = TriggerRequest {
            workflow_id,
            inputs: None,
            idempotency_key: None,
            no_cache: false,
        };
        self.runs
            .trigger(Some(&self.who), req)
            .await
            .expect("trigger")
            .id
    }
}

pub struct Setup {
    pub db: Db,
    pub bus: EventBus,
    pub url: String,
    pub run_id: Uuid,
    pub workflow_id: Uuid,
    pub runs: RunService,
    pub who: tms_core::auth::Principal,
}

/// A fresh migrated database with one queued run of a two-step chain a -> b.
pub async fn setup() -> Setup {
    let b = base("tms_exec").await;
    let workflow_id = b
        .create_workflow(workflow("chain", vec![step("a", &[]), step("b", &["a"])]))
        .await;
    let run_id = b.trigger(workflow_id).await;
    b.into_setup(workflow_id, run_id)
}

/// How an attempt of a step ended: `status`, `exit_code`, its output `log`, and `error`.
pub fn task_end(status: TaskStatus, exit_code: i32, log: &str, error: Option<&str>) -> TaskEnd {
    TaskEnd {
        status,
        exit_code: Some(exit_code),
        log_tail: log.into(),
        error: error.map(Into::into),
        output: None,
        cache: None,
    }
}

impl Setup {
    /// The run claimed by `owner`, resumed, and its first step `a` started (attempt 1).
    pub async fn a_running(&self, owner: &str) -> Execution {
        let exec = self.claim(owner).await.expect("claim");
        exec.resume().await.expect("resume");
        exec.start_attempt("a", 1).await.expect("start a");
        exec
    }

    pub async fn claim(&self, owner: &str) -> Option<Execution> {
        match self.claim_run(self.run_id, owner, 10).await {
            Claimed::Run(exec, _, _) => Some(exec),
            _ => None,
        }
    }

    pub async fn claim_run(&self, run_id: Uuid, owner: &str, max_deliveries: i32) -> Claimed {
        let policy = ClaimPolicy {
            lease: LEASE,
            max_deliveries,
        };
        Execution::claim(
            self.db.clone(),
            self.bus.clone(),
            Estimator::new(),
            run_id,
            owner.into(),
            policy,
            None,
        )
        .await
        .expect("claim")
    }

    /// Hands the run's lease to `owner` behind its holder's back (as a claim by another worker
    /// after the holder paused past its lease would).
    pub fn give_lease_to(&self, owner: &str) {
        self.sql(&format!(
            "UPDATE runs SET lease_owner = '{owner}' WHERE id = '{}'",
            self.run_id
        ));
    }

    /// How many transactions wrote the run's events numbered after `seq`.
    pub fn event_transactions_after(&self, seq: usize) -> i64 {
        count(
            &self.url,
            &format!(
                "SELECT count(DISTINCT xmin::text) AS n FROM run_events \
                 WHERE run_id = '{}' AND seq > {seq}",
                self.run_id
            ),
        )
    }

    /// Ends every lease on the run now, as if its holder had stopped renewing it.
    pub fn expire_lease(&self, run_id: Uuid) {
        self.sql(&format!(
            "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = '{run_id}'"
        ));
    }

    /// `(kind, status, step)` of every event so far, in sequence order, checking that the
    /// sequence numbers run 1, 2, 3… without a gap.
    pub async fn events(&self) -> Vec<(EventKind, Option<EventStatus>, Option<String>)> {
        let id = self.run_id;
        let rows = self
            .db
            .run(move |c| repo::events::after(c, id, 0, 1000))
            .await
            .expect("events");
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>());
        rows.into_iter()
            .map(|r| (r.kind, r.status, r.step))
            .collect()
    }

    pub async fn task(&self, name: &'static str) -> repo::runs::TaskRow {
        let id = self.run_id;
        let tasks = self
            .db
            .run(move |c| repo::runs::tasks_of(c, id))
            .await
            .expect("tasks");
        tasks.into_iter().find(|t| t.name == name).expect("task")
    }

    pub fn sql(&self, statement: &str) {
        let mut conn = PgConnection::establish(&self.url).expect("connect");
        diesel::sql_query(statement)
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

pub fn task_event(
    status: EventStatus,
    step: &str,
) -> (EventKind, Option<EventStatus>, Option<String>) {
    (EventKind::Task, Some(status), Some(step.into()))
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The `n` column of `sql`'s one row, on a connection of its own.
pub fn count(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}
