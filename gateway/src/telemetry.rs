//! Logging and tracing set-up of the binary: a `tracing` subscriber writing text or JSON to
//! stderr, filtered by `RUST_LOG` (default `info`), plus OpenTelemetry OTLP trace export only
//! when an endpoint is configured. Without an endpoint nothing of OpenTelemetry is created, so
//! no connection is ever attempted and no export error is ever logged.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// Why telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was installed already.
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Installed telemetry; call [`Telemetry::shutdown`] before the process exits so buffered spans
/// are flushed.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. `otlp_endpoint` turns OTLP/gRPC trace export on; it must
    /// be called inside a Tokio runtime (the gRPC channel runs on it).
    pub fn install(
        format: LogFormat,
        otlp_endpoint: Option<&str>,
        service_name: &str,
        server_id: &str,
    ) -> Result<Self, TelemetryError> {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = match format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(std::io::stderr)
                .boxed(),
        };
        let endpoint = otlp_endpoint.map(str::trim).filter(|e| !e.is_empty());
        let provider = match endpoint {
            None => None,
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()?;
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.instance.id",
                        server_id.to_owned(),
                    ))
                    .build();
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource)
                        .build(),
                )
            }
        };
        let otel = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service_name.to_owned())));
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(otel)
            .try_init()?;
        if let Some(endpoint) = endpoint {
            tracing::info!(endpoint, "exporting traces over OTLP");
        }
        Ok(Self { provider })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (a no-op without one).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
                tracing::warn!(error = %e, "stopping the trace exporter failed");
            }
        }
    }
}
