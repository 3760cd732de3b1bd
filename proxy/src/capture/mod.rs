//! Traffic capture for `weft-proxy init`: the nat-table rules that send a pod's TCP traffic through its proxy.
//! Pure: [`CaptureSettings`] in, iptables-restore text out. Applying it is [`apply`]'s job.
//!
//! The rules live in Weft's own chains, so re-running `init` flushes and refills them and adds each jump from a
//! built-in chain only once:
//!
//! - `WEFT_INBOUND` (from PREROUTING): TCP arriving at the pod goes to the inbound capture port, except the
//!   proxy's health port (kubelet probes and metrics scrapes reach the proxy itself) and excluded inbound ports.
//! - `WEFT_OUTPUT` (from OUTPUT): TCP the pod sends goes to the outbound capture port, except the proxy's own
//!   traffic (its UID), loopback destinations, excluded ports and excluded IP ranges. Traffic an application sends
//!   to its own pod IP leaves through `lo`; it is handled as inbound (through `WEFT_INBOUND`).
//!
//! Only IPv4 is captured; IPv6 traffic is left alone, so IPv6 exclusion ranges have nothing to exclude.

pub mod apply;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub const CHAIN_INBOUND: &str = "WEFT_INBOUND";
pub const CHAIN_IN_REDIRECT: &str = "WEFT_IN_REDIRECT";
pub const CHAIN_OUTPUT: &str = "WEFT_OUTPUT";
pub const CHAIN_REDIRECT: &str = "WEFT_REDIRECT";

/// What `weft-proxy init` captures and what it leaves alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The proxy's UID: its own traffic is never captured.
    pub proxy_uid: u32,
    pub outbound_capture_port: u16,
    pub inbound_capture_port: u16,
    /// The proxy's health and metrics port, always reachable from outside the pod.
    pub health_port: u16,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ip_ranges: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("--outbound-capture-port and --inbound-capture-port must differ (both are {0})")]
    SamePorts(u16),
}

/// An IP range in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (address, prefix) = s.trim().split_once('/').ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
        let address: IpAddr = address.parse().map_err(|_| format!("{s:?}: {address:?} is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max && !(prefix.len() > 1 && prefix.starts_with('0')))
            .ok_or_else(|| format!("{s:?}: prefix must be a number from 0 to {max}"))?;
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The rules for one pod: chain contents, and the jumps into them from the built-in chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Comment lines shown above the rules (`# ...`).
    pub notes: Vec<String>,
    /// `-A WEFT_...` rules, in order.
    pub rules: Vec<String>,
    /// `-A PREROUTING ...` / `-A OUTPUT ...` jumps into Weft's chains.
    pub jumps: Vec<String>,
}

impl CaptureSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.outbound_capture_port == self.inbound_capture_port {
            return Err(SettingsError::SamePorts(self.inbound_capture_port));
        }
        Ok(())
    }

    /// The rules that implement these settings.
    pub fn ruleset(&self) -> Ruleset {
        let mut notes = vec![format!(
            "# weft-proxy init: TCP out -> :{}, TCP in -> :{}, UID {} and port {} untouched; IPv4 only",
            self.outbound_capture_port, self.inbound_capture_port, self.proxy_uid, self.health_port
        )];
        let (v4, v6): (Vec<Cidr>, Vec<Cidr>) =
            dedup(&self.exclude_outbound_ip_ranges).into_iter().partition(|c| c.address.is_ipv4());
        if !v6.is_empty() {
            let list: Vec<String> = v6.iter().map(Cidr::to_string).collect();
            notes.push(format!("# IPv6 is not captured, nothing to exclude for: {}", list.join(",")));
        }
        let mut rules = self.inbound_rules();
        rules.extend(self.outbound_rules(&v4));
        let jumps =
            vec![format!("-A PREROUTING -p tcp -j {CHAIN_INBOUND}"), format!("-A OUTPUT -p tcp -j {CHAIN_OUTPUT}")];
        Ruleset { notes, rules, jumps }
    }

    fn inbound_rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = dedup(&[&[self.health_port][..], &self.exclude_inbound_ports].concat())
            .into_iter()
            .map(|port| format!("-A {CHAIN_INBOUND} -p tcp --dport {port} -j RETURN"))
            .collect();
        rules.push(format!("-A {CHAIN_INBOUND} -p tcp -j {CHAIN_IN_REDIRECT}"));
        rules.push(format!("-A {CHAIN_IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}", self.inbound_capture_port));
        rules
    }

    fn outbound_rules(&self, excluded_ranges: &[Cidr]) -> Vec<String> {
        let mut rules = vec![
            format!("-A {CHAIN_OUTPUT} -m owner --uid-owner {} -j RETURN", self.proxy_uid),
            format!("-A {CHAIN_OUTPUT} -d 127.0.0.0/8 -j RETURN"),
            format!("-A {CHAIN_OUTPUT} -o lo -j {CHAIN_INBOUND}"),
            format!("-A {CHAIN_OUTPUT} -o lo -j RETURN"),
        ];
        rules.extend(
            dedup(&self.exclude_outbound_ports)
                .into_iter()
                .map(|port| format!("-A {CHAIN_OUTPUT} -p tcp --dport {port} -j RETURN")),
        );
        rules.extend(excluded_ranges.iter().map(|range| format!("-A {CHAIN_OUTPUT} -d {range} -j RETURN")));
        rules.push(format!("-A {CHAIN_OUTPUT} -j {CHAIN_REDIRECT}"));
        rules.push(format!("-A {CHAIN_REDIRECT} -p tcp -j REDIRECT --to-ports {}", self.outbound_capture_port));
        rules
    }
}

impl Ruleset {
    /// The iptables-restore input (for `iptables-restore --noflush`). Declaring a chain creates it or flushes it,
    /// so Weft's chains end up exactly as described; a jump is left out when `existing` (the output of
    /// `iptables-save -t nat`) already has it, so re-running adds nothing. `None`: show every jump.
    pub fn restore_text(&self, existing: Option<&str>) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text += note;
            text += "\n";
        }
        text += "*nat\n";
        for chain in [CHAIN_INBOUND, CHAIN_IN_REDIRECT, CHAIN_OUTPUT, CHAIN_REDIRECT] {
            text += &format!(":{chain} - [0:0]\n");
        }
        for rule in &self.rules {
            text += rule;
            text += "\n";
        }
        for jump in self.jumps.iter().filter(|jump| !existing.is_some_and(|saved| has_jump(saved, jump))) {
            text += jump;
            text += "\n";
        }
        text += "COMMIT\n";
        text
    }
}

/// Whether `saved` (iptables-save output) has a jump with the chain and target of `jump` (`-A CHAIN ... -j T`).
fn has_jump(saved: &str, jump: &str) -> bool {
    let words: Vec<&str> = jump.split_whitespace().collect();
    let (Some(chain), Some(target)) = (words.get(1), words.last()) else { return false };
    saved.lines().any(|line| {
        let line: Vec<&str> = line.split_whitespace().collect();
        line.first() == Some(&"-A") && line.get(1) == Some(chain) && line.ends_with(&["-j", target])
    })
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

#[cfg(test)]
mod tests;
