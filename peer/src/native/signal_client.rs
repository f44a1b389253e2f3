//! The signaling WebSocket client: one tokio task that keeps a connection to
//! `GET /api/v1/rooms/{id}/signal` alive for the driver.
//!
//! - Connects (TLS via rustls for `wss://`, platform roots plus an optional
//!   custom CA), sends `auth` with the access token and the session key as the
//!   **first message** (never the URL), then relays messages both ways over
//!   bounded channels.
//! - On any loss it reconnects with exponential backoff and jitter
//!   ([`Backoff::signaling`]), fetching a fresh token each time (a forced
//!   refresh after an auth refusal). Peer connections and playback are the
//!   driver's and are untouched: the driver only sees
//!   [`SignalEvent::Disconnected`] / [`SignalEvent::Connected`].
//! - Incoming messages are limited to [`MAX_SIGNAL_MESSAGE_LEN`] bytes by the
//!   WebSocket layer; outgoing ones above it are refused locally.
//! - While disconnected, outgoing messages are discarded (and counted): offers
//!   and candidates are stale once the connection they belonged to is gone.
//! - A close with code [`CLOSE_FORBIDDEN`] (not a member / room ended) ends
//!   the task with [`SignalEvent::Fatal`]; so do [`MAX_AUTH_FAILURES`]
//!   consecutive auth refusals.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, connect_async_tls_with_config};

use super::api_client::TokenSource;
use super::backoff::Backoff;
use crate::crypto::PublicKey;
use crate::signaling::{ClientMessage, MAX_SIGNAL_MESSAGE_LEN, PROTOCOL_VERSION, ServerMessage};

/// Capacity of the driver → server queue.
pub const OUTGOING_QUEUE: usize = 64;
/// Capacity of the server → driver queue.
pub const INCOMING_QUEUE: usize = 64;
/// Time allowed for TCP + TLS + WebSocket handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from `auth` to `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// We ping the server this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection silent this long (no message, ping or pong) is dropped and
/// re-established.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive auth refusals (close 4001 or `unauthorized`) before giving up.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Close code of an auth failure (server, issue 5).
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code for "not a member of this room / room ended".
pub const CLOSE_FORBIDDEN: u16 = 4003;

/// What the client reports to the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalEvent {
    /// Authenticated (the first message after this is the server's `hello`
    /// or an error).
    Connected,
    /// A server message.
    Message(Box<ServerMessage>),
    /// The connection is gone; the client retries after `retry_in`.
    Disconnected {
        /// Why (never contains tokens or message bodies).
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped for good (refused membership, repeated auth
    /// failure).
    Fatal(String),
}

/// Counters of the client.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Successful connections (auth sent).
    pub connects: AtomicU64,
    /// Outgoing messages discarded while disconnected or over the size limit.
    pub outgoing_dropped: AtomicU64,
    /// Incoming messages that did not parse.
    pub incoming_invalid: AtomicU64,
}

/// Why TLS could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read CA file: {0}")]
    Read(String),
    /// The CA file holds no usable certificate.
    #[error("CA file holds no usable PEM certificate")]
    NoCertificate,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// A rustls client configuration trusting the platform's roots plus the PEM
/// certificates in `extra_ca` (self-hosted servers with a private CA).
///
/// # Errors
/// [`TlsError`].
pub fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Platform roots: unreadable ones are skipped (a custom CA may be all
    // that is needed).
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| TlsError::Read(e.to_string()))?;
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| TlsError::Read(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::NoCertificate);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Settings of a [`SignalClient`].
#[derive(Debug, Clone)]
pub struct SignalConfig {
    /// `ws://` or `wss://` URL of the room's signaling endpoint.
    pub url: String,
    /// The session key registered in `auth` (the member's certificate key;
    /// the host's room key).
    pub session_key: PublicKey,
    /// TLS settings for `wss://` (defaults to platform roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Seed of the reconnect jitter.
    pub jitter_seed: u64,
}

