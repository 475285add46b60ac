//! The services the transport layer calls, built once per process.

use tms_core::audit::AuditService;
use tms_core::auth::api_tokens::ApiTokenService;
use tms_core::auth::jwt::JwtKeys;
use tms_core::auth::service::AuthService;
use tms_core::auth::users::UserService;
use tms_core::bus::{EventBus, EventHub};
use tms_core::cache::CacheService;
use tms_core::db::Db;
use tms_core::imports::service::ImportService;
use tms_core::monitoring::MonitoringService;
use tms_core::queue::relay::Relay;
use tms_core::runs::eta::Estimator;
use tms_core::runs::service::RunService;
use tms_core::runs::stream::ProgressService;
use tms_core::workflows::service::WorkflowService;

#[derive(Clone)]
pub struct Services {
    pub auth: AuthService,
    pub workflows: WorkflowService,
    pub runs: RunService,
    pub progress: ProgressService,
    pub audit: AuditService,
    pub users: UserService,
    pub api_tokens: ApiTokenService,
    pub monitoring: MonitoringService,
    pub cache: CacheService,
    pub imports: ImportService,
    pub logs: tms_core::runs::logs::LogService,
}

impl Services {
    pub fn new(db: &Db, keys: JwtKeys, bus: EventBus, relay: Relay, hub: EventHub) -> Self {
        // One per process: it caches learnt step durations for every estimate made here.
        let est = Estimator::new();
        Services {
            auth: AuthService::new(db.clone(), keys),
            workflows: WorkflowService::new(db.clone()),
            monitoring: MonitoringService::new(db.clone(), bus.clone(), &relay),
            api_tokens: ApiTokenService::new(db.clone(), Some(bus.clone())),
            runs: RunService::new(db.clone(), bus, relay, est.clone()),
            progress: ProgressService::new(db.clone(), hub, est),
            audit: AuditService::new(db.clone()),
            users: UserService::new(db.clone()),
            cache: CacheService::new(db.clone()),
            imports: ImportService::new(db.clone()),
            logs: tms_core::runs::logs::LogService::new(db.clone()),
        }
    }
}
