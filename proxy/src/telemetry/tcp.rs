//! Istio's TCP metrics under Weft's names: `weft_tcp_connections_opened_total`, `weft_tcp_connections_closed_total`,
//! `weft_tcp_received_bytes_total` (client to server) and `weft_tcp_sent_bytes_total` (server to client), for
//! connections the proxy forwards as TCP, reported by the client's sidecar (`reporter="source"`) and the
//! server's (`reporter="destination"`). Bytes are counted as they flow, so long-lived connections show while
//! open. TCP carries no peer exchange: the other side's workload is `unknown`, its principal is the one proved
//! in mutual TLS; the Service is the TCP route's cluster's (`unknown` for other TCP).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::golden::{GoldenMetrics, PartyLabels, Reporter, ServiceLabels, security_policy};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpLabels {
    #[prometheus(flatten)]
    parties: PartyLabels,
    request_protocol: &'static str,
    response_flags: &'static str,
    connection_security_policy: &'static str,
}

/// The four families.
#[derive(Default)]
pub struct TcpGolden {
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
}

impl TcpGolden {
    pub fn register(&self, registry: &mut Registry) {
        let families = [
            (
                "weft_tcp_connections_opened",
                "TCP connections opened (Istio's istio_tcp_connections_opened_total)",
                &self.opened,
            ),
            (
                "weft_tcp_connections_closed",
                "TCP connections closed (Istio's istio_tcp_connections_closed_total)",
                &self.closed,
            ),
            (
                "weft_tcp_received_bytes",
                "Bytes from client to server on TCP connections (Istio's istio_tcp_received_bytes_total)",
                &self.received,
            ),
            (
                "weft_tcp_sent_bytes",
                "Bytes from server to client on TCP connections (Istio's istio_tcp_sent_bytes_total)",
                &self.sent,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
    }
}

/// One forwarded TCP connection, as one sidecar saw it.
#[derive(Debug, Clone, Copy)]
pub struct TcpReport<'a> {
    pub reporter: Reporter,
    /// The other side's SPIFFE id, when it proved one.
    pub peer_principal: Option<&'a Arc<str>>,
    pub service: &'a ServiceLabels,
    /// `-`, or `UF` when the upstream could not be reached.
    pub flags: &'static str,
}

/// One connection's byte counters; counted closed when dropped.
pub struct TcpTally {
    pub received: Counter,
    pub sent: Counter,
    closed: Counter,
}

impl Drop for TcpTally {
    fn drop(&mut self) {
        self.closed.inc();
    }
}

impl GoldenMetrics {
    /// Counts a connection opened; its counters, which count it closed when dropped.
    pub fn tcp_connection(&self, report: TcpReport<'_>) -> TcpTally {
        let labels = self.tcp_labels(&report);
        let families = &self.tcp;
        families.opened.get_or_create(&labels).inc();
        TcpTally {
            received: families.received.get_or_create(&labels).clone(),
            sent: families.sent.get_or_create(&labels).clone(),
            closed: families.closed.get_or_create(&labels).clone(),
        }
    }

    fn tcp_labels(&self, report: &TcpReport<'_>) -> TcpLabels {
        TcpLabels {
            parties: self.parties(report.reporter, None, report.peer_principal, report.service),
            request_protocol: "tcp",
            response_flags: report.flags,
            connection_security_policy: security_policy(report.reporter, report.peer_principal),
        }
    }
}