/// The driver's handle on the client task.
#[derive(Debug)]
pub struct SignalClient {
    /// Messages to the server (bounded; use `try_send`).
    pub outgoing: mpsc::Sender<ClientMessage>,
    /// Events from the server.
    pub incoming: mpsc::Receiver<SignalEvent>,
    /// Counters.
    pub stats: Arc<SignalStats>,
    task: JoinHandle<()>,
}

impl SignalClient {
    /// Spawns the client task.
    pub fn spawn<T: TokenSource>(config: SignalConfig, tokens: T) -> Self {
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let stats = Arc::new(SignalStats::default());
        let task = tokio::spawn(run(config, tokens, out_rx, in_tx, Arc::clone(&stats)));
        Self {
            outgoing: out_tx,
            incoming: in_rx,
            stats,
            task,
        }
    }

    /// Stops the task (the socket is dropped without a close handshake).
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for SignalClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one connection ended.
enum Ended {
    /// Retry after backoff; `auth_failure` counts towards the limit.
    Retry { reason: String, auth_failure: bool },
    /// Stop.
    Fatal(String),
    /// The driver is gone.
    DriverGone,
}

async fn run<T: TokenSource>(
    config: SignalConfig,
    tokens: T,
    mut out_rx: mpsc::Receiver<ClientMessage>,
    in_tx: mpsc::Sender<SignalEvent>,
    stats: Arc<SignalStats>,
) {
    let mut backoff = Backoff::signaling(config.jitter_seed);
    let mut auth_failures = 0u32;
    loop {
        let force_refresh = auth_failures > 0;
        let ended = connect_once(
            &config,
            &tokens,
            force_refresh,
            &mut out_rx,
            &in_tx,
            &stats,
            &mut backoff,
        )
        .await;
        let reason = match ended {
            Ended::DriverGone => return,
            Ended::Fatal(reason) => {
                let _ = in_tx.send(SignalEvent::Fatal(reason)).await;
                return;
            }
            Ended::Retry {
                reason,
                auth_failure,
            } => {
                if auth_failure {
                    auth_failures += 1;
                    if auth_failures >= MAX_AUTH_FAILURES {
                        let _ = in_tx
                            .send(SignalEvent::Fatal(format!(
                                "authentication refused {auth_failures} times: {reason}"
                            )))
                            .await;
                        return;
                    }
                } else {
                    auth_failures = 0;
                }
                reason
            }
        };
        let retry_in = backoff.next_delay();
        tracing::info!(%reason, retry_ms = retry_in.as_millis() as u64, "signaling disconnected");
        if in_tx
            .send(SignalEvent::Disconnected { reason, retry_in })
            .await
            .is_err()
        {
            return;
        }
        // Wait, discarding what the driver sends meanwhile (stale).
        let sleep = tokio::time::sleep(retry_in);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                m = out_rx.recv() => match m {
                    Some(_) => { stats.outgoing_dropped.fetch_add(1, Ordering::Relaxed); }
                    None => return,
                },
            }
        }
    }
}

