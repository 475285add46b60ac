//! Resolving the caller's token only once a request has passed parsing, validation and the
//! limits, so that a refused request costs no database statement, not even the token check.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Data, Response};

use tms_core::auth::RequestMeta;

use crate::context::RequestAuth;
use crate::state::Services;

/// The raw `Authorization` header of an HTTP request and where the request came from, put into
/// the request data in place of a resolved [`RequestAuth`]; [`DeferredAuth`] resolves it just
/// before execution.
#[derive(Clone, Debug, Default)]
pub struct PendingAuth {
    pub header: Option<String>,
    /// Peer address and user agent, for the audit log.
    pub meta: RequestMeta,
}

/// Installs [`DeferredAuthExtension`] on a schema.
pub struct DeferredAuth;

impl ExtensionFactory for DeferredAuth {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DeferredAuthExtension)
    }
}

pub struct DeferredAuthExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for DeferredAuthExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // Requests that arrive with a resolved caller (WebSocket sessions, in-process tests)
        // carry no `PendingAuth` and pass through untouched.
        let (Some(pending), Some(services)) =
            (ctx.data_opt::<PendingAuth>(), ctx.data_opt::<Services>())
        else {
            return next.run(ctx, operation_name).await;
        };
        let mut auth = RequestAuth::from_header(&services.auth, pending.header.as_deref()).await;
        if let Some(p) = auth.principal.as_mut() {
            p.meta = pending.meta.clone();
        }
        let mut data = Data::default();
        data.insert(crate::graphql::loaders::for_request(services, &auth));
        data.insert(auth);
        data.insert(pending.meta.clone());
        next.run_with_data(ctx, operation_name, data).await
    }
}
