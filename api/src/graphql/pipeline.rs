//! One HTTP GraphQL request, start to end: the persisted query it names, the limits, then the
//! caller's token, then execution: by the compiled read path when it answers the document
//! (`graphql::compiled`; a document it learnt skips the parse and the limits walk), else by
//! the general executor.
//! Done here rather than in async-graphql extensions because any installed extension puts every
//! field resolution through the extension chain (measured: ~30 % of read throughput), and the
//! order matters: a request the limits refuse costs no database statement, not even the token
//! check.

use async_graphql::{ErrorExtensions, Request, Response, ServerError};
use tms_core::ErrorCode;
use tms_core::auth::RequestMeta;
use tms_core::auth::service::TokenSession;

use crate::context::RequestAuth;
use crate::error::ensure_codes;
use crate::graphql::compiled::Plans;
use crate::graphql::op_metrics::{self, Operation};
use crate::graphql::persisted::{PersistedQueries, Prepared};
use crate::graphql::{TmsSchema, compiled, limits, loaders};
use crate::state::Services;

/// The raw `Authorization` header of an HTTP request and where the request came from; resolved
/// by [`execute`] only once the request has passed the limits.
#[derive(Clone, Debug, Default)]
pub struct PendingAuth {
    pub header: Option<String>,
    /// Peer address and user agent, for the audit log.
    pub meta: RequestMeta,
    /// Sent with `GET`: only queries may run (a GET must not change anything, and may be cached
    /// or prefetched along the way).
    pub queries_only: bool,
}

/// Executes one request as the HTTP transport does; every error in the answer carries a code.
pub async fn execute(
    schema: &TmsSchema,
    services: &Services,
    persisted: &PersistedQueries,
    plans: &Plans,
    mut req: Request,
    pending: &PendingAuth,
) -> Response {
    // A plain request (not a persisted query, which must register) repeating a runs page the
    // compiled path has learnt: no parse, no walk for the limits (it passed them when learnt),
    // and its arguments are checked before the token costs a statement.
    let mut checked = None;
    let learnt = if PersistedQueries::in_request(&req) {
        None
    } else {
        plans.get(&req.query, req.operation_name.as_deref())
    };
    if let Some(known) = &learnt
        && let Some(args) = compiled::page_args(&known.plan, &req.variables)
    {
        // An access token's session is checked in the page's own hop; should it no longer
        // stand, the general way below checks the token again and refuses it.
        let answered = match access_session(services, pending) {
            Some(session) => {
                compiled::answer_in_session(services, &known.plan, args, session).await
            }
            None => {
                let auth = authenticate(services, pending).await;
                let answered = compiled::answer(services, &known.plan, args, &auth).await;
                checked = Some(auth);
                answered
            }
        };
        if let Some(resp) = answered {
            op_metrics::record(known.op, &resp);
            return resp;
        }
    }
    let prepared = match persisted.prepare(&mut req).await {
        Ok(p) => p,
        Err(refused) => return refuse(refused),
    };
    let prepared_plain = matches!(prepared, Prepared::Plain);
    let register = match prepared {
        Prepared::Hit(doc) => {
            if let Err(refused) = limits::check_parsed(&doc, &req.variables) {
                return refuse(refused);
            }
            req.set_parsed_query(doc);
            None
        }
        Prepared::Plain | Prepared::Register(_) => {
            if let Err(refused) = limits::check_request(&mut req) {
                return refuse(refused);
            }
            match prepared {
                Prepared::Register(hash) => Some(hash),
                _ => None,
            }
        }
    };
    let name = req.operation_name.take();
    let op: Operation = match req.parsed_query() {
        Ok(doc) => op_metrics::classify(doc, name.as_deref()),
        Err(_) => op_metrics::UNKNOWN,
    };
    req.operation_name = name;
    if pending.queries_only && op.ty != "query" {
        let mut refused =
            async_graphql::Error::new("mutations and subscriptions must be sent with POST")
                .extend_with(|_, e| e.set("code", ErrorCode::GraphqlValidation.as_str()))
                .into_server_error(Default::default());
        refused.locations.clear();
        return refuse(refused);
    }
    if let (Some(hash), Ok(doc)) = (register, req.parsed_query()) {
        persisted.store(hash, doc.clone()).await;
    }
    let auth = match checked {
        Some(auth) => auth,
        None => authenticate(services, pending).await,
    };
    // Learnt here (a plain request whose document passed the limits), and answered unless the
    // learnt path above already tried it.
    if learnt.is_none() && prepared_plain {
        let (query, name) = (std::mem::take(&mut req.query), req.operation_name.take());
        let known = match req.parsed_query() {
            Ok(doc) => plans.learn(&query, name.as_deref(), doc, op),
            Err(_) => None,
        };
        (req.query, req.operation_name) = (query, name);
        if let Some(known) = known
            && let Some(args) = compiled::page_args(&known.plan, &req.variables)
            && let Some(resp) = compiled::answer(services, &known.plan, args, &auth).await
        {
            op_metrics::record(op, &resp);
            return resp;
        }
    }
    let req = req
        .data(loaders::for_request(services, &auth))
        .data(auth)
        .data(pending.meta.clone());
    let resp = ensure_codes(limits::backstop(schema.execute(req).await));
    op_metrics::record(op, &resp);
    resp
}

/// The caller of a request, from its `Authorization` header.
async fn authenticate(services: &Services, pending: &PendingAuth) -> RequestAuth {
    let mut auth = RequestAuth::from_header(&services.auth, pending.header.as_deref()).await;
    if let Some(p) = auth.principal.as_mut() {
        p.meta = pending.meta.clone();
    }
    auth
}

/// The session of the request's bearer token when it is one of our access tokens with a good
/// signature and expiry (nothing read yet); `None` for no token, an API token or a bad one.
fn access_session(services: &Services, pending: &PendingAuth) -> Option<TokenSession> {
    let token = pending.header.as_deref()?.strip_prefix("Bearer ")?.trim();
    if token.is_empty() || tms_core::auth::api_tokens::is_api_token(token) {
        return None;
    }
    services.auth.token_session(token)
}

/// A request refused before execution: no token check, no resolver.
fn refuse(refused: ServerError) -> Response {
    let resp = ensure_codes(Response::from_errors(vec![refused]));
    op_metrics::record(op_metrics::UNKNOWN, &resp);
    resp
}