fn close_code(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> Option<u16> {
    frame.map(|f| u16::from(f.code))
}

#[allow(clippy::too_many_lines)]
async fn connect_once<T: TokenSource>(
    config: &SignalConfig,
    tokens: &T,
    force_refresh: bool,
    out_rx: &mut mpsc::Receiver<ClientMessage>,
    in_tx: &mpsc::Sender<SignalEvent>,
    stats: &SignalStats,
    backoff: &mut Backoff,
) -> Ended {
    let token = match tokens.token(force_refresh).await {
        Ok(t) => t,
        Err(e) => {
            return Ended::Retry {
                reason: format!("no access token: {e}"),
                auth_failure: matches!(e, super::api_client::ApiError::Server { status: 401, .. }),
            };
        }
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIGNAL_MESSAGE_LEN))
        .max_frame_size(Some(MAX_SIGNAL_MESSAGE_LEN));
    let connector = if config.url.starts_with("wss:") {
        match &config.tls {
            Some(c) => Some(Connector::Rustls(Arc::clone(c))),
            None => match tls_config(None) {
                Ok(c) => Some(Connector::Rustls(c)),
                Err(e) => return Ended::Fatal(e.to_string()),
            },
        }
    } else {
        Some(Connector::Plain)
    };
    let connect =
        connect_async_tls_with_config(config.url.as_str(), Some(ws_config), true, connector);
    let mut ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => {
            return Ended::Retry {
                reason: "connect timed out".into(),
                auth_failure: false,
            };
        }
        Ok(Err(e)) => {
            let forbidden = matches!(&e, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403 || r.status() == 404);
            let reason = format!("connect failed: {e}");
            return if forbidden {
                Ended::Fatal(reason)
            } else {
                Ended::Retry {
                    reason,
                    auth_failure: false,
                }
            };
        }
        Ok(Ok((ws, _resp))) => ws,
    };
    let auth = ClientMessage::Auth {
        token,
        protocol: Some(PROTOCOL_VERSION),
        key: Some(config.session_key),
    };
    let Ok(text) = auth.to_json() else {
        return Ended::Fatal("cannot encode auth".into());
    };
    if let Err(e) = ws.send(Message::text(text)).await {
        return Ended::Retry {
            reason: format!("send auth: {e}"),
            auth_failure: false,
        };
    }
    stats.connects.fetch_add(1, Ordering::Relaxed);
    if in_tx.send(SignalEvent::Connected).await.is_err() {
        return Ended::DriverGone;
    }
    let mut got_hello = false;
    let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut last_rx = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let idle_at = if got_hello {
            last_rx + IDLE_TIMEOUT
        } else {
            hello_deadline.min(last_rx + IDLE_TIMEOUT)
        };
        tokio::select! {
            m = ws.next() => {
                last_rx = tokio::time::Instant::now();
                match m {
                    None => return Ended::Retry { reason: "connection closed".into(), auth_failure: !got_hello },
                    Some(Err(e)) => return Ended::Retry { reason: format!("read: {e}"), auth_failure: false },
                    Some(Ok(Message::Text(t))) => {
                        match ServerMessage::from_json(t.as_str()) {
                            Ok(msg) => {
                                if matches!(msg, ServerMessage::Hello { .. }) {
                                    got_hello = true;
                                    backoff.reset();
                                }
                                let unauthorized = matches!(&msg, ServerMessage::Error { code: crate::signaling::ErrorCode::Unauthorized, .. });
                                if in_tx.send(SignalEvent::Message(Box::new(msg))).await.is_err() {
                                    return Ended::DriverGone;
                                }
                                if unauthorized && !got_hello {
                                    return Ended::Retry { reason: "unauthorized".into(), auth_failure: true };
                                }
                            }
                            Err(e) => {
                                stats.incoming_invalid.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(error = %e, "invalid signaling message");
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = close_code(frame.as_ref());
                        return match code {
                            Some(CLOSE_FORBIDDEN) => Ended::Fatal("server refused membership (4003)".into()),
                            Some(CLOSE_UNAUTHORIZED) => Ended::Retry { reason: "unauthorized (4001)".into(), auth_failure: true },
                            c => Ended::Retry { reason: format!("closed by server ({})", c.map_or_else(|| "no code".to_owned(), |c| c.to_string())), auth_failure: false },
                        };
                    }
                    // Pings are answered by tungstenite; binary is not ours.
                    Some(Ok(_)) => {}
                }
            }
            m = out_rx.recv() => {
                let Some(msg) = m else { return Ended::DriverGone };
                match msg.to_json() {
                    Ok(text) if text.len() <= MAX_SIGNAL_MESSAGE_LEN => {
                        if let Err(e) = ws.send(Message::text(text)).await {
                            return Ended::Retry { reason: format!("write: {e}"), auth_failure: false };
                        }
                    }
                    _ => { stats.outgoing_dropped.fetch_add(1, Ordering::Relaxed); }
                }
            }
            _ = ping.tick() => {
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Retry { reason: format!("ping: {e}"), auth_failure: false };
                }
            }
            () = tokio::time::sleep_until(idle_at) => {
                let _ = ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Away,
                    reason: "idle".into(),
                })).await;
                return Ended::Retry {
                    reason: if got_hello { "server silent".into() } else { "no hello".into() },
                    auth_failure: false,
                };
            }
        }
    }
}
