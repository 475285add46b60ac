//! Logging and tracing set-up shared by the binaries. Traces are exported over OTLP/HTTP when,
//! and only when, the standard `OTEL_*` variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
//! turn it off); otherwise no exporter or OpenTelemetry layer is installed at all. The W3C
//! trace context crosses process boundaries as a string map ([`inject`], [`extract`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs a `tracing` subscriber honouring `RUST_LOG` (default `info`), without export.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace exporter shutdown: {e}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether the `OTEL_*` environment asks for trace export.
pub fn otel_requested() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Logging as [`init_logging`], plus OTLP/HTTP trace export for `service` (`service.name`,
/// unless `OTEL_SERVICE_NAME` says otherwise) when [`otel_requested`].
pub fn init(service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal());
    let provider = if otel_requested() {
        match build_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("{service}: OpenTelemetry export not started: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(p) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    Telemetry { provider }
}

fn build_provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as W3C headers (`traceparent`, …); empty when not
/// exporting.
pub fn inject() -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut MapInjector(&mut map))
        });
    }
    map
}

/// Makes `span` a child of the remote context in `headers` (if it holds a valid one), and
/// records its trace id in the span's `trace_id` field so log lines carry it.
pub fn adopt(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if !headers.is_empty() {
        let cx =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&MapExtractor(headers)));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}
