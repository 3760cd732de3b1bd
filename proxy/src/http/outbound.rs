//! The outbound listener: accepts application connections (HTTP/1.1, or HTTP/2 with prior knowledge, detected
//! per connection) and forwards each request by the current runtime config.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::forward;
use crate::dataplane::Runtime;

/// Serves `listener` forever; `default_port` is the Service port meant by a `Host` without a port.
pub async fn serve(listener: TcpListener, runtime: watch::Receiver<Arc<Runtime>>, default_port: u16) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let current = runtime.borrow().clone();
                async move { Ok::<_, Infallible>(forward::handle(request, current, default_port).await) }
            });
            if let Err(err) =
                auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}
