//! Unit tests of the application layer over the in-memory store and an in-memory log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokend_domain::{Clock, EventLog, LogError, LogPosition, ManualClock};
use tokend_events::{Decoded, Envelope, Event};
use tokend_jwt::{KeyPair, KeyState, Keyring, SharedKeyring, VerifyPolicy};
use tokend_memstore::MemoryStore;
use zeroize::Zeroizing;

use crate::secrets::{Secret, SecretHasher};
use crate::*;

/// A log in a vector that projects each event at once; it can be switched off, or keep
/// events from the projection (a projector that lags).
#[derive(Default)]
struct MemLog {
    events: Mutex<Vec<Event>>,
    store: Arc<MemoryStore>,
    down: AtomicBool,
    unprojected: AtomicBool,
}

#[async_trait]
impl EventLog for MemLog {
    async fn append(&self, env: &Envelope, _key: &str) -> Result<LogPosition, LogError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LogError::Unavailable("down".into()));
        }
        let Ok(Decoded::Known(event)) = env.decode() else {
            return Err(LogError::Unavailable("undecodable".into()));
        };
        let mut events = self.events.lock().unwrap();
        let pos = LogPosition {
            partition: 0,
            offset: events.len() as u64,
        };
        if !self.unprojected.load(Ordering::SeqCst) {
            self.store.apply_now(pos, Some(&event));
        }
        events.push(event);
        Ok(pos)
    }
    async fn ping(&self) -> Result<(), LogError> {
        Ok(())
    }
}

struct Harness {
    svc: TokenService,
    log: Arc<MemLog>,
    clock: Arc<ManualClock>,
    keys: Arc<SharedKeyring>,
    app: ClientCredentials,
}

impl Harness {
    async fn new() -> Self {
        let store = Arc::new(MemoryStore::default());
        let log = Arc::new(MemLog {
            store: store.clone(),
            ..MemLog::default()
        });
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let keys = Arc::new(SharedKeyring::new(Keyring::new(vec![KeyPair::generate(
            KeyState::Active,
            0,
        )])));
        let svc = TokenService::new(
            log.clone(),
            store,
            keys.clone(),
            clock.clone(),
            SecretHasher::new(Zeroizing::new([3; 32])),
            Settings {
                issuer: "http://issuer.test".into(),
                access_ttl_secs: 600,
                refresh_ttl_secs: 3600,
                password_grant: true,
                leeway_secs: 0,
                login_client_id: Some("app".into()),
                revocation_consistency: Consistency::Applied,
                applied_timeout: std::time::Duration::from_secs(1),
                code_ttl_secs: 60,
                refresh_reuse_grace_secs: 10,
                password_checks: 2,
                password_check_queue: 8,
                verified_tokens: tokend_jwt::VERIFIED_TOKENS_DEFAULT,
            },
        );
        let reg = svc
            .register_client(NewClient {
                client_id: Some("app".into()),
                name: "App".into(),
                grant_types: GRANT_TYPES.iter().map(|g| (*g).to_owned()).collect(),
                scopes: vec!["read".into(), "write".into()],
                default_scopes: vec!["read".into()],
                audiences: vec!["api".into()],
                redirect_uris: vec!["http://app.test/cb".into()],
                public: false,
            })
            .await
            .unwrap();
        svc.create_user(NewUser {
            username: "alice".into(),
            password: Secret::new("wonderland"),
        })
        .await
        .unwrap();
        let app = ClientCredentials {
            client_id: "app".into(),
            secret: reg.client_secret.map(Secret::new),
            via_basic: true,
        };
        Self {
            svc,
            log,
            clock,
            keys,
            app,
        }
    }

    fn events(&self) -> usize {
        self.log.events.lock().unwrap().len()
    }

    async fn password(&self) -> TokenResponse {
        self.svc
            .token(&self.app, req(password_grant(), None))
            .await
            .unwrap()
    }

    async fn active(&self, token: &str) -> bool {
        self.svc
            .introspect(&self.app, &Secret::new(token))
            .await
            .unwrap()
            .active
    }

    async fn refresh(&self, token: &str) -> Result<TokenResponse> {
        let grant = Grant::RefreshToken {
            refresh_token: Secret::new(token),
        };
        self.svc.token(&self.app, req(grant, None)).await
    }
}

fn req(grant: Grant, scope: Option<&str>) -> TokenRequest {
    TokenRequest {
        grant,
        scope: scope.map(Into::into),
        audience: None,
    }
}

