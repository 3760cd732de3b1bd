//! TCP and TLS routes for captured connections: a connection to a destination a listener's TCP route takes (by
//! address range, and for TLS by the server name of its ClientHello) goes to an endpoint of a weighted cluster of
//! that route, byte for byte; TLS passes through unterminated. Decided once per connection, so weights split
//! connections, as with Envoy's TCP proxy.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::l4::{l4_route, wants_server_name};
use crate::http::Forwarder;
use crate::upstream::InFlight;

/// How long to wait for a whole ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest ClientHello looked at (a record is at most 16 KiB plus its header).
const HELLO_BYTES: usize = 16 * 1024 + 5;
const HELLO_POLL: Duration = Duration::from_millis(2);

/// Where a routed connection goes: the cluster (for metrics and logs) and one of its endpoints.
pub struct L4Target {
    pub cluster: String,
    pub endpoint: SocketAddr,
    pub lease: InFlight,
    /// The route's idle timeout: `None` the proxy's, zero none.
    pub idle_timeout: Option<Duration>,
}

/// The endpoint a TCP or TLS route sends this connection to; `None` when no such route takes it (it is then
/// handled as before: HTTP sniffing or passthrough), or the route's cluster has no endpoint.
pub async fn route(
    stream: &TcpStream,
    original: SocketAddr,
    forwarder: &Forwarder,
) -> Option<Result<L4Target, String>> {
    let wants_name = {
        let runtime = forwarder.runtime.borrow();
        let routes = runtime.config.l4_routes_for_port(original.port());
        if routes.is_empty() {
            return None;
        }
        wants_server_name(routes, original.ip())
    };
    let server_name = if wants_name { server_name(stream).await } else { None };
    let runtime = forwarder.runtime.borrow().clone();
    let routes = runtime.config.l4_routes_for_port(original.port());
    let route = l4_route(routes, original.ip(), server_name.as_deref())?;
    let roll = rand::random();
    let Some(target) = crate::config::routes::pick_weighted(&route.targets, roll) else {
        return Some(Err(format!("route {} has no target", route.name)));
    };
    let picked = runtime.clusters.get(&target.cluster).and_then(|balancer| balancer.pick());
    Some(match picked {
        Some((endpoint, lease)) => {
            Ok(L4Target { cluster: target.cluster.clone(), endpoint, lease, idle_timeout: route.idle_timeout })
        }
        None => Err(format!("cluster {} has no healthy endpoint", target.cluster)),
    })
}

/// The server name (SNI) of the ClientHello the client sends first, read by peeking (the bytes stay for the
/// upstream); `None` when the first bytes are not a ClientHello, it names no server, or it does not come in time.
async fn server_name(stream: &TcpStream) -> Option<String> {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let mut buffer = vec![0u8; HELLO_BYTES];
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        match parse_hello(&buffer[..peeked]) {
            Hello::NeedMore if peeked < buffer.len() => {}
            Hello::Name(name) => return name,
            Hello::NeedMore | Hello::NotTls => return None,
        }
        tokio::time::sleep_until((Instant::now() + HELLO_POLL).min(deadline)).await;
        if Instant::now() >= deadline {
            return None;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Hello {
    NeedMore,
    NotTls,
    Name(Option<String>),
}

/// Reads a ClientHello with rustls (no handshake: only the hello is parsed). Pure.
fn parse_hello(bytes: &[u8]) -> Hello {
    // A TLS handshake record starts with content type 22; anything else is not TLS.
    if bytes.first().is_some_and(|b| *b != 22) {
        return Hello::NotTls;
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut cursor = Cursor::new(bytes);
    while (cursor.position() as usize) < bytes.len() {
        if acceptor.read_tls(&mut cursor).is_err() {
            return Hello::NotTls;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Name(accepted.client_hello().server_name().map(str::to_string)),
        Ok(None) => Hello::NeedMore,
        Err(_) => Hello::NotTls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a real client writes it, made by rustls.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_server_name_is_read_from_a_client_hello() {
        let hello = client_hello("login.example.com");
        assert_eq!(parse_hello(&hello), Hello::Name(Some("login.example.com".into())));
        assert_eq!(parse_hello(&hello[..hello.len() / 2]), Hello::NeedMore, "a partial hello needs more");
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse_hello(&[22, 3, 1, 0, 4, 99, 0, 0, 0]), Hello::NotTls, "a handshake record that is no hello");
    }
}
