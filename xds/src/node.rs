//! The proxy's identity on the ADS stream, carried in `Node.id` as Istio does:
//! `sidecar~<pod ip>~<pod name>.<namespace>~<namespace>.svc.cluster.local`.

use std::fmt;
use std::net::IpAddr;

/// Who a proxy is: the pod it serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyNode {
    pub pod_name: String,
    pub namespace: String,
    pub ip: Option<IpAddr>,
}

impl fmt::Display for ProxyNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        write!(f, "sidecar~{ip}~{}.{}~{}.{}", self.pod_name, self.namespace, self.namespace, crate::CLUSTER_DOMAIN)
    }
}

impl ProxyNode {
    /// Parses a node id written by [`fmt::Display`]; a message naming the problem otherwise.
    pub fn parse(id: &str) -> Result<Self, String> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, _domain] = parts.as_slice() else {
            return Err(format!(
                "node id {id:?} is not of the form sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local"
            ));
        };
        if *kind != "sidecar" {
            return Err(format!("node id {id:?}: unknown proxy type {kind:?}"));
        }
        let ip = if ip.is_empty() {
            None
        } else {
            Some(ip.parse().map_err(|_| format!("node id {id:?}: {ip:?} is not an IP address"))?)
        };
        let (pod_name, namespace) =
            pod.rsplit_once('.').ok_or_else(|| format!("node id {id:?}: {pod:?} is not POD.NAMESPACE"))?;
        if pod_name.is_empty() || namespace.is_empty() {
            return Err(format!("node id {id:?}: empty pod name or namespace"));
        }
        Ok(Self { pod_name: pod_name.to_string(), namespace: namespace.to_string(), ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip() {
        let node = ProxyNode { pod_name: "web-1".into(), namespace: "shop".into(), ip: "10.0.0.7".parse().ok() };
        let id = node.to_string();
        assert_eq!(id, "sidecar~10.0.0.7~web-1.shop~shop.svc.cluster.local");
        assert_eq!(ProxyNode::parse(&id), Ok(node));
        assert!(ProxyNode::parse("router~1.2.3.4~a.b~b.svc.cluster.local").is_err());
        assert!(ProxyNode::parse("garbage").is_err());
    }
}
