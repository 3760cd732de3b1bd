//! A workload's labels as sidecars tell each other (`x-weft-peer: workload=W,namespace=N,app=A,version=V`), and
//! this sidecar's own. Values are checked as Kubernetes label values (at most 63 characters of `[A-Za-z0-9._-]`);
//! a header that does not parse is ignored, so a peer cannot put arbitrary text into metric labels. Decoded
//! headers are cached: the same few peers send the same bytes on every request. At most [`PEER_LIMIT`] distinct
//! peers are believed over a sidecar's life; later newcomers count as `unknown`, so a peer that makes up a new
//! name per request cannot grow the metrics without bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};

/// The header sidecars exchange their workload's labels in.
pub const PEER_HEADER: HeaderName = HeaderName::from_static("x-weft-peer");
/// What a label is when it is not known.
pub const UNKNOWN: &str = "unknown";
/// Distinct peer workloads believed at most.
pub const PEER_LIMIT: usize = 1024;

/// Who a workload is, as the metrics label it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub workload: Arc<str>,
    pub namespace: Arc<str>,
    pub app: Arc<str>,
    pub version: Arc<str>,
}

impl Workload {
    /// Every label `unknown`.
    pub fn unknown() -> Self {
        let unknown: Arc<str> = Arc::from(UNKNOWN);
        Self { workload: unknown.clone(), namespace: unknown.clone(), app: unknown.clone(), version: unknown }
    }

    /// This sidecar's workload: its name, namespace, and app and version from the pod's labels (`app` or
    /// `app.kubernetes.io/name`; `version` or `app.kubernetes.io/version`), as Istio reads them.
    pub fn own(workload: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Self {
        let label = |keys: [&str; 2]| keys.iter().find_map(|k| labels.get(*k)).map(String::as_str);
        let value = |v: Option<&str>| Arc::from(v.filter(|v| is_label_value(v)).unwrap_or(UNKNOWN));
        Self {
            workload: value(Some(workload)),
            namespace: value(Some(namespace)),
            app: value(label(["app", "app.kubernetes.io/name"])),
            version: value(label(["version", "app.kubernetes.io/version"])),
        }
    }

    /// The header value telling a peer who this is.
    pub fn header(&self) -> HeaderValue {
        let text = format!(
            "workload={},namespace={},app={},version={}",
            self.workload, self.namespace, self.app, self.version
        );
        // Label values are ASCII: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// A workload from a peer's header; `None` when it is not one.
    pub fn parse(header: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(header).ok()?;
        let mut fields: [Option<&str>; 4] = [None; 4];
        for pair in text.split(',') {
            let (key, value) = pair.split_once('=')?;
            if !is_label_value(value) {
                return None;
            }
            let slot = match key.trim() {
                "workload" => 0,
                "namespace" => 1,
                "app" => 2,
                "version" => 3,
                _ => continue,
            };
            fields[slot] = Some(value);
        }
        let [Some(workload), Some(namespace), Some(app), Some(version)] = fields else { return None };
        Some(Self { workload: workload.into(), namespace: namespace.into(), app: app.into(), version: version.into() })
    }
}

/// A Kubernetes label value (non-empty here): at most 63 of `[A-Za-z0-9._-]`.
fn is_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decoded peer headers, by their bytes.
#[derive(Debug, Default)]
pub struct PeerCache {
    known: Mutex<HashMap<Vec<u8>, Option<Arc<Workload>>>>,
}

impl PeerCache {
    /// The workload a peer's header names, if it names one.
    pub fn decode(&self, header: &HeaderValue) -> Option<Arc<Workload>> {
        let bytes = header.as_bytes();
        let mut known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = known.get(bytes) {
            return found.clone();
        }
        if known.len() >= PEER_LIMIT {
            return None;
        }
        let parsed = Workload::parse(bytes).map(Arc::new);
        known.insert(bytes.to_vec(), parsed.clone());
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_told_in_the_header_is_read_back() {
        let labels =
            BTreeMap::from([("app".to_string(), "reviews".to_string()), ("version".to_string(), "v2".to_string())]);
        let own = Workload::own("reviews-v2", "shop", &labels);
        let header = own.header();
        assert_eq!(header, "workload=reviews-v2,namespace=shop,app=reviews,version=v2");
        assert_eq!(Workload::parse(header.as_bytes()), Some(own));
        let cache = PeerCache::default();
        assert_eq!(cache.decode(&header).map(|w| w.version.to_string()), Some("v2".to_string()));
        assert!(Arc::ptr_eq(&cache.decode(&header).unwrap(), &cache.decode(&header).unwrap()), "decoded once");
    }

    #[test]
    fn missing_labels_are_unknown_and_bad_headers_are_ignored() {
        let own =
            Workload::own("web", "shop", &BTreeMap::from([("app.kubernetes.io/name".to_string(), "web".to_string())]));
        assert_eq!((&*own.app, &*own.version), ("web", UNKNOWN));
        for bad in [
            "workload=a,namespace=b,app=c",
            "workload=a b,namespace=b,app=c,version=d",
            "workload=a,namespace=b,app=c,version=",
            "garbage",
            &format!("workload={},namespace=b,app=c,version=d", "x".repeat(64)),
        ] {
            assert_eq!(Workload::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
