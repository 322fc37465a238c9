//! Listening: plain HTTP on `server.listen_addr`, or HTTPS there (rustls; the certificate and
//! key files are reloaded when they change, without a restart) plus, only when configured, a
//! plain-HTTP listener next to it. Terminating TLS at a load balancer in front of plain
//! listeners stays supported: leave `server.tls` unset.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, Tls};

/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// The sockets a node serves on, bound before it starts (so a caller can learn the ports).
pub struct Listeners {
    main: std::net::TcpListener,
    plain: Option<std::net::TcpListener>,
}

fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let l =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Listeners {
    pub fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            main: bind(config.server.listen_addr)?,
            plain: config.server.plain_listen_addr.map(bind).transpose()?,
        })
    }

    pub fn main_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.main.local_addr()?)
    }
}

/// Serves `router` until `shutdown` resolves, then lets open connections finish (bounded).
pub async fn serve(
    listeners: Listeners,
    config: &Config,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The peer address feeds the per-address rate limit on password checks.
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
            handle.graceful_shutdown(Some(DRAIN));
        });
    }
    let until_stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let plain = listeners.plain.map(|l| {
        let (app, rx) = (app.clone(), stopped.clone());
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(l)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(until_stopped(rx))
                .await
        })
    });
    let Some(tls) = &config.server.tls else {
        let listener = tokio::net::TcpListener::from_std(listeners.main)?;
        let served =
            axum::serve(listener, app).with_graceful_shutdown(until_stopped(stopped.clone()));
        // Graceful, but bounded: a connection that never finishes does not hold shutdown.
        let drained = async move {
            until_stopped(stopped).await;
            tokio::time::sleep(DRAIN).await;
        };
        tokio::select! {
            result = served => result?,
            () = drained => tracing::warn!(limit = ?DRAIN, "Connections still open at shutdown were closed."),
        }
        return Ok(());
    };
    let rustls = RustlsConfig::from_config(load(tls)?);
    let reloader = tokio::spawn(reload(rustls.clone(), tls.clone()));
    let served = axum_server::from_tcp_rustls(listeners.main, rustls)?
        .handle(handle)
        .serve(app)
        .await;
    reloader.abort();
    if let Some(plain) = plain {
        let _ = tokio::time::timeout(DRAIN, plain).await;
    }
    Ok(served?)
}

/// The certificate chain and key as a rustls server configuration (ring, TLS 1.2 and 1.3).
fn load(tls: &Tls) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(Iterator::collect)
        .with_context(|| format!("server.tls.cert_file {}", tls.cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls.cert_file {} holds no certificate",
        tls.cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .with_context(|| format!("server.tls.key_file {}", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Polls the files and swaps in a new certificate when either changes; new connections get
/// it, open ones keep theirs. A pair that does not load keeps the old one (with a warning).
async fn reload(rustls: RustlsConfig, tls: Tls) {
    let stamp = |tls: &Tls| (modified(&tls.cert_file), modified(&tls.key_file));
    let mut seen = stamp(&tls);
    let mut every = tokio::time::interval(Duration::from_millis(tls.reload_interval_ms.max(100)));
    loop {
        every.tick().await;
        let now = stamp(&tls);
        if now == seen {
            continue;
        }
        match load(&tls) {
            Ok(config) => {
                rustls.reload_from_config(config);
                seen = now;
                tracing::info!("Reloaded the TLS certificate.");
            }
            // Perhaps half written: try again at the next tick, serving the old one meanwhile.
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "TLS certificate not reloaded.")
            }
        }
    }
}
