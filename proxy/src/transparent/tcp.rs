//! TCP forwarding to a connection's original destination (or a TCP route's endpoint, in mutual TLS when it runs a
//! sidecar), closed after the idle timeout (Envoy's TCP proxy
//! `idle_timeout`) when no bytes move either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};
use tokio::net::TcpStream;

use crate::counted::Counted;
use crate::http::timeouts::TimeoutKind;
use crate::http::timeouts::connection::{Activity, TimedIo};
use crate::metrics::{Direction, Metrics};
use crate::telemetry::ServiceLabels;
use crate::telemetry::golden::Reporter;
use crate::telemetry::tcp::TcpReport;
use crate::upstream::{Alpn, ClusterTls, UpstreamIo};

/// Envoy's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to `destination`, in mutual TLS when `tls` says so.
async fn connect(destination: SocketAddr, tls: Option<&ClusterTls>) -> std::io::Result<UpstreamIo> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    match tls {
        Some(tls) => tls.secure(stream, CONNECT_TIMEOUT, Alpn::Tcp).await,
        None => Ok(UpstreamIo::Plain(stream)),
    }
}

/// Which connection is forwarded, for logs and metrics, and its idle timeout.
pub struct Flow<'a> {
    pub direction: Direction,
    pub peer: SocketAddr,
    pub idle: Option<Duration>,
    pub metrics: &'a Arc<Metrics>,
    /// The Service it goes to, for the golden TCP metrics.
    pub service: Arc<ServiceLabels>,
    /// Inbound: the caller's SPIFFE id, when it proved one.
    pub peer_principal: Option<Arc<str>>,
}

impl Flow<'_> {
    fn report<'a>(&'a self, principal: Option<&'a Arc<str>>, flags: &'static str) -> TcpReport<'a> {
        let reporter = match self.direction {
            Direction::Outbound => Reporter::Source,
            Direction::Inbound => Reporter::Destination,
        };
        TcpReport { reporter, peer_principal: principal, service: &self.service, flags }
    }
}

/// Connects to `destination` and copies bytes both ways until both sides are done, or nothing moved for the idle
/// timeout.
pub async fn forward<D>(downstream: D, destination: SocketAddr, flow: Flow<'_>)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    forward_with(downstream, destination, None, flow).await
}

/// [`forward`], over the cluster's mutual TLS (`tls`) when the destination runs a sidecar.
pub async fn forward_with<D>(downstream: D, destination: SocketAddr, tls: Option<&ClusterTls>, flow: Flow<'_>)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let (direction, peer) = (flow.direction.as_str(), flow.peer);
    let golden = &flow.metrics.golden;
    let mut upstream = match connect(destination, tls).await {
        Ok(upstream) => upstream,
        Err(err) => {
            tracing::debug!(direction, %peer, %destination, error = %err, "upstream connect failed");
            // Opened and closed at once, as Envoy's TCP proxy counts a connection it could not take upstream.
            drop(golden.tcp_connection(flow.report(flow.peer_principal.as_ref(), "UF")));
            return;
        }
    };
    // Outbound, the server's identity is the one its sidecar proved in the handshake.
    let principal = flow.peer_principal.clone().or_else(|| upstream.peer_principal());
    let tally = golden.tcp_connection(flow.report(principal.as_ref(), "-"));
    let downstream = Counted::new(downstream, tally);
    let activity = Activity::new();
    let mut downstream = TimedIo::opaque(downstream, activity.clone(), flow.metrics.clone(), flow.direction);
    let idle = async {
        match flow.idle {
            Some(limit) => activity.idle_for(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        copied = copy_bidirectional(&mut downstream, &mut upstream) => match copied {
            Ok((sent, received)) => tracing::debug!(direction, %peer, %destination, sent, received, "tcp connection done"),
            Err(err) => tracing::debug!(direction, %peer, %destination, error = %err, "tcp connection ended with an error"),
        },
        () = idle => {
            flow.metrics.timeout(flow.direction, TimeoutKind::Idle);
            tracing::debug!(direction, %peer, %destination, "tcp connection idle; closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_tcp_connection_with_no_traffic_is_closed_after_the_idle_timeout() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        // An upstream that echoes once and then keeps the connection open, silent.
        tokio::spawn(async move {
            let (mut stream, _) = upstream.accept().await.unwrap();
            let mut buffer = [0u8; 5];
            stream.read_exact(&mut buffer).await.unwrap();
            stream.write_all(&buffer).await.unwrap();
            std::future::pending::<()>().await;
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
        let (downstream, peer) = front.accept().await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let forwarding = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let idle = Some(Duration::from_millis(300));
                let service = metrics.golden.unknown_service();
                let peer_principal = Some(Arc::from("spiffe://cluster.local/ns/shop/sa/web"));
                let flow =
                    Flow { direction: Direction::Inbound, peer, idle, metrics: &metrics, service, peer_principal };
                forward(downstream, upstream_address, flow).await
            }
        });
        client.write_all(b"hello").await.unwrap();
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).await.unwrap();
        let idle_from = tokio::time::Instant::now();
        let mut rest = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(10), client.read(&mut rest)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(idle_from.elapsed() >= Duration::from_millis(250), "closed after {:?}", idle_from.elapsed());
        forwarding.await.unwrap();
        let text = metrics.encode();
        assert!(text.contains(r#"weft_proxy_timeouts_total{direction="inbound",kind="idle"} 1"#));
        // The golden TCP metrics: the caller's identity, both ways' bytes, opened and closed.
        let golden = |name: &str| {
            let line =
                text.lines().find(|l| l.starts_with(&format!("{name}{{"))).unwrap_or_else(|| panic!("{name}: {text}"));
            assert!(
                line.contains(r#"reporter="destination""#)
                    && line.contains(r#"source_principal="spiffe://cluster.local/ns/shop/sa/web""#),
                "{line}"
            );
            assert!(
                line.contains(r#"request_protocol="tcp""#)
                    && line.contains(r#"connection_security_policy="mutual_tls""#),
                "{line}"
            );
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        assert_eq!(golden("weft_tcp_received_bytes_total"), 5.0);
        assert_eq!(golden("weft_tcp_sent_bytes_total"), 5.0);
        assert_eq!(golden("weft_tcp_connections_opened_total"), 1.0);
        assert_eq!(golden("weft_tcp_connections_closed_total"), 1.0);
    }

    #[tokio::test]
    async fn a_connection_that_cannot_reach_upstream_is_counted_with_uf() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nowhere = closed.local_addr().unwrap();
        drop(closed);
        let metrics = Arc::new(Metrics::new());
        let (service, _) = metrics.golden.service_of_cluster("outbound|5432||db.shop.svc.cluster.local");
        let peer = "127.0.0.1:40000".parse().unwrap();
        let flow =
            Flow { direction: Direction::Outbound, peer, idle: None, metrics: &metrics, service, peer_principal: None };
        forward(tokio::io::empty(), nowhere, flow).await;
        let text = metrics.encode();
        let opened = text.lines().find(|l| l.starts_with("weft_tcp_connections_opened_total{")).unwrap();
        assert!(opened.contains(r#"reporter="source""#) && opened.contains(r#"response_flags="UF""#), "{opened}");
        assert!(
            opened.contains(r#"destination_service="db.shop.svc.cluster.local""#) && opened.ends_with(" 1"),
            "{opened}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("weft_tcp_connections_closed_total{") && l.ends_with(" 1")),
            "{text}"
        );
    }
}
