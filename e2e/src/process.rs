//! Child processes that are always cleaned up: killed when dropped, also when a test fails, with their output in
//! a log file that can be shown when something goes wrong.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name: name.to_string(), child: Some(child), log: log.to_path_buf() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of output, for failure messages.
    pub fn tail(&self, lines: usize) -> String {
        let output = self.output();
        let all: Vec<&str> = output.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the output contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, deadline: Duration) -> anyhow::Result<String> {
        let until = Instant::now() + deadline;
        loop {
            let output = self.output();
            if let Some(line) = output.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{} did not print {needle:?} within {deadline:?}; its output ends with:\n{}",
                self.name,
                self.tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process (SIGKILL: no chance to clean up, like a crashed or evicted pod) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM, what Kubernetes sends at the start of a pod's grace period).
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.pid().and_then(|p| rustix::process::Pid::from_raw(p as i32)).context("process not running")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .with_context(|| format!("sending SIGTERM to {}", self.name))
    }

    /// Waits up to `deadline` for the process to exit; its exit status, `None` if it is still running.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time (user and system) process `pid` has used so far; zero when it cannot be read.
pub fn cpu_time(pid: u32) -> Duration {
    let CpuTime { user, system } = cpu_split(pid);
    user + system
}

/// CPU time a process has used, in its own code and libraries (user) and in the kernel on its behalf (system).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

/// [`CpuTime`] of process `pid` so far; zero when it cannot be read.
pub fn cpu_split(pid: u32) -> CpuTime {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    cpu_of_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// The user and system times in a `/proc/PID/stat` line, whose clock ticks are `per_second`. Pure.
fn cpu_of_stat(stat: &str, per_second: u64) -> CpuTime {
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, utime 14, stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let time = |i: usize| {
        let ticks = fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / per_second.max(1) as f64)
    };
    CpuTime { user: time(11), system: time(12) }
}

/// A CPU's clock ticks so far, busy and all (from `/proc/stat`), for how busy it was in between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTicks {
    pub busy: u64,
    pub total: u64,
}

/// [`CoreTicks`] of CPU `cpu` so far; zero when they cannot be read.
pub fn core_ticks(cpu: usize) -> CoreTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    ticks_of_core(&stat, cpu)
}

/// CPU `cpu`'s line of `/proc/stat`: idle and iowait are its idle ticks, the rest (user, nice, system, irq,
/// softirq, steal) busy. Pure.
fn ticks_of_core(stat: &str, cpu: usize) -> CoreTicks {
    let name = format!("cpu{cpu}");
    let Some(line) = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str())) else {
        return CoreTicks::default();
    };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    CoreTicks { busy: total - idle, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_s_busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 4 1 3 50 2 0 1 1 0 0\ncpu1 6 0 7 50 0 0 0 0 0 0\n";
        assert_eq!(ticks_of_core(stat, 0), CoreTicks { busy: 10, total: 62 });
        assert_eq!(ticks_of_core(stat, 1), CoreTicks { busy: 13, total: 63 });
        assert_eq!(ticks_of_core(stat, 7), CoreTicks::default(), "no such CPU");
    }

    #[test]
    fn user_and_system_time_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (weft (proxy) x) S 1 4242 4242 0 -1 4194560 1521 0 0 0 250 75 0 0 20 0 2 0 100 1 2";
        let cpu = cpu_of_stat(stat, 100);
        assert_eq!(cpu, CpuTime { user: Duration::from_millis(2500), system: Duration::from_millis(750) });
        assert_eq!(cpu_of_stat("garbage", 100), CpuTime::default());
    }
}
