//! Telemetry settings every binary that takes them reads the same way: the proxy reads its own flags with these,
//! and the webhook checks the values it will inject with them, so an injected pod never gets a setting its proxy
//! would refuse at startup.

use http::Uri;

/// A sampling rate in percent, 0 to 100 (Istio's `sampling`).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(percent) if (0.0..=100.0).contains(&percent) => Ok(percent),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100 (e.g. 1 or 0.5)")),
    }
}

/// An OpenTelemetry collector's OTLP/gRPC address, `http://HOST:PORT` or `HOST:PORT`, as the URI to dial.
/// Plaintext only (an in-cluster collector or node agent); the port is required, since OTLP's is not HTTP's
/// default (4317).
pub fn collector_uri(address: &str) -> Result<Uri, String> {
    let with_scheme = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    if !with_scheme.starts_with("http://") {
        return Err("only plaintext OTLP/gRPC (http://HOST:PORT) is supported".into());
    }
    let has_host_and_port = |uri: &Uri| uri.authority().is_some_and(|a| !a.host().is_empty() && a.port().is_some());
    let uri = with_scheme.parse::<Uri>().ok().filter(has_host_and_port);
    uri.ok_or_else(|| "needs a host and a port, e.g. otel-collector.observability:4317".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_0_to_100() {
        assert_eq!(parse_percent(" 0.5 "), Ok(0.5));
        assert_eq!(parse_percent("100"), Ok(100.0));
        for bad in ["-1", "100.5", "ten", "NaN", ""] {
            assert!(parse_percent(bad).unwrap_err().contains("percentage from 0 to 100"), "{bad}");
        }
    }

    #[test]
    fn collector_addresses_need_plaintext_a_host_and_a_port() {
        assert_eq!(collector_uri("otel.observability:4317").unwrap(), "http://otel.observability:4317/");
        assert_eq!(collector_uri("http://10.0.0.9:4317").unwrap(), "http://10.0.0.9:4317/");
        assert!(collector_uri("https://otel:4317").unwrap_err().contains("plaintext"));
        for bad in ["otel", "http://otel", "http://", "http://:4317"] {
            assert!(collector_uri(bad).unwrap_err().contains("host and a port"), "{bad}");
        }
    }
}
