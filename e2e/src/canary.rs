//! A canary rollout as users do it: edit the weights, watch the split move. Shared by `make demo` (which draws
//! it) and the e2e suite (which checks it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::load::Totals;
use crate::mesh::{VERSIONS, virtual_service_yaml};

/// Where a rollout happens: rules can be applied, and the client's proxy config read back.
#[allow(async_fn_in_trait)] // used generically by the harness, never as a trait object or across threads
pub trait RolloutTarget {
    /// Creates or replaces one file of routing rules (`kubectl apply`, or a file write in standalone mode);
    /// returns when it was applied.
    async fn apply(&self, name: &str, yaml: &str) -> anyhow::Result<Instant>;
    /// The client proxy's `/config_dump`.
    async fn client_config_dump(&self) -> anyhow::Result<String>;
}

/// What one step of the rollout achieved.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub weights: [u32; 2],
    /// From the file edit until the proxy serves the new weights.
    pub took_effect: Duration,
    /// Requests answered during the step's hold, per version (v1, v2).
    pub per_version: [u64; 2],
    pub failures: u64,
    /// The hold: from when the proxy served the new weights until the next edit.
    pub window: (Instant, Instant),
}

impl StepReport {
    pub fn requests(&self) -> u64 {
        self.per_version.iter().sum::<u64>() + self.failures
    }

    /// Share of successful requests that reached v2.
    /// Recounts from individual samples: only requests that started during the hold, so a request routed just
    /// before the edit and answered after it is not counted against the new weights.
    pub fn recount(&mut self, samples: &[crate::load::Sample]) {
        let (start, end) = self.window;
        let held: Vec<_> = samples.iter().filter(|s| s.started >= start && s.started < end).cloned().collect();
        let (counts, failures) = crate::load::tally(&held, &VERSIONS);
        self.per_version = [counts[0] as u64, counts[1] as u64];
        self.failures = failures as u64;
    }

    pub fn v2_share(&self) -> f64 {
        let ok: u64 = self.per_version.iter().sum();
        if ok == 0 { 0.0 } else { self.per_version[1] as f64 / ok as f64 }
    }
}

/// Progress, for live display.
#[derive(Debug, Clone)]
pub enum Event {
    Edited {
        weights: [u32; 2],
    },
    Applied {
        weights: [u32; 2],
        after: Duration,
    },
    /// Counts in the last window (v1, v2, failures) and its length.
    Window {
        weights: [u32; 2],
        counts: [u64; 3],
        length: Duration,
    },
}

/// Runs each step: edit the file, wait for the proxy to apply it, hold for `hold` while traffic (from a
/// [`crate::load::LoadLoop`] writing `totals`) flows, reporting windows of `window` length.
pub async fn run_steps(
    mesh: &impl RolloutTarget,
    totals: &Totals,
    steps: &[[u32; 2]],
    hold: Duration,
    window: Duration,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for &weights in steps {
        let edited = mesh.apply("reviews-vs.yaml", &virtual_service_yaml(weights)).await?;
        on_event(&Event::Edited { weights });
        let took_effect = wait_for_weights(mesh, weights, edited).await?;
        let applied = Instant::now();
        on_event(&Event::Applied { weights, after: took_effect });
        let start = counts(&totals.read());
        let mut previous = start;
        let hold_until = Instant::now() + hold;
        while Instant::now() < hold_until {
            let length = window.min(hold_until - Instant::now());
            tokio::time::sleep(length).await;
            let now = counts(&totals.read());
            on_event(&Event::Window { weights, counts: delta(now, previous), length });
            previous = now;
        }
        let total = delta(previous, start);
        let window = (applied, Instant::now());
        reports.push(StepReport {
            weights,
            took_effect,
            per_version: [total[0], total[1]],
            failures: total[2],
            window,
        });
    }
    Ok(reports)
}

fn counts(totals: &BTreeMap<String, u64>) -> [u64; 3] {
    let get = |k: &str| totals.get(k).copied().unwrap_or(0);
    [get(VERSIONS[0]), get(VERSIONS[1]), get("")]
}

fn delta(now: [u64; 3], before: [u64; 3]) -> [u64; 3] {
    [now[0] - before[0], now[1] - before[1], now[2] - before[2]]
}

/// Polls the proxy's config dump until the canary route carries `weights`.
pub async fn wait_for_weights(
    mesh: &impl RolloutTarget,
    weights: [u32; 2],
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = since + Duration::from_secs(10);
    loop {
        if let Ok(dump) = mesh.client_config_dump().await
            && canary_weights(&dump) == Some(weights)
        {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "the proxy did not apply weights {weights:?} within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The (v1, v2) weights of the route named `canary` in a proxy config dump.
pub fn canary_weights(config_dump: &str) -> Option<[u32; 2]> {
    let dump: serde_json::Value = serde_json::from_str(config_dump).ok()?;
    let routes = dump.get("routes")?.as_object()?;
    let canary = routes
        .values()
        .flat_map(|table| table["virtual_hosts"].as_array().into_iter().flatten())
        .flat_map(|vhost| vhost["routes"].as_array().into_iter().flatten())
        .find(|route| route["name"] == "canary")?;
    let mut weights = [0u32; 2];
    for target in canary["action"]["forward"]["targets"].as_array()? {
        let cluster = target["cluster"].as_str()?;
        let weight = u32::try_from(target["weight"].as_u64()?).ok()?;
        for (i, version) in VERSIONS.iter().enumerate() {
            if cluster.contains(&format!("|{version}|")) {
                weights[i] = weight;
            }
        }
    }
    Some(weights)
}
