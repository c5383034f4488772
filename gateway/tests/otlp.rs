//! OTLP trace export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the binary's request spans reach an
//! OTLP/gRPC collector (a real tonic server speaking the OpenTelemetry protocol), tagged with the
//! service name and the node's id, and are flushed when the process exits after SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One batch of resource spans: the resource's string attributes and the span names.
#[derive(Debug, Clone)]
struct Batch {
    attributes: Vec<(String, String)>,
    spans: Vec<String>,
}

/// Everything the collector received.
#[derive(Debug, Default, Clone)]
struct Received(Arc<Mutex<Vec<Batch>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in request.into_inner().resource_spans {
            let attributes = rs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|kv| match kv.value?.value? {
                    Value::StringValue(s) => Some((kv.key, s)),
                    _ => None,
                })
                .collect();
            let names = rs
                .scope_spans
                .into_iter()
                .flat_map(|ss| ss.spans)
                .map(|s| s.name)
                .collect();
            self.0.lock().unwrap().push(Batch {
                attributes,
                spans: names,
            });
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The gateway process, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_to_the_configured_collector_and_flushed_on_exit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let received = Received::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(common::DEV_ON_LOOPBACK)
            .args(["--server-id", "otlp-node"])
            .args(common::QUICK_SHUTDOWN)
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector_addr}"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    for path in ["/health", "/stats", "/ready"] {
        assert!(
            reqwest::get(format!("{url}{path}"))
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .expect("`kill` not found: install procps")
            .success()
    );
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the gateway did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));

    let exports = received.0.lock().unwrap().clone();
    let spans: Vec<&String> = exports.iter().flat_map(|b| &b.spans).collect();
    assert!(
        spans.len() >= 3,
        "expected the three request spans, got {exports:?}"
    );
    for Batch { attributes, .. } in &exports {
        let get = |key: &str| {
            attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service.name"), Some("gateway"), "{attributes:?}");
        assert_eq!(
            get("service.instance.id"),
            Some("otlp-node"),
            "{attributes:?}"
        );
    }
    server.abort();
}
