//! The resource-server SDK's revocation check against Redis: one round trip per token.

use async_trait::async_trait;
use tokend_domain::StateStore;
use tokend_jwt::AccessClaims;
use tokend_verify::{RevocationCheck, revocation_query};

use crate::RedisStore;

#[derive(Debug, Clone)]
pub struct RedisRevocation(pub RedisStore);

#[async_trait]
impl RevocationCheck for RedisRevocation {
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String> {
        self.0
            .is_revoked(&revocation_query(claims))
            .await
            .map_err(|e| e.to_string())
    }
}
