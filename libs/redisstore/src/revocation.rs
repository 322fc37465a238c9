//! The resource-server SDK's revocation check against Redis: one round trip per token.

use async_trait::async_trait;
use tokend_domain::StateStore;
use tokend_domain::model::RevocationQuery;
use tokend_jwt::AccessClaims;
use tokend_verify::RevocationCheck;

use crate::RedisStore;

#[derive(Debug, Clone)]
pub struct RedisRevocation(pub RedisStore);

#[async_trait]
impl RevocationCheck for RedisRevocation {
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String> {
        let query = RevocationQuery {
            jti: claims.jti.clone(),
            sub: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            iat: claims.iat,
        };
        self.0.is_revoked(&query).await.map_err(|e| e.to_string())
    }
}