fn password_grant() -> Grant {
    Grant::Password {
        username: "alice".into(),
        password: Secret::new("wonderland"),
    }
}

#[tokio::test]
async fn client_credentials_issues_a_verifiable_token_with_default_scope() {
    let h = Harness::new().await;
    let before = h.events();
    let resp = h
        .svc
        .token(&h.app, req(Grant::ClientCredentials, None))
        .await
        .unwrap();
    assert_eq!(
        h.events(),
        before + 1,
        "TokenIssued appended before answering"
    );
    assert_eq!(resp.scope, "read");
    assert!(resp.refresh_token.is_none());
    let policy = VerifyPolicy {
        issuer: "http://issuer.test".into(),
        audiences: vec!["api".into()],
        leeway_secs: 0,
    };
    let claims = policy
        .verify(&*h.keys.read(), &resp.access_token, h.clock.now_secs())
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        ("app", "app")
    );
    assert_eq!(claims.exp - claims.iat, 600);
}

#[tokio::test]
async fn rejected_requests_append_nothing() {
    let h = Harness::new().await;
    let before = h.events();
    let more = h
        .svc
        .token(&h.app, req(Grant::ClientCredentials, Some("read admin")))
        .await;
    assert!(matches!(more, Err(OAuthError::InvalidScope(_))));
    let mut wrong = h.app.clone();
    wrong.secret = Some(Secret::new("nope"));
    let bad = h
        .svc
        .token(&wrong, req(Grant::ClientCredentials, None))
        .await;
    assert_eq!(bad.err(), Some(OAuthError::InvalidClient { basic: true }));
    let bad_pw = Grant::Password {
        username: "alice".into(),
        password: Secret::new("guess"),
    };
    assert!(matches!(
        h.svc.token(&h.app, req(bad_pw, None)).await,
        Err(OAuthError::InvalidGrant(_))
    ));
    assert!(h.refresh("unknown").await.is_err());
    assert_eq!(h.events(), before);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let h = Harness::new().await;
    let first = h.password().await;
    let r1 = first.refresh_token.clone().unwrap();
    let second = h.refresh(&r1).await.unwrap();
    let r2 = second.refresh_token.clone().unwrap();
    assert_ne!(r1, r2);
    assert!(h.active(&second.access_token).await);

    h.clock.advance_secs(10); // the grace (10 s) is over: a second use is theft
    let reuse = h.refresh(&r1).await;
    assert!(matches!(reuse, Err(OAuthError::InvalidGrant(_))));
    assert!(!h.active(&first.access_token).await);
    assert!(!h.active(&second.access_token).await);
    assert!(
        h.refresh(&r2).await.is_err(),
        "the family's newest token dies too"
    );
}

#[tokio::test]
async fn revoking_access_and_refresh_tokens() {
    let h = Harness::new().await;
    let t = h.password().await;
    h.svc
        .revoke(&h.app, &Secret::new(&t.access_token), None, None)
        .await
        .unwrap();
    assert!(!h.active(&t.access_token).await);
    let n = h.events();
    // Revoking again, or revoking garbage, succeeds and appends nothing.
    h.svc
        .revoke(
            &h.app,
            &Secret::new(&t.access_token),
            Some("access_token"),
            None,
        )
        .await
        .unwrap();
    h.svc
        .revoke(&h.app, &Secret::new("garbage"), None, None)
        .await
        .unwrap();
    assert_eq!(h.events(), n);

    let r = t.refresh_token.unwrap();
    assert!(h.active(&r).await);
    h.svc
        .revoke(&h.app, &Secret::new(&r), Some("refresh_token"), None)
        .await
        .unwrap();
    assert!(!h.active(&r).await);
    assert!(h.refresh(&r).await.is_err());
}

#[tokio::test]
async fn subject_revoke_logs_out_everywhere_but_allows_new_logins() {
    let h = Harness::new().await;
    let a = h.password().await;
    let b = h.password().await;
    h.svc.revoke_subject("alice").await.unwrap();
    assert!(!h.active(&a.access_token).await);
    assert!(!h.active(&b.access_token).await);
    assert!(
        h.refresh(b.refresh_token.as_deref().unwrap())
            .await
            .is_err()
    );
    // A login in the very millisecond of the revocation counts as before it (the watermark
    // is inclusive); the test clock stands still, so move it on by one millisecond.
    h.clock.advance_ms(1);
    let c = h.password().await;
    assert!(h.active(&c.access_token).await);
}

