//! One HTTP GraphQL request, start to end: the limits, then the caller's token, then execution.
//! Done here rather than in async-graphql extensions because any installed extension puts every
//! field resolution through the extension chain (measured: ~30 % of read throughput), and the
//! order matters: a request the limits refuse costs no database statement, not even the token
//! check.

use async_graphql::{Request, Response};
use tms_core::auth::RequestMeta;

use crate::context::RequestAuth;
use crate::error::ensure_codes;
use crate::graphql::op_metrics::{self, Operation};
use crate::graphql::{TmsSchema, limits, loaders};
use crate::state::Services;

/// The raw `Authorization` header of an HTTP request and where the request came from; resolved
/// by [`execute`] only once the request has passed the limits.
#[derive(Clone, Debug, Default)]
pub struct PendingAuth {
    pub header: Option<String>,
    /// Peer address and user agent, for the audit log.
    pub meta: RequestMeta,
}

/// Executes one request as the HTTP transport does; every error in the answer carries a code.
pub async fn execute(
    schema: &TmsSchema,
    services: &Services,
    mut req: Request,
    pending: &PendingAuth,
) -> Response {
    if let Err(refused) = limits::check_request(&mut req) {
        let resp = ensure_codes(Response::from_errors(vec![refused]));
        op_metrics::record(op_metrics::UNKNOWN, &resp);
        return resp;
    }
    let name = req.operation_name.take();
    let op: Operation = match req.parsed_query() {
        Ok(doc) => op_metrics::classify(doc, name.as_deref()),
        Err(_) => op_metrics::UNKNOWN,
    };
    req.operation_name = name;
    let mut auth = RequestAuth::from_header(&services.auth, pending.header.as_deref()).await;
    if let Some(p) = auth.principal.as_mut() {
        p.meta = pending.meta.clone();
    }
    let req = req
        .data(loaders::for_request(services, &auth))
        .data(auth)
        .data(pending.meta.clone());
    let resp = ensure_codes(limits::backstop(schema.execute(req).await));
    op_metrics::record(op, &resp);
    resp
}
