//! `weftctl proxy-status`: one line per connected proxy, per xDS type whether it holds what the operator sent
//! (SYNCED), has not answered it yet (STALE, with how long ago it was sent), or refused it (NACKED; the proxy's
//! message follows the table). Like `istioctl proxy-status`. Pure: the operators' answers in, text out.

use weft_operator::debug::registry::{ProxiesView, ProxyView, SyncState, TypeView};

use crate::table;

/// The types shown, in push order.
const TYPES: [&str; 5] = ["CDS", "EDS", "LDS", "RDS", "VHDS"];

/// The table for the proxies each operator (named by its address or pod) reported, with the NACK messages
/// under it; only the proxy `only` (`POD.NAMESPACE`) when given.
pub fn render(answers: &[(String, ProxiesView)], only: Option<&str>) -> String {
    let mut rows = Vec::new();
    let mut nacks = Vec::new();
    let mut proxies: Vec<(&str, &ProxyView, u64)> = answers
        .iter()
        .flat_map(|(operator, view)| view.proxies.iter().map(move |p| (operator.as_str(), p, view.now_unix_ms)))
        .filter(|(_, p, _)| only.is_none_or(|name| name == pod_name(p)))
        .collect();
    proxies.sort_by(|a, b| (&a.1.namespace, &a.1.pod).cmp(&(&b.1.namespace, &b.1.pod)));
    for (operator, proxy, now) in proxies {
        let mut row = vec![pod_name(proxy)];
        for kind in TYPES {
            let view = proxy.types.get(kind);
            row.push(view.map(|v| cell(v, now)).unwrap_or_else(|| "-".to_string()));
            if let Some(nack) = view.filter(|v| v.state() == SyncState::Nacked).and_then(|v| v.nack.as_ref()) {
                nacks.push(format!("{} {kind} NACKED: {}\n", pod_name(proxy), nack.message));
            }
        }
        row.push(operator.to_string());
        row.push(proxy.protocol.clone());
        row.push(if proxy.tls { "mTLS".to_string() } else { "plaintext".to_string() });
        row.push(age(now.saturating_sub(proxy.connected_unix_ms)));
        rows.push(row);
    }
    if rows.is_empty() {
        return match only {
            Some(name) => format!("no proxy of {name} is connected\n"),
            None => "no proxies are connected\n".to_string(),
        };
    }
    let mut header = vec!["NAME"];
    header.extend(TYPES);
    header.extend(["OPERATOR", "XDS", "TRANSPORT", "CONNECTED"]);
    let mut out = table::render(&header, &rows);
    if !nacks.is_empty() {
        out.push('\n');
        out.extend(nacks);
    }
    out
}

/// `POD.NAMESPACE`.
fn pod_name(proxy: &ProxyView) -> String {
    format!("{}.{}", proxy.pod, proxy.namespace)
}

fn cell(view: &TypeView, now_unix_ms: u64) -> String {
    match view.state() {
        SyncState::Stale => {
            let since = view.sent.as_ref().map(|s| now_unix_ms.saturating_sub(s.unix_ms)).unwrap_or_default();
            format!("STALE ({})", age(since))
        }
        state => state.label().to_string(),
    }
}

/// A duration as kubectl's AGE column writes it: `45s`, `12m`, `3h`, `2d`.
pub fn age(millis: u64) -> String {
    let seconds = millis / 1000;
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weft_operator::debug::registry::{Nack, Sent};

    fn sent(nonce: &str, unix_ms: u64) -> Option<Sent> {
        Some(Sent { nonce: nonce.into(), version: String::new(), resources: 1, unix_ms })
    }

    fn proxy(pod: &str, types: &[(&str, TypeView)]) -> ProxyView {
        ProxyView {
            node: String::new(),
            pod: pod.into(),
            namespace: "shop".into(),
            peer: String::new(),
            protocol: "delta".into(),
            scope: "namespace".into(),
            tls: false,
            connected_unix_ms: 0,
            config: 1,
            types: types.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn each_type_shows_whether_the_proxy_holds_what_it_was_sent() {
        let synced = TypeView { sent: sent("1", 0), acked_nonce: Some("1".into()), nack: None };
        let stale = TypeView { sent: sent("2", 60_000), acked_nonce: Some("1".into()), nack: None };
        let nack = Nack { nonce: "3".into(), version: String::new(), message: "bad cluster".into(), unix_ms: 0 };
        let nacked = TypeView { sent: sent("3", 0), acked_nonce: None, nack: Some(nack) };
        let view = ProxiesView {
            now_unix_ms: 75_000,
            config: 1,
            proxies: vec![
                proxy("web-2", &[("CDS", synced.clone()), ("EDS", stale)]),
                proxy("web-1", &[("CDS", nacked), ("LDS", synced)]),
            ],
        };
        let text = render(&[("127.0.0.1:9090".into(), view.clone())], None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME         CDS      EDS           LDS"), "{text}");
        assert!(lines[1].starts_with("web-1.shop   NACKED   -             SYNCED"), "{text}");
        assert!(lines[2].starts_with("web-2.shop   SYNCED   STALE (15s)   -"), "{text}");
        assert!(lines[1].ends_with("127.0.0.1:9090   delta   plaintext   75s"), "{text}");
        assert_eq!(lines[4], "web-1.shop CDS NACKED: bad cluster");
        let one = render(&[("op".into(), view)], Some("web-2.shop"));
        assert_eq!(one.lines().count(), 2, "{one}");
        assert_eq!(render(&[], Some("x.y")), "no proxy of x.y is connected\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(
            [age(999), age(119_000), age(600_000), age(10_800_000), age(864_000_000)],
            ["0s", "119s", "10m", "3h", "10d"]
        );
    }
}
