//! A loopback OTLP/HTTP trace receiver: accepts `POST /v1/traces` (protobuf), answers 200, and
//! keeps every span it was sent, decoded with the OpenTelemetry protobuf definitions.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, sink).await {
                        eprintln!("otlp receiver: {e:#}");
                    }
                });
            }
        });
        Ok(Receiver { port, spans, task })
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the binaries.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("unpoisoned").clone()
    }
}

/// HTTP/1.1 requests on one connection, one after another (keep-alive).
async fn serve(sock: tokio::net::TcpStream, sink: Arc<Mutex<Vec<Span>>>) -> Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut len = 0usize;
        let mut gzip = false;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().context("content-length")?,
                    "content-encoding" => gzip = v.trim().eq_ignore_ascii_case("gzip"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        if gzip {
            bail!("gzip'd OTLP bodies are not expected (no compression configured)");
        }
        if request_line.starts_with("POST /v1/traces") {
            let req =
                ExportTraceServiceRequest::decode(body.as_slice()).context("decoding OTLP")?;
            sink.lock().expect("unpoisoned").extend(flatten(req));
        }
        w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .await?;
    }
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                });
            }
        }
    }
    out
}
