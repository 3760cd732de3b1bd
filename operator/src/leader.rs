//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go does it: every replica serves xDS, only the
//! holder of the lease writes status. The decision is a pure function of the lease and the clock; the loop around
//! it reads and writes the Lease with optimistic concurrency (resourceVersion), so two replicas can never both win.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// A lease not renewed for this long may be taken over.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease exists: create it, held by us.
    Create,
    /// Someone else's lease expired (or nobody holds it): take it over.
    Take,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else { return Decision::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    let expired = match &spec.renew_time {
        Some(MicroTime(renewed)) => renewed.as_second() + duration <= now.as_second(),
        None => true,
    };
    if holder.is_empty() || expired { Decision::Take } else { Decision::Follow { holder: holder.to_string() } }
}

/// The lease spec to write for a decision to hold the lease.
pub fn held_spec(current: Option<&LeaseSpec>, decision: &Decision, config: &LeaseConfig, now: Timestamp) -> LeaseSpec {
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    let (acquire_time, transitions) = match (decision, current) {
        (Decision::Renew, Some(spec)) => (spec.acquire_time.clone().unwrap_or(MicroTime(now)), transitions),
        (Decision::Create, _) => (MicroTime(now), 0),
        _ => (MicroTime(now), transitions + 1),
    };
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(15)),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// Keeps trying to hold the lease; publishes whether we are the leader. On `shutdown`, a held lease is released
/// so another replica takes over at once instead of after the lease expires.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let held = match try_hold(&api, &config).await {
            Ok(held) => {
                if held {
                    last_renewal = tokio::time::Instant::now();
                }
                held
            }
            Err(err) => {
                tracing::warn!(error = %err, lease = %config.name, "leader election: cannot reach the lease");
                *leader.borrow() && last_renewal.elapsed() < config.renew_deadline
            }
        };
        if leader.send_replace(held) != held {
            tracing::info!(identity = %config.identity, leader = held, "leadership changed");
            metrics.set_leader(held);
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period) => {}
            _ = &mut shutdown => {
                if *leader.borrow() {
                    release(&api, &config).await;
                }
                leader.send_replace(false);
                return;
            }
        }
    }
}

/// One round: read the lease, and create, take over or renew it when the decision says so.
pub async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let now = Timestamp::now();
    let decision = decide(spec, &config.identity, now);
    let result = match &decision {
        Decision::Follow { .. } => return Ok(false),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(held_spec(None, &decision, config, now)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Decision::Take | Decision::Renew => {
            let mut lease = current.clone().unwrap_or_default();
            lease.spec = Some(held_spec(spec, &decision, config, now));
            // resourceVersion from the read makes this a compare-and-swap: a concurrent writer gets 409.
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else { return };
    if let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(config.identity.as_str())) {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api.replace(&config.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %config.name, "released leadership"),
            Err(err) => tracing::warn!(error = %err, "could not release the lease; it expires on its own"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(now.as_second() - renewed_secs_ago).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn decisions_follow_the_lease() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"), 5, now)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&lease(Some("b"), 5, now)), "a", now), Decision::Follow { holder: "b".into() });
        assert_eq!(decide(Some(&lease(Some("b"), 15, now)), "a", now), Decision::Take, "expired");
        assert_eq!(decide(Some(&lease(None, 0, now)), "a", now), Decision::Take, "released");
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let config = LeaseConfig::new("weft-system".into(), "weft-operator".into(), "a".into());
        let mut theirs = lease(Some("b"), 30, now);
        theirs.lease_transitions = Some(3);
        let taken = held_spec(Some(&theirs), &Decision::Take, &config, now);
        assert_eq!((taken.holder_identity.as_deref(), taken.lease_transitions), (Some("a"), Some(4)));
        let later = Timestamp::from_second(now.as_second() + 2).unwrap();
        let renewed = held_spec(Some(&taken), &Decision::Renew, &config, later);
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(later)));
        assert_eq!(renewed.lease_transitions, Some(4));
    }
}
