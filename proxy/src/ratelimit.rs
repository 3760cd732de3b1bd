//! Inbound request rate limits (HTTPLocalRateLimitPolicy): a token bucket per limit, taken from with atomics
//! only. Each bucket is a GCRA (generic cell rate algorithm) cell: one atomic "theoretical arrival time" that a
//! request moves one emission interval (a second / the rate) ahead, refused when that would run more than a
//! second's worth of requests ahead of now; so a bucket holds a second of requests and refills continuously.
//! Per-identity buckets live in a copy-on-write map read without a lock (a new caller's bucket is added once).
//! Limiters are kept across config updates while their policy's limits are unchanged, so buckets survive
//! unrelated pushes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use weft_xds::inbound::InboundPolicy;
use weft_xds::ratelimit::{MAX_IDENTITIES, RateLimit};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// One limit: `rate` requests per second, a second's worth at once.
#[derive(Debug)]
pub struct Bucket {
    interval: u64,
    tolerance: u64,
    /// When, in nanoseconds since the limiter's start, the bucket is next full to the brim.
    arrival: AtomicU64,
}

impl Bucket {
    pub fn new(rate: u32) -> Self {
        let rate = u64::from(rate.max(1));
        let interval = NANOS_PER_SECOND / rate;
        Self { interval, tolerance: interval * (rate - 1), arrival: AtomicU64::new(0) }
    }

    /// Takes a token at `now` (nanoseconds since the limiter's start); false when there is none.
    pub fn take(&self, now: u64) -> bool {
        let mut arrival = self.arrival.load(Ordering::Relaxed);
        loop {
            let from = arrival.max(now);
            if from - now > self.tolerance {
                return false;
            }
            match self.arrival.compare_exchange_weak(arrival, from + self.interval, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => arrival = actual,
            }
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    Identity,
    Override,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Identity => "identity",
            Self::Override => "override",
        }
    }
}

/// One policy's buckets.
#[derive(Debug)]
pub struct Limiter {
    pub config: RateLimit,
    started: Instant,
    total: Option<Bucket>,
    overrides: HashMap<String, Bucket>,
    /// Per caller identity, under `config.identity`; callers past [`MAX_IDENTITIES`] share `crowd`.
    identities: ArcSwap<HashMap<Arc<str>, Arc<Bucket>>>,
    crowd: Option<Arc<Bucket>>,
}

impl Limiter {
    pub fn new(config: RateLimit) -> Self {
        Self {
            started: Instant::now(),
            total: config.total.map(Bucket::new),
            overrides: config.overrides.iter().map(|(id, rate)| (id.clone(), Bucket::new(*rate))).collect(),
            identities: ArcSwap::default(),
            crowd: config.identity.map(|rate| Arc::new(Bucket::new(rate))),
            config,
        }
    }

    /// Admits a request from `identity` (a SPIFFE id; `None`: a caller without one, held to the total only),
    /// or says which limit refuses it. The caller's own limit is checked first, so a caller over its limit
    /// does not spend the total's tokens.
    pub fn admit(&self, identity: Option<&str>) -> Result<(), Refused> {
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(identity) = identity {
            if let Some(bucket) = self.overrides.get(identity) {
                if !bucket.take(now) {
                    return Err(Refused::Override);
                }
            } else if let Some(bucket) = self.identity_bucket(identity)
                && !bucket.take(now)
            {
                return Err(Refused::Identity);
            }
        }
        match &self.total {
            Some(total) if !total.take(now) => Err(Refused::Total),
            _ => Ok(()),
        }
    }

    /// The caller's bucket under the per-identity limit, made on its first request.
    fn identity_bucket(&self, identity: &str) -> Option<Arc<Bucket>> {
        let rate = self.config.identity?;
        if let Some(bucket) = self.identities.load().get(identity) {
            return Some(bucket.clone());
        }
        if self.identities.load().len() >= MAX_IDENTITIES as usize {
            return self.crowd.clone();
        }
        self.identities.rcu(|buckets| {
            let mut buckets = HashMap::clone(buckets);
            buckets.entry(Arc::from(identity)).or_insert_with(|| Arc::new(Bucket::new(rate)));
            buckets
        });
        self.identities.load().get(identity).cloned()
    }
}

