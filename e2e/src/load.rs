//! Continuous client load with every request recorded: what canary and restart scenarios measure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http_client::HttpClient;

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub started: Instant,
    pub finished: Instant,
    /// `None` when the request failed or no echo backend answered.
    pub version: Option<String>,
    pub ok: bool,
    /// Status or error, for failure reports.
    pub detail: String,
}

/// Running totals while a loop runs: answers per version, and failures (key `""`).
#[derive(Debug, Default)]
pub struct Totals(Mutex<BTreeMap<String, u64>>);

impl Totals {
    pub fn record(&self, sample: &Sample) {
        let key = if sample.ok { sample.version.clone().unwrap_or_default() } else { String::new() };
        if let Ok(mut totals) = self.0.lock() {
            *totals.entry(key).or_default() += 1;
        }
    }

    /// Counts so far; failures under the empty key.
    pub fn read(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Requests sent by `workers` concurrent loops until [`LoadLoop::stop`].
pub struct LoadLoop {
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl LoadLoop {
    /// Starts the loops; each sends the next request as soon as the previous one is answered, optionally
    /// pausing `pace` between requests.
    pub fn start(client: HttpClient, host: &str, workers: usize, pace: Option<Duration>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(Totals::default());
        let workers = (0..workers)
            .map(|_| {
                let (client, host, stop, totals) = (client.clone(), host.to_string(), stop.clone(), totals.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sample = one(&client, &host).await;
                        totals.record(&sample);
                        samples.push(sample);
                        if let Some(pace) = pace {
                            tokio::time::sleep(pace).await;
                        }
                    }
                    samples
                })
            })
            .collect();
        Self { stop, totals, workers }
    }

    /// Live totals, readable while the loop runs.
    pub fn totals(&self) -> Arc<Totals> {
        self.totals.clone()
    }

    /// Stops the loops and returns every sample, in start order.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.unwrap_or_default());
        }
        all.sort_by_key(|s| s.started);
        all
    }
}

/// One request through `client`.
pub async fn one(client: &HttpClient, host: &str) -> Sample {
    let started = Instant::now();
    let result = client.get(host, "/", &[]).await;
    let finished = Instant::now();
    match result {
        Ok(reply) => Sample {
            started,
            finished,
            ok: reply.is_success(),
            detail: if reply.is_success() { String::new() } else { format!("{} {}", reply.status, reply.body.trim()) },
            version: reply.version,
        },
        Err(err) => Sample { started, finished, version: None, ok: false, detail: format!("{err:#}") },
    }
}

/// How many samples went to each of `versions`, and how many failed.
pub fn tally(samples: &[Sample], versions: &[&str]) -> (Vec<usize>, usize) {
    let counts =
        versions.iter().map(|v| samples.iter().filter(|s| s.ok && s.version.as_deref() == Some(v)).count()).collect();
    (counts, samples.iter().filter(|s| !s.ok).count())
}
