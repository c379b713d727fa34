//! The metrics port: plain HTTP/1.1 (no TLS: for a scraper on the host or the pod network),
//! `GET /metrics` in Prometheus text format and `GET /health` (200 when the node is up and
//! joined, 503 otherwise). One request per connection; every connection is bounded in
//! count, request size and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::scrape::{Health, Scraper};

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// Largest request head accepted (request line and headers; a GET has no body).
const MAX_REQUEST: usize = 8 * 1024;
/// Longest a connection may take to send its request and receive the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read and dropped after a refused request, and for how long at most.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Most headers parsed.
const MAX_HEADERS: usize = 32;

/// Prometheus text exposition format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, scraper: Scraper) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!("metrics port: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics port: too many connections, closing");
            continue;
        };
        let scraper = scraper.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(CONNECTION_TIMEOUT, serve_one(stream, &scraper));
            if let Ok(Err(e)) = served.await {
                tracing::debug!(%peer, "metrics port: {e}");
            }
            drop(slot);
        });
    }
}

async fn serve_one(mut stream: TcpStream, scraper: &Scraper) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let (method, path) = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_owned();
                let path = req.path.unwrap_or("").to_owned();
                break (method, path);
            }
            Ok(httparse::Status::Partial) if len < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) => {
                reply(&mut stream, 431, "text/plain", "request head too large\n").await?;
                return drain(&mut stream).await;
            }
            Err(e) => {
                let body = format!("bad request: {e}\n");
                reply(&mut stream, 400, "text/plain", &body).await?;
                return drain(&mut stream).await;
            }
        }
    };
    if method != "GET" {
        return reply(&mut stream, 405, "text/plain", "only GET is served\n").await;
    }
    // A query string changes nothing.
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let text = scraper.render().await;
            reply(&mut stream, 200, TEXT_FORMAT, &text).await
        }
        "/health" => match scraper.health().await {
            Health::Ready => reply(&mut stream, 200, "text/plain", "ready\n").await,
            Health::NotReady(why) => {
                reply(
                    &mut stream,
                    503,
                    "text/plain",
                    &format!("not ready: {why}\n"),
                )
                .await
            }
        },
        _ => {
            reply(
                &mut stream,
                404,
                "text/plain",
                "not found: GET /metrics or /health\n",
            )
            .await
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Read what the client still sends (bounded) after a refusal, so closing with unread input
/// does not reset the connection before the client read the answer.
async fn drain(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut left = DRAIN_LIMIT;
    let reading = async {
        while left > 0 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, reading).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Bind the metrics port (an error names the address).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::Config(format!("metrics address {addr}: {e}")))
}
