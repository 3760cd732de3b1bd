//! How much of the mesh a proxy is sent before it asks for more: the operator's default (`--proxy-scope`), which
//! a proxy may override for itself in its node metadata (`WEFT_PROXY_SCOPE`, set from the pod annotation
//! `weft.dev/proxy-scope` at injection).

use std::fmt;
use std::str::FromStr;

/// The node metadata key a proxy states its scope under.
pub const SCOPE_METADATA_KEY: &str = "WEFT_PROXY_SCOPE";
/// The node metadata key by which a proxy says it asks for virtual hosts on demand (VHDS over delta xDS), with
/// the value [`ON_DEMAND_VHDS`]; a client without it is sent the whole mesh.
pub const ON_DEMAND_METADATA_KEY: &str = "WEFT_ON_DEMAND";
pub const ON_DEMAND_VHDS: &str = "vhds";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ProxyScope {
    /// The Services of its namespace, what its namespace's rules name, and what it asks for on demand.
    #[default]
    Namespace,
    /// Only what its namespace's rules name; every Service it calls is asked for on demand. The smallest config,
    /// for namespaces with many Services of which a workload calls few.
    OnDemand,
    /// Every Service of the mesh (Istio's default without a `Sidecar` resource).
    Mesh,
}

impl ProxyScope {
    pub const ALL: [ProxyScope; 3] = [Self::Namespace, Self::OnDemand, Self::Mesh];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::OnDemand => "on-demand",
            Self::Mesh => "mesh",
        }
    }
}

impl fmt::Display for ProxyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProxyScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| format!("unknown proxy scope {s:?} (expected namespace, on-demand or mesh)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_a_typo_is_named() {
        for scope in ProxyScope::ALL {
            assert_eq!(scope.as_str().parse(), Ok(scope));
        }
        assert_eq!(" mesh ".parse(), Ok(ProxyScope::Mesh));
        assert_eq!(
            "meshh".parse::<ProxyScope>(),
            Err("unknown proxy scope \"meshh\" (expected namespace, on-demand or mesh)".to_string())
        );
    }
}
