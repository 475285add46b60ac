//! The services the transport layer calls, built once per process.

use tms_core::auth::service::AuthService;
use tms_core::runs::service::RunService;
use tms_core::runs::stream::ProgressService;
use tms_core::workflows::service::WorkflowService;

#[derive(Clone)]
pub struct Services {
    pub auth: AuthService,
    pub workflows: WorkflowService,
    pub runs: RunService,
    pub progress: ProgressService,
}
