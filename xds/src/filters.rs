//! Envoy's well-known names of the filters and extensions the operator writes into listeners and routes, and the
//! proxy reads back (per-route filter configs are keyed by filter name).

pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
pub const ROUTER: &str = "envoy.filters.http.router";
/// `typed_per_filter_config` key of a route's fault injection (`HTTPFault`).
pub const FAULT: &str = "envoy.filters.http.fault";
/// `typed_per_filter_config` key of a route's CORS policy (`CorsPolicy`).
pub const CORS: &str = "envoy.filters.http.cors";
/// Retry host predicate: retries go to endpoints not tried before, when there are any.
pub const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
/// Network filter of a TCP (and TLS passthrough) route: `TcpProxy`.
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// Listener filter that tells HTTP from other protocols by a connection's first bytes (protocol detection).
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// Listener filter that reads a TLS ClientHello's SNI for `server_names` filter chain matches.
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
