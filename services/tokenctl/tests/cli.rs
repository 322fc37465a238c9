//! `tokenctl` against a real token node on loopback: a key rotation, a key revocation, a KEK
//! re-seal and client management end to end, and the exit codes a script relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::sync::Arc;

const ADMIN: &str = "cli-admin-token";

fn tokenctl(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .env("TOKENCTL_URL", url)
        .env("TOKENCTL_TOKEN", token)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_clients_end_to_end_with_script_friendly_exit_codes() {
    tokend_testkit::time_limit(120);
    let dir = tempfile::tempdir().unwrap();
    let mut config = tokend::Config::default();
    config.storage.data_dir = dir.path().to_path_buf();
    config.storage.fsync = false;
    config.server.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.admin.token = Some(ADMIN.into());
    let listeners = tokend::Listeners::bind(&config).unwrap();
    let url = format!("http://{}", listeners.main_addr().unwrap());
    let clock = Arc::new(tokend::SystemClock);
    let node = tokend::Node::start(&config, clock).await.unwrap();
    let router = node.router.clone();
    let served = config.clone();
    tokio::spawn(
        async move { tokend::serve(listeners, &served, router, std::future::pending()).await },
    );

    let run = |args: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || tokenctl(&url, ADMIN, args))
    };
    let jwks = || async {
        reqwest::get(format!("{url}/.well-known/jwks.json"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Keys: list, rotate ahead of the schedule (the next key is published at once), revoke
    // the active one (repeating it is harmless; an unknown key is refused, exit 1).
    let listed = run(&["keys", "list", "--json"]).await.unwrap();
    assert!(listed.status.success(), "{listed:?}");
    // The active key (the newest listed may already be the next one, published ahead of its
    // epoch when the node starts within the publication lead).
    let listed = json(&listed);
    let kid = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "active")
        .and_then(|k| k["kid"].as_str())
        .unwrap()
        .to_owned();
    let rotated = run(&["keys", "rotate", "--json"]).await.unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let next = json(&rotated)["next_kid"].as_str().unwrap().to_owned();
    assert_ne!(next, kid);
    assert!(
        jwks().await.contains(&next),
        "the next key is published at once"
    );
    let (u, k) = (url.clone(), kid.clone());
    let revoked = tokio::task::spawn_blocking(move || tokenctl(&u, ADMIN, &["keys", "revoke", &k]))
        .await
        .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(
        !jwks().await.contains(&kid),
        "the revoked key left the JWKS"
    );
    let (u, k) = (url.clone(), kid.clone());
    let again = tokio::task::spawn_blocking(move || tokenctl(&u, ADMIN, &["keys", "revoke", &k]))
        .await
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    let unknown = run(&["keys", "revoke", "no-such-key"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no signing key"));

    // KEK: a re-seal under the node's KEK, which the key listing then names.
    let resealed = run(&["kek", "rotate", "--json"]).await.unwrap();
    assert!(resealed.status.success(), "{resealed:?}");
    let listed = json(&run(&["keys", "list", "--json"]).await.unwrap());
    assert_eq!(json(&resealed)["kek"], listed["kek"]);
    assert!(json(&resealed)["resealed_keys"].as_u64().unwrap() >= 1);

    // Clients: register (the secret printed once), then list.
    let registered = run(&[
        "clients",
        "register",
        "--id",
        "billing",
        "--name",
        "Billing",
        "--grant",
        "client_credentials",
        "--scope",
        "read",
        "--audience",
        "api",
        "--json",
    ])
    .await
    .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    assert!(
        json(&registered)["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() > 20)
    );
    let clients = run(&["clients", "list"]).await.unwrap();
    assert!(String::from_utf8_lossy(&clients.stdout).contains("billing  Billing"));

    // A wrong admin token is refused (1); an unreachable node is unavailable (3); a usage
    // error is 2.
    let (u,) = (url.clone(),);
    let wrong = tokio::task::spawn_blocking(move || tokenctl(&u, "wrong", &["keys", "list"]))
        .await
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    let gone =
        tokio::task::spawn_blocking(|| tokenctl("http://127.0.0.1:9", ADMIN, &["keys", "list"]))
            .await
            .unwrap();
    assert_eq!(gone.status.code(), Some(3));
    let usage = run(&["keys", "frobnicate"]).await.unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
