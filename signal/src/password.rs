//! Argon2id password hashing off the async runtime.
//!
//! Hashing runs in `spawn_blocking` behind a semaphore of
//! [`HashQueueLimits::concurrency`] permits (each hash holds ~`memory_kib` of
//! RAM). A caller that cannot get a permit within [`HashQueueLimits::timeout`]
//! gets [`ApiError::Busy`] (503 `busy`), and at most
//! [`HashQueueLimits::max_waiters`] callers wait at once — any further caller
//! gets `busy` immediately, so a flood of logins costs neither unbounded
//! memory nor unbounded waiting requests. Verification against an unknown
//! account uses a dummy hash with the same parameters so that both paths cost
//! the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::{
    Argon2Cost, Config, DEFAULT_HASH_CONCURRENCY, DEFAULT_HASH_QUEUE_MAX_WAITERS,
    DEFAULT_HASH_QUEUE_TIMEOUT,
};
use crate::error::ApiError;

/// Bounds of the hashing queue (from [`Config`]: `hash_concurrency`,
/// `hash_queue_timeout_ms`, `hash_queue_max_waiters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashQueueLimits {
    /// Hashes computed at once (at least 1).
    pub concurrency: usize,
    /// Longest wait for a slot before [`ApiError::Busy`].
    pub timeout: Duration,
    /// Most callers waiting for a slot at once (at least 1); beyond it
    /// [`ApiError::Busy`] at once.
    pub max_waiters: usize,
}

impl Default for HashQueueLimits {
    fn default() -> Self {
        HashQueueLimits {
            concurrency: DEFAULT_HASH_CONCURRENCY,
            timeout: DEFAULT_HASH_QUEUE_TIMEOUT,
            max_waiters: DEFAULT_HASH_QUEUE_MAX_WAITERS,
        }
    }
}

impl HashQueueLimits {
    /// The limits configured in `config`.
    pub fn from_config(config: &Config) -> Self {
        HashQueueLimits {
            concurrency: config.hash_concurrency,
            timeout: config.hash_queue_timeout,
            max_waiters: config.hash_queue_max_waiters,
        }
    }
}

/// Hashes and verifies passwords with bounded concurrency and a bounded queue.
#[derive(Clone)]
pub struct PasswordHasherPool {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    limits: HashQueueLimits,
    waiting: Arc<AtomicUsize>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasherPool")
            .field("limits", &self.limits)
            .field("in_use", &self.in_use())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Counts one waiting caller; uncounts it when dropped (also on timeout or
/// when the request future is cancelled).
struct WaiterSlot(Arc<AtomicUsize>);

impl WaiterSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| WaiterSlot(counter.clone()))
    }
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Errors building the hasher.
#[derive(Debug, thiserror::Error)]
#[error("argon2: {0}")]
pub struct HashSetupError(String);

impl PasswordHasherPool {
    /// Builds a pool with the given cost and queue limits; computes the dummy hash.
    pub fn new(cost: Argon2Cost, limits: HashQueueLimits) -> Result<Self, HashSetupError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| HashSetupError(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2
            .hash_password(b"watchparty dummy password for unknown accounts")
            .map_err(|e| HashSetupError(e.to_string()))?
            .to_string();
        Ok(PasswordHasherPool {
            argon2,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits: HashQueueLimits {
                concurrency: limits.concurrency.max(1),
                max_waiters: limits.max_waiters.max(1),
                ..limits
            },
            waiting: Arc::new(AtomicUsize::new(0)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The queue limits in force.
    pub fn limits(&self) -> HashQueueLimits {
        self.limits
    }

    /// Hashes running right now (≤ [`HashQueueLimits::concurrency`]).
    pub fn in_use(&self) -> usize {
        self.limits
            .concurrency
            .saturating_sub(self.permits.available_permits())
    }

    /// Callers waiting for a slot right now (≤ [`HashQueueLimits::max_waiters`]).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let Some(_slot) = WaiterSlot::take(&self.waiting, self.limits.max_waiters) else {
            tracing::warn!(
                max_waiters = self.limits.max_waiters,
                "password hashing queue full; answering busy"
            );
            return Err(ApiError::Busy);
        };
        match tokio::time::timeout(self.limits.timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(permit) => permit.map_err(ApiError::internal),
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.limits.timeout.as_millis(),
                    "no password hashing slot in time; answering busy"
                );
                Err(ApiError::Busy)
            }
        }
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.acquire().await?;
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
        let limits = HashQueueLimits {
            concurrency: 1,
            ..HashQueueLimits::default()
        };
        let pool = PasswordHasherPool::new(Argon2Cost::default(), limits).unwrap();
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

    const CHEAP: Argon2Cost = Argon2Cost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    /// A pool with every hashing slot held by the test (the blocking hash
    /// itself is not what is under test here).
    async fn saturated(
        concurrency: usize,
        timeout: Duration,
        max_waiters: usize,
    ) -> (PasswordHasherPool, tokio::sync::OwnedSemaphorePermit) {
        let limits = HashQueueLimits {
            concurrency,
            timeout,
            max_waiters,
        };
        let pool = PasswordHasherPool::new(CHEAP, limits).unwrap();
        let held = pool
            .permits
            .clone()
            .acquire_many_owned(u32::try_from(concurrency).unwrap())
            .await
            .unwrap();
        assert_eq!(pool.in_use(), concurrency);
        (pool, held)
    }

    /// Spawns `n` hashes and returns once all of them wait for a slot.
    async fn queue_waiters(
        pool: &PasswordHasherPool,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<Result<String, ApiError>>> {
        let waiters = (0..n)
            .map(|_| {
                let p = pool.clone();
                tokio::spawn(async move { p.hash(b"password two").await })
            })
            .collect();
        while pool.waiting() < n {
            tokio::task::yield_now().await;
        }
        waiters
    }

    #[tokio::test]
    async fn saturated_queue_answers_busy_after_the_wait() {
        let timeout = Duration::from_millis(200);
        let (pool, held) = saturated(2, timeout, 4).await;
        let start = std::time::Instant::now();
        let r = pool.hash(b"password one").await;
        assert!(matches!(r, Err(ApiError::Busy)), "{r:?}");
        assert!(start.elapsed() >= timeout);
        assert_eq!(pool.waiting(), 0, "the timed-out caller left the queue");
        drop(held);
        assert!(pool.hash(b"password one").await.is_ok());
        assert_eq!((pool.in_use(), pool.waiting()), (0, 0));
    }

    /// With every waiting place taken, the next caller is refused at once and
    /// the number of waiters never exceeds the cap.
    #[tokio::test]
    async fn full_waiting_room_refuses_at_once() {
        let (pool, held) = saturated(2, Duration::from_secs(600), 2).await;
        let waiters = queue_waiters(&pool, 2).await;
        // A waiting caller would sit for 600 s; 30 s proves it was not queued.
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            pool.verify(b"password three", None),
        )
        .await
        .expect("refused without waiting");
        assert!(matches!(r, Err(ApiError::Busy)), "{r:?}");
        assert_eq!(pool.waiting(), 2, "never more waiters than the cap");
        // Free the slots: the queued callers are served, the counters drain.
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert_eq!((pool.in_use(), pool.waiting()), (0, 0));
    }

    /// A cancelled waiter (client went away) releases its place in the queue.
    #[tokio::test]
    async fn cancelled_waiter_frees_its_place() {
        let (pool, held) = saturated(1, Duration::from_secs(600), 1).await;
        let waiter = queue_waiters(&pool, 1).await.remove(0);
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(pool.waiting(), 0);
        drop(held);
        assert!(pool.hash(b"password").await.is_ok());
    }
}
