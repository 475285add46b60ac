//! Authentication and authorization primitives: roles, principals, passwords, access tokens.

pub mod api_tokens;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod principal;
pub mod rbac;
pub mod revocations;
pub mod service;
pub mod session_service;
pub mod sessions;
pub mod sso;
mod sso_account;
pub mod sso_native;
pub mod throttle;
pub mod user;
pub mod users;

pub use principal::{Principal, RequestMeta, Role};
pub use rbac::Permission;
pub use user::User;
