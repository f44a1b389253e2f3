//! Serving: plain HTTP or TLS (rustls), graceful shutdown, background cleanup.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::audit::{Actor, AuditAction, Entry, Target};
use crate::config::Config;
use crate::db::now_secs;
use crate::listen::{ConnectionLimits, ConnectionSlots, SlotAcceptor};
use crate::state::{AppState, StartupError};

/// Longest time in-flight requests get to finish after a shutdown signal (TLS server).
pub const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the app over plain HTTP/1.1 on `listener` until `shutdown` completes,
/// then finishes in-flight requests. The header-read timeout and connection
/// cap of the configuration apply (see [`crate::listen`]).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits::from_config(&state.config);
    let app = crate::api::app(state);
    crate::listen::serve(app, listener, limits, shutdown).await
}

/// Serves the app over TLS on `listener` until `handle.graceful_shutdown` is called.
pub async fn serve_tls(
    state: AppState,
    listener: std::net::TcpListener,
    cert: &std::path::Path,
    key: &std::path::Path,
    handle: axum_server::Handle<SocketAddr>,
) -> Result<(), StartupError> {
    // Choose the crypto provider explicitly: when both rustls backends are
    // compiled in (feature unification), rustls cannot pick one by itself.
    // An `Err` only means a provider was already installed, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| StartupError::Tls(e.to_string()))?;
    listener.set_nonblocking(true)?;
    let limits = ConnectionLimits::from_config(&state.config);
    let app = crate::api::app(state);
    // The same limits as plain HTTP: the TLS handshake, protocol detection
    // and every request header must each arrive within the header-read
    // timeout, and over the connection cap a socket is closed before the
    // handshake.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .handshake_timeout(limits.header_read_timeout)
        .acceptor(SlotAcceptor(ConnectionSlots::new(&limits)));
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .first_request_timeout(limits.header_read_timeout)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(crate::listen::read_buffer_bytes(&limits))
        .max_headers(limits.max_headers);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    Ok(())
}

/// One pass of housekeeping: end idle rooms, delete old ended rooms, drop
/// expired sessions and idle throttle entries, prune the audit trail
/// (retention and record cap) and note records the budget suppressed.
pub async fn cleanup_once(state: &AppState) -> Result<(), crate::error::ApiError> {
    let now = now_secs();
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let rooms = crate::rooms::store::cleanup(
        &state.db,
        now,
        now.saturating_sub(secs(state.config.room_idle_timeout)),
        now.saturating_sub(secs(state.config.ended_room_retention)),
    )
    .await?;
    for (ids, what) in [(&rooms.ended, "ended_idle"), (&rooms.deleted, "deleted")] {
        for room in ids {
            let entry = Entry::ok(Actor::System, AuditAction::RoomCleanedUp)
                .target(Target::Room(room.clone()))
                .detail(what);
            state.audit.record(entry);
        }
    }
    let count = |v: &Vec<_>| u64::try_from(v.len()).unwrap_or(u64::MAX);
    let (ended, deleted) = (count(&rooms.ended), count(&rooms.deleted));
    let sessions = crate::accounts::purge_sessions(&state.db, now).await?;
    let instant = Instant::now();
    state.limits.login_account.purge(instant);
    state.limits.login_unknown.purge(instant);
    state.limits.room_password.purge(instant);
    state.limits.room_password_ip.purge(instant);
    let suppressed = state.audit.take_suppressed();
    if suppressed > 0 {
        tracing::warn!(suppressed, "audit records over the budget were not written");
        let entry = Entry::ok(Actor::System, AuditAction::AuditSuppressed)
            .detail(format!("{suppressed} records"));
        state.audit.record(entry);
    }
    state.audit.flush(&state.db).await?;
    let audit = &state.config.audit;
    let pruned = crate::audit::store::prune(
        &state.db,
        now.saturating_sub(audit.retention_secs()),
        audit.max_records,
    )
    .await?;
    if ended + deleted + sessions + pruned > 0 {
        tracing::info!(ended, deleted, sessions, audit_pruned = pruned, "cleanup");
    }
    Ok(())
}

/// Runs [`cleanup_once`] every `config.cleanup_interval`.
pub fn spawn_cleanup(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.cleanup_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cleanup_once(&state).await {
                tracing::error!(error = %e, "cleanup failed");
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// `watchparty-signal serve`: opens everything, serves until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<(), StartupError> {
    let state = AppState::new(config).await?;
    let cleanup = spawn_cleanup(state.clone());
    let config = state.config.clone();
    let (audit, db) = (state.audit.clone(), state.db.clone());
    let result = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let listener = std::net::TcpListener::bind(config.bind)?;
            tracing::info!(addr = %listener.local_addr()?, tls = true, "listening");
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(GRACEFUL_SHUTDOWN_TIMEOUT));
            });
            serve_tls(state, listener, cert, key, handle).await
        }
        _ => {
            let listener = TcpListener::bind(config.bind).await?;
            tracing::info!(addr = %listener.local_addr()?, tls = false, "listening");
            serve(state, listener, shutdown_signal())
                .await
                .map_err(StartupError::from)
        }
    };
    cleanup.abort();
    // Queued audit records are written before the process ends.
    if let Err(e) = audit.flush(&db).await {
        tracing::error!(error = %e, "audit records not written at shutdown");
    }
    tracing::info!("stopped");
    result
}
