//! `[telemetry]`: exporting traces. Without `otlp_endpoint` nothing is
//! exported and spans below the log level cost next to nothing; with it,
//! every S3 request's spans (and those of the peers and stores it reached)
//! go to an OpenTelemetry collector over OTLP/HTTP.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Result};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`);
    /// spans go to its `/v1/traces`. Default none: no export. Also
    /// `FERRY_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Share of S3 requests traced, from 0 to 1; a peer's part of a trace
    /// follows the asker. Default 0.01: tracing every request costs about
    /// a fifth more CPU on small reads (BENCHMARKS.md), one in a hundred
    /// costs nothing measurable.
    pub sample_ratio: Option<f64>,
    /// The `service.name` of the spans. Default `ferry`.
    pub service_name: Option<String>,
    /// How often spans are sent. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub export_interval: Option<Duration>,
}

/// The share of requests traced unless `sample_ratio` says otherwise.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// Validated `[telemetry]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// `None`: no export.
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Where spans are posted: the endpoint's `/v1/traces`.
    pub traces_url: String,
    pub sample_ratio: f64,
    pub service_name: String,
    pub export_interval: Duration,
}

impl RawTelemetry {
    pub(crate) fn validate(self) -> Result<TelemetryConfig> {
        let Some(endpoint) = self.otlp_endpoint.filter(|e| !e.is_empty()) else {
            return Ok(TelemetryConfig::default());
        };
        let url = url::Url::parse(&endpoint).map_err(|e| {
            ConfigError::invalid("telemetry.otlp_endpoint", format!("{endpoint:?}: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                "telemetry.otlp_endpoint",
                format!("{endpoint:?}: an OTLP/HTTP endpoint is http:// or https://"),
            ));
        }
        let sample_ratio = self.sample_ratio.unwrap_or(DEFAULT_SAMPLE_RATIO);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(ConfigError::invalid(
                "telemetry.sample_ratio",
                format!("{sample_ratio} is not between 0 and 1"),
            ));
        }
        let export_interval = self.export_interval.unwrap_or(Duration::from_secs(5));
        if export_interval.is_zero() {
            return Err(ConfigError::invalid(
                "telemetry.export_interval",
                "must be more than 0",
            ));
        }
        let service_name = self.service_name.unwrap_or_else(|| "ferry".to_string());
        if service_name.is_empty() {
            return Err(ConfigError::invalid(
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        // A path given with the endpoint is kept (a collector behind a
        // prefix); the traces path goes after it.
        let base = endpoint.trim_end_matches('/');
        let traces_url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        Ok(TelemetryConfig {
            otlp: Some(OtlpConfig {
                traces_url,
                sample_ratio,
                service_name,
                export_interval,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(endpoint: &str) -> RawTelemetry {
        RawTelemetry {
            otlp_endpoint: Some(endpoint.into()),
            ..RawTelemetry::default()
        }
    }

    #[test]
    fn an_endpoint_turns_export_on_with_defaults() {
        let config = raw("http://collector:4318/").validate().expect("valid");
        let otlp = config.otlp.expect("export on");
        assert_eq!(otlp.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(otlp.sample_ratio, DEFAULT_SAMPLE_RATIO);
        assert_eq!(otlp.service_name, "ferry");
        assert_eq!(
            RawTelemetry::default().validate().expect("valid").otlp,
            None
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |raw: RawTelemetry| match raw.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(field(raw("collector:4318")), "telemetry.otlp_endpoint");
        assert_eq!(field(raw("ftp://collector")), "telemetry.otlp_endpoint");
        assert_eq!(
            field(RawTelemetry {
                sample_ratio: Some(1.5),
                ..raw("http://c:4318")
            }),
            "telemetry.sample_ratio"
        );
        assert_eq!(
            field(RawTelemetry {
                export_interval: Some(Duration::ZERO),
                ..raw("http://c:4318")
            }),
            "telemetry.export_interval"
        );
    }
}
