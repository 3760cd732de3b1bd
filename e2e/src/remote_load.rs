//! Client load that runs where the application would (inside a pod's network namespace, or a cluster pod through
//! `kubectl exec`): `weft-load` prints one JSON line per request and this reads them back into [`Sample`]s.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::{Sample, Totals};

/// A running `weft-load`; stopped (and its samples returned) by [`RemoteLoad::stop`], killed when dropped.
pub struct RemoteLoad {
    child: Child,
    samples: Arc<Mutex<Vec<Sample>>>,
    totals: Arc<Totals>,
    reader: tokio::task::JoinHandle<()>,
}

impl RemoteLoad {
    /// Starts `command` (a `weft-load` invocation, possibly wrapped in `ip netns exec` or `kubectl exec -i`).
    /// Sample times are taken relative to now, so they compare with this machine's clock to within the start-up
    /// delay of the command.
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("weft-load has no stdout"))?;
        let (samples, totals) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Totals::default()));
        let base = Instant::now();
        let (sink, tally) = (samples.clone(), totals.clone());
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(sample) = parse_line(&line, base) {
                    tally.record(&sample);
                    if let Ok(mut all) = sink.lock() {
                        all.push(sample);
                    }
                }
            }
        });
        Ok(Self { child, samples, totals, reader })
    }

    /// Live totals while it runs.
    pub fn totals(&self) -> Arc<Totals> {
        self.totals.clone()
    }

    /// Requests answered so far.
    pub fn count(&self) -> usize {
        self.samples.lock().map(|s| s.len()).unwrap_or_default()
    }

    /// Waits until at least `n` requests were answered (or `deadline` passes).
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        while self.count() < n {
            anyhow::ensure!(Instant::now() < until, "only {} of {n} requests within {deadline:?}", self.count());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the load (closing its stdin, which `--until-stdin-closes` obeys, then killing it) and returns every
    /// sample in start order.
    pub async fn stop(mut self) -> Vec<Sample> {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        let mut samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples.sort_by_key(|s| s.started);
        samples
    }
}

/// One `weft-load` line as a sample; `None` for lines that are not one.
pub fn parse_line(line: &str, base: Instant) -> Option<Sample> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let at = |key: &str| value.get(key).and_then(serde_json::Value::as_u64).map(|us| base + Duration::from_micros(us));
    let status = value.get("status").and_then(serde_json::Value::as_u64);
    let ok = status.is_some_and(|s| (200..300).contains(&s)) && value.get("error").is_none();
    let detail = match (status, value.get("error").and_then(serde_json::Value::as_str)) {
        (_, Some(error)) => error.to_string(),
        (Some(s), None) if !ok => format!("status {s}"),
        _ => String::new(),
    };
    Some(Sample {
        started: at("start_us")?,
        finished: at("end_us")?,
        version: value.get("version").and_then(serde_json::Value::as_str).map(str::to_string),
        ok,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_samples() {
        let base = Instant::now();
        let ok = parse_line(r#"{"start_us":10,"end_us":30,"status":200,"version":"v2"}"#, base).unwrap();
        assert!(ok.ok && ok.version.as_deref() == Some("v2"));
        assert_eq!(ok.finished - ok.started, Duration::from_micros(20));
        let failed = parse_line(r#"{"start_us":1,"end_us":2,"status":503}"#, base).unwrap();
        assert!(!failed.ok && failed.detail == "status 503");
        let broken = parse_line(r#"{"start_us":1,"end_us":2,"error":"connection reset"}"#, base).unwrap();
        assert!(!broken.ok && broken.detail == "connection reset");
        assert!(parse_line("not json", base).is_none());
    }
}
