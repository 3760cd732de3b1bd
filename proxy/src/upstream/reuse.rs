//! When an upstream connection stops taking requests: after `maxRequestsPerConnection` requests, or once older
//! than `maxConnectionDuration` (Envoy's `max_requests_per_connection`, `max_connection_duration`). The pool
//! ([`super::pool`]) counts each request when it hands a connection out and asks [`ReuseLimits::spent`] then and
//! when the connection comes back: a spent HTTP/1.1 connection closes once its response is read; on HTTP/2,
//! streams already started finish on it while new requests open another.

use std::time::Duration;

use crate::config::cluster::Connections;

/// A cluster's limits on one connection's use; both `None`: reused without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseLimits {
    pub max_requests: Option<u32>,
    pub max_duration: Option<Duration>,
}

impl ReuseLimits {
    pub fn of(connections: &Connections) -> Option<Self> {
        let limits = Self { max_requests: connections.max_requests, max_duration: connections.max_duration };
        (limits.max_requests.is_some() || limits.max_duration.is_some()).then_some(limits)
    }

    /// Whether a connection that has carried `requests` and opened `age` ago takes no more. Pure.
    pub fn spent(&self, requests: u32, age: Duration) -> bool {
        self.max_requests.is_some_and(|max| requests >= max) || self.max_duration.is_some_and(|max| age >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_spent_at_either_limit() {
        let requests = ReuseLimits { max_requests: Some(3), max_duration: None };
        assert!(!requests.spent(2, Duration::from_secs(3600)));
        assert!(requests.spent(3, Duration::ZERO));
        let age = ReuseLimits { max_requests: None, max_duration: Some(Duration::from_secs(60)) };
        assert!(!age.spent(1_000_000, Duration::from_secs(59)));
        assert!(age.spent(1, Duration::from_secs(60)));
        let unset = Connections::default();
        assert_eq!(ReuseLimits::of(&unset), None, "no limits: nothing to track");
    }
}
