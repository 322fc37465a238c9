//! HTTPS served by the node itself: the flow over TLS with a certificate the test makes,
//! HSTS on pages, and a new certificate picked up from the files without a restart.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::harness::{ADMIN, config};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "tokend test CA");
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A leaf for 127.0.0.1 signed by `ca`, written to the two files; returns its DER.
fn issue_leaf(ca: &Ca, cert_file: &std::path::Path, key_file: &std::path::Path) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(key_file, key.serialize_pem()).unwrap();
    std::fs::write(cert_file, leaf.pem()).unwrap();
    leaf.der().to_vec()
}

#[tokio::test]
async fn the_flow_over_tls_with_hsts_and_a_certificate_reloaded_without_restart() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ca = ca();
    let first = issue_leaf(&ca, &cert_file, &key_file);

    let mut c = config(dir.path());
    c.server.listen_addr = "127.0.0.1:0".parse().unwrap();
    c.server.tls = Some(tokend::config::Tls {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        reload_interval_ms: 100,
    });
    let listeners = tokend::Listeners::bind(&c).unwrap();
    let addr = listeners.main_addr().unwrap();
    let base = format!("https://{addr}");
    c.tokens.issuer = base.clone();
    let node = tokend::Node::start(&c, std::sync::Arc::new(tokend::SystemClock))
        .await
        .unwrap();
    let demo = node.demo.as_ref().unwrap();
    let (client_id, client_secret) = (demo.client_id.clone(), demo.client_secret.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let (c, router) = (c.clone(), node.router.clone());
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            tokend::serve(listeners, &c, router, shutdown).await
        })
    };

    let root = reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap();
    // A new client per check: a new TLS handshake, so it sees the certificate served now.
    let client = || {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .tls_info(true)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let token = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let served = token
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec));
    assert_eq!(served.as_deref(), Some(first.as_slice()));
    let body: serde_json::Value = token.json().await.unwrap();
    let data = client()
        .get(format!("{base}/api/data"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 200);

    // Pages of an https issuer send HSTS.
    let page = client()
        .get(format!("{base}/oauth/authorize?client_id=nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    // No plain HTTP on the TLS port, and no plain listener unless configured.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    assert_eq!(
        client()
            .post(format!("{base}/admin/subjects/demo/revoke"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // A renewed certificate in the files is served to new connections, no restart.
    let second = issue_leaf(&ca, &cert_file, &key_file);
    let mut now_served = None;
    for _ in 0..100 {
        let r = client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        now_served = r
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec));
        if now_served.as_deref() == Some(second.as_slice()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(now_served.as_deref(), Some(second.as_slice()));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the server stops within its drain time")
        .unwrap()
        .unwrap();
}
