//! The first flight of a TLS client, read by peeking (the bytes stay for whoever takes the connection): its
//! server name (SNI), which TLS routes match on, and its ALPN protocols, by which the inbound side tells a
//! sidecar's mutual TLS from an application's own TLS.

use std::io::Cursor;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long to wait for a whole ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest ClientHello looked at (a record is at most 16 KiB plus its header).
const HELLO_BYTES: usize = 16 * 1024 + 5;
const HELLO_POLL: Duration = Duration::from_millis(2);

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub server_name: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

/// The ClientHello the client sends first; `None` when the first bytes are not one or it does not come in time.
pub async fn peek_hello(stream: &TcpStream) -> Option<Hello> {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let mut buffer = vec![0u8; HELLO_BYTES];
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        match parse_hello(&buffer[..peeked]) {
            Parsed::NeedMore if peeked < buffer.len() => {}
            Parsed::Hello(hello) => return Some(hello),
            Parsed::NeedMore | Parsed::NotTls => return None,
        }
        tokio::time::sleep_until((Instant::now() + HELLO_POLL).min(deadline)).await;
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Whether the first bytes can be a TLS handshake (content type 22), judged on the first byte.
pub fn may_be_tls(first: &[u8]) -> bool {
    first.first() == Some(&22)
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    NeedMore,
    NotTls,
    Hello(Hello),
}

/// Reads a ClientHello with rustls (no handshake: only the hello is parsed). Pure.
fn parse_hello(bytes: &[u8]) -> Parsed {
    if !bytes.is_empty() && !may_be_tls(bytes) {
        return Parsed::NotTls;
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut cursor = Cursor::new(bytes);
    while (cursor.position() as usize) < bytes.len() {
        if acceptor.read_tls(&mut cursor).is_err() {
            return Parsed::NotTls;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Parsed::Hello(Hello {
                server_name: hello.server_name().map(str::to_string),
                alpn: hello.alpn().map(|protocols| protocols.map(<[u8]>::to_vec).collect()).unwrap_or_default(),
            })
        }
        Ok(None) => Parsed::NeedMore,
        Err(_) => Parsed::NotTls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a real client writes it, made by rustls.
    fn client_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_server_name_and_alpn_are_read_from_a_client_hello() {
        let hello = client_hello("login.example.com", &[b"weft-mtls", b"h2"]);
        let expected =
            Hello { server_name: Some("login.example.com".into()), alpn: vec![b"weft-mtls".to_vec(), b"h2".to_vec()] };
        assert_eq!(parse_hello(&hello), Parsed::Hello(expected));
        assert_eq!(parse_hello(&hello[..hello.len() / 2]), Parsed::NeedMore, "a partial hello needs more");
        assert_eq!(parse_hello(b"GET / HTTP/1.1\r\n"), Parsed::NotTls);
        assert_eq!(parse_hello(&[22, 3, 1, 0, 4, 99, 0, 0, 0]), Parsed::NotTls, "a handshake record that is no hello");
    }
}
