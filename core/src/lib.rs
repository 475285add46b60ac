//! Shared library of TMS: domain types and services, persistence, queue payloads, event bus,
//! configuration and auth primitives used by both the api and the worker.

pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod imports;
pub mod metrics;
pub mod monitoring;
pub mod queue;
pub mod repo;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod telemetry;
pub mod workflows;

pub use error::{Error, ErrorCode, FieldError, Result};
