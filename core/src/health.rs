//! Readiness shared by the api and the worker: each component is probed with a deadline and
//! the results are reported in the one JSON shape of `/readyz`.
//!
//! ```json
//! {"status": "ok"|"degraded"|"down",
//!  "components": {"postgres": {"status": "ok", "latencyMs": 1, "detail": null}, …}}
//! ```
//!
//! A probe's error is logged with its cause; the response carries only a short reason
//! ("unreachable", "no answer within 2s"): `/readyz` is unauthenticated and must not tell a
//! stranger about hosts, users or SQL.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

/// How long one component may take to answer before it counts as down: a probe never hangs.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Some components answer and some do not.
    Degraded,
    Down,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub status: Status,
    pub latency_ms: u64,
    /// A short reason when not ok; never the underlying error text.
    pub detail: Option<&'static str>,
}

/// The readiness of a process: every component is required.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub components: BTreeMap<&'static str, Component>,
}

impl Report {
    pub fn ready(&self) -> bool {
        self.status == Status::Ok
    }

    /// 200 when every component is ok, else 503.
    pub fn http_status(&self) -> u16 {
        if self.ready() { 200 } else { 503 }
    }

    /// The `/readyz` body, with `extra` top-level fields (e.g. the worker's name).
    pub fn to_json(&self, extra: &[(&str, serde_json::Value)]) -> serde_json::Value {
        let mut body = serde_json::to_value(self).expect("a report serialises");
        if let Some(map) = body.as_object_mut() {
            for (k, v) in extra {
                map.insert((*k).to_string(), v.clone());
            }
        }
        body
    }
}

/// One component's probe, named; run them together with [`report`].
pub fn check<'a, E: std::error::Error + 'static>(
    name: &'static str,
    probe: impl Future<Output = Result<(), E>> + Send + 'a,
) -> BoxFuture<'a, (&'static str, Component)> {
    Box::pin(async move {
        let started = Instant::now();
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
        let latency_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        let (status, detail) = match outcome {
            Ok(Ok(())) => (Status::Ok, None),
            Ok(Err(e)) => {
                let error = crate::error::report(&e);
                tracing::warn!(component = name, %error, "readiness check failed");
                (Status::Down, Some("unreachable"))
            }
            Err(_) => {
                tracing::warn!(component = name, "readiness check timed out");
                (Status::Down, Some("no answer within 2s"))
            }
        };
        (
            name,
            Component {
                status,
                latency_ms,
                detail,
            },
        )
    })
}

/// Runs the checks concurrently; ok when all are, down when none is, degraded in between.
pub async fn report(checks: Vec<BoxFuture<'_, (&'static str, Component)>>) -> Report {
    let components: BTreeMap<_, _> = futures::future::join_all(checks)
        .await
        .into_iter()
        .collect();
    let ok = components
        .values()
        .filter(|c| c.status == Status::Ok)
        .count();
    let status = if ok == components.len() {
        Status::Ok
    } else if ok == 0 {
        Status::Down
    } else {
        Status::Degraded
    };
    Report { status, components }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Probe(&'static str);

    #[tokio::test]
    async fn a_failing_or_silent_component_makes_the_process_unready() {
        let all_ok = report(vec![
            check("a", async { Ok::<_, Probe>(()) }),
            check("b", async { Ok::<_, Probe>(()) }),
        ])
        .await;
        assert_eq!((all_ok.status, all_ok.http_status()), (Status::Ok, 200));

        let one_down = report(vec![
            check("postgres", async { Ok::<_, Probe>(()) }),
            check("redis", async {
                Err(Probe("connect to 10.0.0.7:6379: password=hunter2 refused"))
            }),
        ])
        .await;
        assert_eq!(
            (one_down.status, one_down.http_status()),
            (Status::Degraded, 503)
        );
        let body = one_down.to_json(&[("worker", "w1".into())]);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["worker"], "w1");
        assert_eq!(body["components"]["postgres"]["status"], "ok");
        assert_eq!(body["components"]["redis"]["status"], "down");
        assert_eq!(body["components"]["redis"]["detail"], "unreachable");
        assert!(!body.to_string().contains("hunter2"), "{body}");
        assert!(!body.to_string().contains("10.0.0.7"), "{body}");

        // A probe that never answers is cut off at the deadline.
        let silent = report(vec![check(
            "executor",
            futures::future::pending::<Result<(), Probe>>(),
        )])
        .await;
        assert_eq!(silent.status, Status::Down);
        let c = &silent.components["executor"];
        assert_eq!(c.detail, Some("no answer within 2s"));
        assert!(c.latency_ms >= 2000, "{c:?}");
    }
}
