//! Request metrics of the HTTP transport and of GraphQL operations.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::metrics::{LATENCY_BUCKETS, register};

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_http_requests_total",
                "HTTP requests served, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric"),
    )
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "tms_http_request_duration_seconds",
                "Time to serve an HTTP request, by route template, method and status code.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method", "status"],
        )
        .expect("valid metric"),
    )
});

pub static GRAPHQL_OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_graphql_operations_total",
                "GraphQL operations executed, by operation type, root field (`other` outside the schema) and outcome code (`OK` or the first error's code).",
            ),
            &["type", "name", "code"],
        )
        .expect("valid metric"),
    )
});

/// Routes an api or worker serves; anything else is counted as `other`.
pub const ROUTES: &[&str] = &[
    "/graphql",
    "/metrics",
    "/healthz",
    "/readyz",
    "/auth/login",
    "/auth/callback",
    "/runs/{id}/steps/{name}/log",
    // The web console: its pages (one template), assets and session endpoints.
    "/ui/{tail:.*}",
    "/ui/assets/{build}/{path:.*}",
    "/ui/session",
    "/ui/session/refresh",
    "/ui/session/logout",
];

/// Outcome codes of a GraphQL operation: `OK` and every `ErrorCode`.
pub const CODES: &[&str] = &[
    "OK",
    "VALIDATION",
    "NOT_FOUND",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "CONFLICT",
    "UNAVAILABLE",
    "SLOW_CONSUMER",
    "QUERY_LIMIT",
    "RATE_LIMITED",
    "PERSISTED_QUERY_NOT_FOUND",
    "INTERNAL",
    // Raised by async-graphql itself (parse and validation errors).
    "GRAPHQL_VALIDATION",
    "GRAPHQL_PARSE_FAILED",
    "BAD_USER_INPUT",
];

/// The route label for a matched route template (or `other`: unmatched paths are unbounded).
pub fn route_label(template: Option<&str>) -> &'static str {
    template
        .and_then(|t| ROUTES.iter().find(|r| **r == t))
        .copied()
        .unwrap_or("other")
}

/// The method label: the usual verbs, anything else `other`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// A code label from an error's `extensions.code`; unknown codes are `other`.
pub fn code_label(code: Option<&str>) -> &'static str {
    match code {
        None => "OK",
        Some(c) => CODES.iter().find(|k| **k == c).copied().unwrap_or("other"),
    }
}

/// Records one served request.
pub fn observe_request(route: &'static str, method: &'static str, status: u16, seconds: f64) {
    let buf = itoa_status(status);
    let status = std::str::from_utf8(&buf).unwrap_or("other");
    HTTP_REQUESTS
        .with_label_values(&[route, method, status])
        .inc();
    HTTP_DURATION
        .with_label_values(&[route, method, status])
        .observe(seconds);
}

/// Status codes as label text without allocating.
fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.clamp(100, 999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

pub(crate) fn init() {
    for (route, method) in [
        ("/graphql", "POST"),
        ("/metrics", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
    ] {
        for status in ["200", "500", "503"] {
            HTTP_REQUESTS.with_label_values(&[route, method, status]);
            HTTP_DURATION.with_label_values(&[route, method, status]);
        }
    }
    for ty in ["query", "mutation", "subscription"] {
        for code in CODES {
            GRAPHQL_OPERATIONS.with_label_values(&[ty, "other", code]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_in_their_sets() {
        assert_eq!(route_label(Some("/graphql")), "/graphql");
        assert_eq!(route_label(Some("/runs/{id}")), "other");
        assert_eq!(route_label(None), "other");
        assert_eq!(method_label("PROPFIND"), "other");
        assert_eq!(code_label(Some("FORBIDDEN")), "FORBIDDEN");
        assert_eq!(code_label(Some("x@y.z")), "other");
        assert_eq!(code_label(None), "OK");
        assert_eq!(&itoa_status(503), b"503");
        assert_eq!(&itoa_status(42), b"100");
    }
}
