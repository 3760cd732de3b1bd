//! weft-proxy: the sidecar. An ADS client ([`xds`]) turns xDS into plain config ([`config`]), the data plane
//! ([`dataplane`]) keeps a balancer per cluster ([`upstream`]), and listeners forward HTTP by it ([`http`]):
//! explicitly addressed, or captured by iptables ([`capture`] writes the rules, [`transparent`] serves what they
//! redirect). [`health`] serves readiness and [`metrics`]; [`drain`] shuts down gracefully.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod counted;
pub mod dataplane;
pub mod drain;
pub mod fast_hash;
pub mod health;
pub mod hello;
pub mod http;
pub mod identity;
pub mod inbound;
pub mod listen;
pub mod metrics;
pub mod ratelimit;
pub mod telemetry;
pub mod tls_verify;
pub mod transparent;
pub mod upstream;
pub mod wait;
pub mod xds;

/// Errors crossing tower and hyper boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
