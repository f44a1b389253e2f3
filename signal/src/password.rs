//! Argon2id password hashing off the async runtime.
//!
//! Hashing runs in `spawn_blocking` behind a semaphore (each hash holds
//! ~`memory_kib` of RAM); a caller that cannot get a permit within
//! [`HASH_QUEUE_TIMEOUT`] gets [`ApiError::Busy`]. Verification against an
//! unknown account uses a dummy hash with the same parameters so that both
//! paths cost the same.

use std::sync::Arc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Cost;
use crate::error::ApiError;

/// Longest wait for a hashing slot before answering 503 `busy`.
pub const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasherPool {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasherPool")
            .field("available_permits", &self.permits.available_permits())
            .finish()
    }
}

/// Errors building the hasher.
#[derive(Debug, thiserror::Error)]
#[error("argon2: {0}")]
pub struct HashSetupError(String);

impl PasswordHasherPool {
    /// Builds a pool with the given cost and concurrency; computes the dummy hash.
    pub fn new(cost: Argon2Cost, concurrency: usize) -> Result<Self, HashSetupError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| HashSetupError(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password(b"watchparty dummy password for unknown accounts")
            .map_err(|e| HashSetupError(e.to_string()))?
            .to_string();
        Ok(PasswordHasherPool {
            argon2,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(HASH_QUEUE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(ApiError::internal)?;
        let argon2 = self.argon2.clone();
        let out = tokio::task::spawn_blocking(move || {
            let out = f(&argon2);
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(out)
    }

    /// Hashes a password; returns the PHC string (`$argon2id$v=19$m=…`).
    pub async fn hash(&self, password: &[u8]) -> Result<String, ApiError> {
        let password = password.to_vec();
        self.run_blocking(move |a| {
            a.hash_password(&password)
                .map(|h| h.to_string())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?
    }

    /// Verifies `password` against `stored` (a PHC string). With `stored = None`
    /// the dummy hash is checked instead and the result is always `false`.
    pub async fn verify(&self, password: &[u8], stored: Option<&str>) -> Result<bool, ApiError> {
        let (phc, real) = match stored {
            Some(s) => (s.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let password = password.to_vec();
        self.run_blocking(move |a| {
            let ok = match PasswordHash::new(&phc) {
                Ok(parsed) => a.verify_password(&password, &parsed).is_ok(),
                Err(_) => false,
            };
            ok && real
        })
        .await
    }

    /// Hashes synchronously (admin CLI; no runtime needed).
    pub fn hash_blocking(&self, password: &[u8]) -> Result<String, HashSetupError> {
        self.argon2
            .hash_password(password)
            .map(|h| h.to_string())
            .map_err(|e| HashSetupError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn production_parameters_produce_owasp_phc_string() {
        let pool = PasswordHasherPool::new(Argon2Cost::default(), 1).unwrap();
        let phc = pool.hash(b"correct horse battery").await.unwrap();
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected PHC prefix: {phc}"
        );
        assert!(
            pool.verify(b"correct horse battery", Some(&phc))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify(b"wrong horse battery", Some(&phc))
                .await
                .unwrap()
        );
        assert!(!pool.verify(b"correct horse battery", None).await.unwrap());
        assert!(!pool.verify(b"x", Some("not a phc string")).await.unwrap());
    }
}