#[tokio::test]
async fn a_user_and_a_client_of_the_same_name_do_not_share_revocation() {
    let h = Harness::new().await;
    // A user named like the client "app": its client-credentials tokens have `sub` "app".
    h.svc
        .create_user(NewUser {
            username: "app".into(),
            password: Secret::new("same-name"),
        })
        .await
        .unwrap();
    let user_grant = Grant::Password {
        username: "app".into(),
        password: Secret::new("same-name"),
    };
    let user_token = h.svc.token(&h.app, req(user_grant, None)).await.unwrap();
    let client_token = h
        .svc
        .token(&h.app, req(Grant::ClientCredentials, None))
        .await
        .unwrap();
    h.svc.revoke_subject("app").await.unwrap();
    assert!(!h.active(&user_token.access_token).await);
    assert!(
        h.active(&client_token.access_token).await,
        "revoking the user \"app\" must not touch the client \"app\"'s own tokens"
    );

    // The reverse: revoking client "alice"'s tokens leaves the user alice's alone.
    let alice = h.password().await;
    h.svc
        .register_client(NewClient {
            client_id: Some("alice".into()),
            name: "Alice's service".into(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["read".into()],
            default_scopes: vec!["read".into()],
            audiences: vec!["api".into()],
            redirect_uris: vec![],
            public: false,
        })
        .await
        .unwrap();
    h.svc.revoke_client_tokens("alice").await.unwrap();
    assert!(h.active(&alice.access_token).await);
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    let h = Harness::new().await;
    let t = h.password().await;
    h.clock.advance_secs(601);
    assert!(!h.active(&t.access_token).await);
    assert!(h.refresh(t.refresh_token.as_deref().unwrap()).await.is_ok());
    h.clock.advance_secs(3600);
    let expired = h.refresh(t.refresh_token.as_deref().unwrap()).await;
    assert!(matches!(expired, Err(OAuthError::InvalidGrant(_))));
}

#[tokio::test]
async fn an_unavailable_log_means_no_token() {
    let h = Harness::new().await;
    h.log.down.store(true, Ordering::SeqCst);
    let r = h
        .svc
        .token(&h.app, req(Grant::ClientCredentials, None))
        .await;
    assert_eq!(r.err(), Some(OAuthError::Unavailable));
}

#[tokio::test]
async fn disabled_clients_and_users_lose_their_tokens() {
    let h = Harness::new().await;
    let t = h.password().await;
    h.svc.disable_user("alice").await.unwrap();
    assert!(!h.active(&t.access_token).await);
    assert!(matches!(
        h.svc.token(&h.app, req(password_grant(), None)).await,
        Err(OAuthError::InvalidGrant(_))
    ));
    h.svc.disable_client("app").await.unwrap();
    let r = h
        .svc
        .token(&h.app, req(Grant::ClientCredentials, None))
        .await;
    assert_eq!(r.err(), Some(OAuthError::InvalidClient { basic: true }));
    assert_eq!(
        h.svc.disable_client("ghost").await.err().map(|e| e.code()),
        Some("not_found")
    );
}

#[tokio::test]
async fn disabling_waits_for_the_projection_like_other_revocations() {
    let h = Harness::new().await;
    h.log.unprojected.store(true, Ordering::SeqCst);
    // Strict (applied) consistency: an answer means every node rejects the tokens; a
    // projection that does not apply the event in time is a 503, never a premature 204.
    assert_eq!(
        h.svc.disable_user("alice").await.err(),
        Some(OAuthError::Unavailable)
    );
    assert_eq!(
        h.svc.disable_client("app").await.err(),
        Some(OAuthError::Unavailable)
    );
}

#[tokio::test]
async fn admin_input_is_validated() {
    let h = Harness::new().await;
    let dup = h
        .svc
        .create_user(NewUser {
            username: "alice".into(),
            password: Secret::new("another one"),
        })
        .await;
    assert!(matches!(dup, Err(OAuthError::Conflict(_))));
    let short = h
        .svc
        .create_user(NewUser {
            username: "bob".into(),
            password: Secret::new("short"),
        })
        .await;
    assert!(matches!(short, Err(OAuthError::InvalidRequest(_))));
    let bad = h
        .svc
        .register_client(NewClient {
            client_id: Some("x".into()),
            name: "X".into(),
            grant_types: vec!["implicit".into()],
            scopes: vec![],
            default_scopes: vec![],
            audiences: vec!["api".into()],
            redirect_uris: vec![],
            public: false,
        })
        .await;
    assert!(matches!(bad, Err(OAuthError::InvalidRequest(_))));
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
}
