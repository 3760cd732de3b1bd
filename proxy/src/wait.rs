//! `weft-proxy wait`: polls the proxy's readiness URL until it answers 200, for a `postStart` hook that holds the
//! application's start until its proxy can carry traffic.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::BoxError;

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("--url {0}: {1}")]
    BadUrl(Uri, &'static str),
    #[error("{url} not ready after {after:?} (last attempt: {last})")]
    NotReady { url: Uri, after: Duration, last: String },
}

/// Returns once `url` answers 200, or fails after `timeout`.
pub async fn wait_ready(url: &Uri, timeout: Duration) -> Result<(), WaitError> {
    if url.scheme_str() != Some("http") {
        return Err(WaitError::BadUrl(url.clone(), "must start with http://"));
    }
    let Some(authority) = url.authority() else { return Err(WaitError::BadUrl(url.clone(), "has no host")) };
    let port = authority.port_u16().unwrap_or(80);
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining.min(ATTEMPT_TIMEOUT), get(url, authority.host(), port)).await {
            Ok(Ok(StatusCode::OK)) => return Ok(()),
            Ok(Ok(status)) => format!("answered {status}"),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", remaining.min(ATTEMPT_TIMEOUT)),
        };
        if Instant::now() + POLL_INTERVAL >= deadline {
            return Err(WaitError::NotReady { url: url.clone(), after: timeout, last });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn get(url: &Uri, host: &str, port: u16) -> Result<StatusCode, BoxError> {
    let stream = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = url.authority().map(|a| a.as_str()).unwrap_or(host);
    let request = Request::get(path).header(header::HOST, authority).body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(request).await?.status())
}
