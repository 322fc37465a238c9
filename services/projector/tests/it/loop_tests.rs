//! Issue on one node, validate on another; revocation propagation with figures; subject-wide
//! revocation; the remote resource server.

use crate::LIMIT_SECS;
use std::time::{Duration, Instant};

use tokend_testkit::{kafka, redis};

use crate::cluster::{Cluster, caught_up, eventually};

async fn cluster(nodes: usize) -> (Cluster, tokio::task::JoinHandle<()>) {
    let (k, r) = (kafka().await, redis().await);
    let c = Cluster::start(&k.bootstrap, &r.url, nodes).await;
    let projector = c.projecting().await;
    (c, projector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_on_a_validate_and_introspect_on_b() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    issue_on_0_validate_and_refresh_on_1(&c).await;
}

pub async fn issue_on_0_validate_and_refresh_on_1(c: &Cluster) {
    let token = c.client_credentials(0).await;
    assert_eq!(c.data(1, &token).await, 200);
    let (status, body) = c.form(1, "/oauth/introspect", &[("token", &token)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"].as_str(), Some(c.client_id.as_str()));

    // A refresh token issued on A is redeemed on B once projected.
    let t = c.password_grant(0).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), || async {
        c.form(1, "/oauth/introspect", &[("token", &rt)]).await.1["active"] == true
    })
    .await;
    let (status, body) = c
        .form(
            1,
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_a_is_rejected_on_b_within_a_bound() {
    tokend_testkit::time_limit(LIMIT_SECS);
    const N: usize = 300;
    let (c, _p) = cluster(2).await;
    let mut tokens = Vec::with_capacity(N);
    for _ in 0..N {
        tokens.push(c.client_credentials(0).await);
    }
    for t in &tokens[..1] {
        assert_eq!(c.data(1, t).await, 200);
    }
    let mut after_response = Vec::with_capacity(N);
    let mut after_request = Vec::with_capacity(N);
    for t in &tokens {
        let start = Instant::now();
        let (status, _) = c.form(0, "/oauth/revoke", &[("token", t)]).await;
        assert_eq!(status, 200);
        let answered = Instant::now();
        let deadline = answered + Duration::from_secs(5);
        while c.data(1, t).await != 401 {
            assert!(
                Instant::now() < deadline,
                "node B still accepts a revoked token after 5 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        after_response.push(answered.elapsed());
        after_request.push(start.elapsed());
    }
    after_response.sort_unstable();
    after_request.sort_unstable();
    println!(
        "revocation propagation over {N} revocations (node A revoke -> node B rejects): \
         after the revoke response p50 {:?} p99 {:?} max {:?}; from the revoke request p50 {:?} p99 {:?}",
        percentile(&after_response, 0.5),
        percentile(&after_response, 0.99),
        after_response[N - 1],
        percentile(&after_request, 0.5),
        percentile(&after_request, 0.99),
    );
    assert!(percentile(&after_response, 0.99) < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_revocation_is_rejected_everywhere_when_it_answers() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    let sdk = strict_revocation_everywhere(&c, 20).await;
    let mirror = sdk.revocation_mirror().unwrap();
    assert_eq!(mirror.step_asides(), 0);
    assert!(
        mirror.fallbacks() <= 4,
        "{} of 40 checks went to Redis",
        mirror.fallbacks()
    );
}

/// `n` tokens revoked on node 0 with `consistency=applied`: once answered, node 1 and a
/// resource server's SDK (with its own revocation mirror, besides the nodes') reject each.
/// Returns the SDK's store.
pub async fn strict_revocation_everywhere(c: &Cluster, n: usize) -> tokend_redis::RedisStore {
    let store = c.store().await.with_revocation_mirror(1000);
    let sdk = tokend_verify::Verifier::new(
        std::sync::Arc::new(
            tokend_verify::RemoteKeys::discover(&c.nodes[0], Default::default())
                .await
                .unwrap(),
        ),
        std::sync::Arc::new(tokend_redis::RedisRevocation(store.clone())),
        tokend_jwt::VerifyPolicy {
            issuer: c.nodes[0].clone(),
            audiences: Vec::new(),
            leeway_secs: 0,
        },
        std::sync::Arc::new(tokend_verify::SystemClock),
    );
    let mirror = store.revocation_mirror().unwrap();
    eventually(Duration::from_secs(5), || async { mirror.is_current() }).await;
    for _ in 0..n {
        let t = c.client_credentials(0).await;
        assert!(sdk.verify(&t).await.is_ok());
        let (status, body) = c
            .form(
                0,
                "/oauth/revoke",
                &[("token", &t), ("consistency", "applied")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            c.data(1, &t).await,
            401,
            "no validator accepts it after the answer"
        );
        assert!(sdk.verify(&t).await.is_err(), "nor the SDK");
    }
    // The SDK answered from memory (2n checks; a stall of a second on a loaded machine may
    // send a few to Redis, which is correct too).
    assert!(mirror.len() >= n);
    let (status, body) = c
        .form(
            0,
            "/oauth/revoke",
            &[("token", "x"), ("consistency", "eventually")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    store
}

/// Client-wide revocation is one watermark, exact to the millisecond, whatever the number of
/// tokens and wherever their families sit: every token issued before it is rejected on every
/// node at once, no family minted before it can refresh, and a grant begun after it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_revoke_covers_every_token_on_every_partition_and_stops_refresh() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    let c = std::sync::Arc::new(c);
    let issued = futures::future::join_all((0..200).map(|i| {
        let c = c.clone();
        async move { c.client_credentials(i % 2).await }
    }))
    .await;
    let sessions: Vec<serde_json::Value> = futures::future::join_all((0..10).map(|i| {
        let c = c.clone();
        async move { c.password_grant(i % 2).await }
    }))
    .await;
    // No pause: the revocation lands in the same second as the last issues.
    let path = format!("/admin/clients/{}/revoke-tokens", c.client_id);
    assert_eq!(c.admin(1, &path).await, 204);
    let store = c.store().await;
    caught_up(&c, &store).await;
    let access: Vec<String> = sessions
        .iter()
        .map(|s| s["access_token"].as_str().unwrap().to_owned())
        .chain(issued)
        .collect();
    for node in 0..2 {
        for t in &access {
            assert_eq!(
                c.data(node, t).await,
                401,
                "issued before the client revocation"
            );
        }
    }
    for s in &sessions {
        let rt = s["refresh_token"].as_str().unwrap();
        let (status, body) = c
            .form(
                1,
                "/oauth/token",
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    let after = c.client_credentials(0).await;
    assert_eq!(
        c.data(1, &after).await,
        200,
        "a grant begun after the revocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_revoke_rejects_every_token_on_every_node() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    let mut tokens = Vec::new();
    for i in [0, 0, 1, 1, 0] {
        tokens.push(
            c.password_grant(i).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let other = c.client_credentials(1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.admin(1, "/admin/subjects/demo/revoke").await, 204);
    for node in 0..2 {
        for t in &tokens {
            eventually(Duration::from_secs(5), || async {
                c.data(node, t).await == 401
            })
            .await;
        }
        assert_eq!(
            c.data(node, &other).await,
            200,
            "other subjects keep their tokens"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_resource_server_verifies_with_jwks_and_redis() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(1).await;
    let settings = tokend_resource_server::Settings {
        issuer: c.nodes[0].clone(),
        audience: "api".into(),
        redis_url: c.redis.url.clone(),
        redis_cluster: c.redis.cluster,
        redis_key_prefix: c.redis.key_prefix.clone(),
        revocation_mirror: 1000,
        verified_tokens: 100,
    };
    let app = tokend_resource_server::ResourceServer::connect(&settings)
        .await
        .unwrap()
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/data", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let token = c.client_credentials(0).await;
    let get = |t: String| {
        let (http, url) = (c.http.clone(), url.clone());
        async move { http.get(&url).bearer_auth(t).send().await.unwrap() }
    };
    let ok = get(token.clone()).await;
    assert_eq!(ok.status().as_u16(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["sub"].as_str(), Some(c.client_id.as_str()));
    assert_eq!(get("garbage".into()).await.status().as_u16(), 401);

    c.form(0, "/oauth/revoke", &[("token", &token)]).await;
    eventually(Duration::from_secs(5), || async {
        get(token.clone()).await.status().as_u16() == 401
    })
    .await;
    let denied = get(token.clone()).await;
    let challenge = denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer error=\"invalid_token\""));
}

/// The demo client's authorization request (PKCE S256 with RFC 7636's example verifier).
const CODE_QUERY: &str = "response_type=code&client_id=demo-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A8081%2Fcallback&scope=read&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

/// The token request that redeems `code` from [`CODE_QUERY`].
fn redeem_form(code: &str) -> [(&'static str, &str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:8081/callback"),
        (
            "code_verifier",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
    ]
}

/// Signs in and approves on node `i` with plain HTTP (cookies by hand); returns the code.
async fn code_from(c: &Cluster, i: usize, query: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = &c.nodes[i];
    let mut jar: Vec<String> = Vec::new();
    let field = |body: &str, name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = body.find(&marker).unwrap() + marker.len();
        let end = body[start..].find('"').unwrap() + start;
        body[start..end]
            .replace("&amp;", "&")
            .replace("&#x2f;", "/")
    };
    let keep = |jar: &mut Vec<String>, resp: &reqwest::Response| {
        for v in resp.headers().get_all("set-cookie") {
            jar.push(v.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
    };
    let resp = http
        .get(format!("{base}/oauth/authorize?{query}"))
        .send()
        .await
        .unwrap();
    keep(&mut jar, &resp);
    let login = resp.text().await.unwrap();
    let resp = http
        .post(format!("{base}/oauth/authorize/login"))
        .header("cookie", jar.join("; "))
        .form(&[
            ("csrf", field(&login, "csrf")),
            ("request", field(&login, "request")),
            ("username", "demo".into()),
            ("password", c.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    keep(&mut jar, &resp);
    let consent = http
        .get(format!("{base}/oauth/authorize?{query}"))
        .header("cookie", jar.join("; "))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/oauth/authorize/consent"))
        .header("cookie", jar.join("; "))
        .form(&[
            ("csrf", field(&consent, "csrf")),
            ("request", field(&consent, "request")),
            ("decision", "approve".into()),
        ])
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let query = location.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_issued_on_a_is_redeemed_on_b_once() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    let code = code_from(&c, 0, CODE_QUERY).await;
    let form = redeem_form(&code);
    let redeem = || c.form(1, "/oauth/token", &form);
    let (status, body) = redeem().await;
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(c.data(0, &at).await, 200);
    let (status, body) = redeem().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    eventually(Duration::from_secs(5), || async {
        c.data(0, &at).await == 401
    })
    .await;
}

/// One refresh token (or code) presented on two nodes at once: the log decides, exactly one
/// presentation gets tokens, the other `invalid_grant`, and the winner's grant lives on
/// (RFC 6749 4.1.2, RFC 9700 rotation; a lost race within the grace is not theft).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_refresh_token_or_code_have_exactly_one_winner() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    for round in 0..8 {
        let session = c.password_grant(round % 2).await;
        let rt = session["refresh_token"].as_str().unwrap().to_owned();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        let (a, b) = tokio::join!(
            c.form(0, "/oauth/token", &form),
            c.form(1, "/oauth/token", &form)
        );
        let results = [a, b];
        let winners: Vec<&serde_json::Value> = results
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = results.iter().find(|(s, _)| *s != 200).unwrap();
        assert_eq!(
            loser.1["error"], "invalid_grant",
            "round {round}: {loser:?}"
        );
        let won = winners[0]["access_token"].as_str().unwrap();
        for node in 0..2 {
            assert_eq!(
                c.data(node, won).await,
                200,
                "the winner's token is good everywhere"
            );
        }
        let next = winners[0]["refresh_token"].as_str().unwrap();
        let (status, body) = c
            .form(
                round % 2,
                "/oauth/token",
                &[("grant_type", "refresh_token"), ("refresh_token", next)],
            )
            .await;
        assert_eq!(status, 200, "the winner's grant lives on: {body}");
    }

    for round in 0..4 {
        let code = code_from(&c, round % 2, CODE_QUERY).await;
        let form = redeem_form(&code);
        let (a, b) = tokio::join!(
            c.form(0, "/oauth/token", &form),
            c.form(1, "/oauth/token", &form)
        );
        let statuses = [a.0, b.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "code round {round}: {a:?} {b:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_have_exactly_one_winner() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(2).await;
    for round in 0..4 {
        let id = format!("dup-client-{round}");
        let client = |name: &str| {
            serde_json::json!({"client_id": id, "name": name, "grant_types": ["client_credentials"],
                "scopes": ["read"], "audiences": ["api"]})
        };
        let (a, b) = tokio::join!(
            c.admin_json(0, "/admin/clients", client("on node 0")),
            c.admin_json(1, "/admin/clients", client("on node 1"))
        );
        let results = [a, b];
        let winners: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().any(|(s, _)| *s == 409), "{results:?}");
        // The secret the winner was given is the one that works, on every node.
        let secret = winners[0].1["client_secret"].as_str().unwrap();
        for node in 0..2 {
            let resp = reqwest::Client::new()
                .post(format!("{}/oauth/token", c.nodes[node]))
                .basic_auth(&id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "round {round}, node {node}");
        }

        let user = format!("dup-user-{round}");
        let (a, b) = tokio::join!(
            c.admin_json(
                0,
                "/admin/users",
                serde_json::json!({"username": user, "password": "password-zero"})
            ),
            c.admin_json(
                1,
                "/admin/users",
                serde_json::json!({"username": user, "password": "password-one!"})
            )
        );
        let statuses = [a.0, b.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert!(statuses.contains(&409), "{statuses:?}");
        let password = if a.0 == 201 {
            "password-zero"
        } else {
            "password-one!"
        };
        let (status, body) = c
            .form(
                1,
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("username", &user),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(status, 200, "the winner's password works: {body}");
    }
}

/// A resource server stopped as Kubernetes stops it (SIGTERM) gives up its revocation
/// mirror's lease at once, so strict revocations stop waiting for it (left standing, a
/// lease keeps them waiting until it lapses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_server_stopped_with_sigterm_gives_up_its_mirror_lease() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (c, _p) = cluster(1).await;
    let leases = format!(
        "{}:mirrors:leases",
        tokend_redis::base_key(&c.redis.key_prefix)
    );
    let mut con = ::redis::Client::open(c.redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut held = async || -> usize {
        ::redis::cmd("HLEN")
            .arg(&leases)
            .query_async(&mut con)
            .await
            .unwrap()
    };
    // The nodes' own mirrors hold leases too: counted once they all have theirs.
    let started = Instant::now();
    while held().await < c.nodes.len() {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = held().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("RS_ISSUER", c.nodes[0].clone()),
        ("RS_REDIS_URL", c.redis.url.clone()),
        ("RS_REDIS_KEY_PREFIX", c.redis.key_prefix.clone()),
        (
            "RS_LISTEN_ADDR",
            format!("127.0.0.1:{}", tokend_testkit::free_port()),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let mut server = tokend_testkit::Service::start(
        &tokend_testkit::sibling_binary("resource-server"),
        &env,
        dir.path().join("resource-server.log"),
    );
    let started = Instant::now();
    while held().await <= before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the resource server's mirror takes a lease: {:?}",
            server.exited()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
    let stopping = Instant::now();
    while server.exited().is_none() {
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "stops within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_in = stopping.elapsed();
    assert_eq!(held().await, before, "its lease is gone with it");
    println!("stopped {stopped_in:?} after SIGTERM, its lease given up");
}