/// The limiters of a workload's inbound side: one for every port, and the ports with their own.
#[derive(Debug, Default)]
pub struct InboundLimits {
    every_port: Option<Arc<Limiter>>,
    ports: BTreeMap<u16, Arc<Limiter>>,
}

impl InboundLimits {
    /// The limiters for `policy`, keeping `previous` ones whose limits are unchanged (and their buckets).
    pub fn rebuild(previous: &InboundLimits, policy: Option<&InboundPolicy>) -> Self {
        let Some(policy) = policy else { return Self::default() };
        let known = previous.every_port.iter().chain(previous.ports.values());
        let known: Vec<&Arc<Limiter>> = known.collect();
        let limiter = |config: &RateLimit| match known.iter().find(|l| l.config == *config) {
            Some(kept) => Arc::clone(kept),
            None => Arc::new(Limiter::new(config.clone())),
        };
        Self {
            every_port: policy.rate_limit.as_ref().map(limiter),
            ports: policy.port_rate_limits.iter().map(|(port, config)| (*port, limiter(config))).collect(),
        }
    }

    /// The limiter of requests to the application's `port`.
    pub fn for_port(&self, port: u16) -> Option<&Limiter> {
        self.ports.get(&port).or(self.every_port.as_ref()).map(Arc::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_a_second_of_requests_and_refills_at_its_rate() {
        let bucket = Bucket::new(100);
        let burst = (0..1000).filter(|_| bucket.take(0)).count();
        assert_eq!(burst, 100, "a full bucket: one second's worth");
        // Then one request per 10 ms: over 2 s, 200 more, whatever is asked.
        let step = NANOS_PER_SECOND / 1000;
        let sustained = (1..=2000u64).filter(|i| bucket.take(i * step)).count();
        assert!((199..=201).contains(&sustained), "{sustained}");
        // Idle for long: full again, no more.
        let later = 100 * NANOS_PER_SECOND;
        assert_eq!((0..1000).filter(|_| bucket.take(later)).count(), 100);
    }

    fn limiter(total: Option<u32>, identity: Option<u32>, overrides: &[(&str, u32)]) -> Limiter {
        let overrides = overrides.iter().map(|(id, rate)| (id.to_string(), *rate)).collect();
        Limiter::new(RateLimit { policy: "shop/web".into(), total, identity, overrides })
    }

    #[test]
    fn each_identity_has_its_own_bucket_and_overrides_replace_it() {
        let limits = limiter(Some(1000), Some(2), &[("spiffe://td/ns/a/sa/vip", 5)]);
        let admitted = |id: Option<&str>| (0..10).filter(|_| limits.admit(id).is_ok()).count();
        assert_eq!(admitted(Some("spiffe://td/ns/a/sa/one")), 2);
        assert_eq!(admitted(Some("spiffe://td/ns/a/sa/two")), 2, "another caller is unaffected");
        assert_eq!(admitted(Some("spiffe://td/ns/a/sa/vip")), 5);
        assert_eq!(admitted(None), 10, "no identity: the total only");
        assert_eq!(limits.admit(Some("spiffe://td/ns/a/sa/one")), Err(Refused::Identity));
        let total = limiter(Some(3), None, &[]);
        assert_eq!((0..5).filter(|_| total.admit(Some("x")).is_ok()).count(), 3);
        assert_eq!(total.admit(None), Err(Refused::Total));
    }

    #[test]
    fn unchanged_limits_keep_their_buckets_across_updates() {
        let policy = |total| InboundPolicy {
            rate_limit: Some(RateLimit {
                policy: "shop/web".into(),
                total: Some(total),
                ..limiter(None, None, &[]).config
            }),
            ..Default::default()
        };
        let first = InboundLimits::rebuild(&InboundLimits::default(), Some(&policy(1)));
        assert!(first.for_port(80).unwrap().admit(None).is_ok());
        let same = InboundLimits::rebuild(&first, Some(&policy(1)));
        assert_eq!(same.for_port(80).unwrap().admit(None), Err(Refused::Total), "the spent token stays spent");
        let changed = InboundLimits::rebuild(&same, Some(&policy(2)));
        assert!(changed.for_port(80).unwrap().admit(None).is_ok());
        assert!(InboundLimits::rebuild(&changed, None).for_port(80).is_none());
    }
}
