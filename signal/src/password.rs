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
//!
//! Each hash works in a memory buffer taken from a small free list (at most
//! one buffer per hashing slot) and returned afterwards, instead of a fresh
//! `memory_kib` allocation per hash: glibc keeps freed blocks of that size in
//! the arena of whichever blocking thread allocated them, so per-hash
//! allocations made the resident set grow with the number of blocking
//! threads that ever hashed (≈ 470 MiB after a login burst, issue #9), while
//! reused buffers keep it at `concurrency × memory_kib`. A stored hash whose
//! parameters ask for more than [`MAX_VERIFY_MEMORY_KIB`] is refused, never
//! computed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Default number of password hashes computed at once (each takes ~19 MiB).
pub const DEFAULT_HASH_CONCURRENCY: usize = 2;
/// Default longest wait for a password-hashing slot before answering 503 `busy`: 10 s.
pub const DEFAULT_HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most requests waiting for a hashing slot at once; beyond it requests
/// get 503 `busy` at once, so a login flood cannot pile up waiting requests.
pub const DEFAULT_HASH_QUEUE_MAX_WAITERS: usize = 64;
/// Upper bound for `hash_queue_max_waiters`.
pub const HASH_QUEUE_MAX_WAITERS_LIMIT: usize = 10_000;
/// Longest `hash_queue_timeout` the server accepts: 60 s.
pub const MAX_HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Argon2id cost parameters.
///
/// The default is the OWASP floor and RustCrypto's default (m=19456 KiB, t=2, p=1).
/// Cheaper values exist **only** so tests run quickly; never lower them in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Cost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Cost {
    fn default() -> Self {
        Argon2Cost {
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
        }
    }
}

/// Bounds of the hashing queue (from the configuration: `hash_concurrency`,
/// `hash_queue_timeout_ms`, `hash_queue_max_waiters`; see
/// [`crate::Config::hash_queue_limits`]).
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

/// The most memory a stored hash may ask for when it is verified (its
/// `m=` parameter, KiB): 256 MiB, 13× the default cost. A hash over it (a
/// tampered or foreign row) verifies as `false` without being computed.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 256 * 1024;

/// Salt length of new hashes (bytes; the PHC recommendation).
const SALT_LEN: usize = 16;

/// Output length of new hashes (bytes; argon2's default).
const OUTPUT_LEN: usize = 32;

/// Work buffers for argon2, reused between hashes (see the module docs).
/// Holds at most one buffer per hashing slot: a buffer is only taken while
/// a semaphore permit is held.
#[derive(Default)]
struct BlockBuffers {
    free: Mutex<Vec<Vec<Block>>>,
}

impl BlockBuffers {
    /// A buffer of at least `blocks` blocks (a reused one when free).
    fn take(&self, blocks: usize) -> Vec<Block> {
        let reused = self.free.lock().map_or(None, |mut free| free.pop());
        let mut buf = reused.unwrap_or_default();
        if buf.len() < blocks {
            buf.resize(blocks, Block::new());
        }
        buf
    }

    /// Returns a buffer for the next hash (zeroed: it held password-derived
    /// state).
    fn give_back(&self, mut buf: Vec<Block>) {
        buf.fill(Block::new());
        if let Ok(mut free) = self.free.lock() {
            free.push(buf);
        }
    }

    /// Buffers currently free (for tests).
    #[cfg(test)]
    fn free_count(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

/// The memory argon2 needs for `params` (blocks of 1 KiB): the block count
/// is `m_cost` rounded down to a multiple of 4 × lanes, so `m_cost` blocks
/// always suffice.
fn blocks_for(params: &Params) -> usize {
    usize::try_from(params.m_cost()).unwrap_or(usize::MAX)
}

/// Hashes and verifies passwords with bounded concurrency and a bounded queue.
#[derive(Clone)]
pub struct PasswordHasherPool {
    argon2: Argon2<'static>,
    params: Params,
    buffers: Arc<BlockBuffers>,
    rng: SystemRandom,
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
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let buffers = Arc::new(BlockBuffers::default());
        let rng = SystemRandom::new();
        let dummy_hash = hash_phc(
            &argon2,
            &params,
            &rng,
            &buffers,
            b"watchparty dummy password for unknown accounts",
        )
        .map_err(HashSetupError)?;
        Ok(PasswordHasherPool {
            argon2,
            params,
            buffers,
            rng,
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
        f: impl FnOnce(&PasswordHasherPool) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.acquire().await?;
        let pool = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let out = f(&pool);
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
        self.run_blocking(move |p| {
            hash_phc(&p.argon2, &p.params, &p.rng, &p.buffers, &password)
                .map_err(ApiError::internal)
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
        self.run_blocking(move |p| verify_phc(&p.buffers, &password, &phc) && real)
            .await
    }

    /// Hashes synchronously (admin CLI; no runtime needed).
    pub fn hash_blocking(&self, password: &[u8]) -> Result<String, HashSetupError> {
        hash_phc(
            &self.argon2,
            &self.params,
            &self.rng,
            &self.buffers,
            password,
        )
        .map_err(HashSetupError)
    }
}

/// Hashes `password` with a fresh random salt in a reused buffer; returns
/// the PHC string.
fn hash_phc(
    argon2: &Argon2<'static>,
    params: &Params,
    rng: &SystemRandom,
    buffers: &BlockBuffers,
    password: &[u8],
) -> Result<String, String> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt)
        .map_err(|_| "no randomness for the salt")?;
    let mut out = [0u8; OUTPUT_LEN];
    let mut buf = buffers.take(blocks_for(params));
    let r = argon2.hash_password_into_with_memory(password, &salt, &mut out, &mut buf[..]);
    buffers.give_back(buf);
    r.map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`, computed in a reused
/// buffer. Anything but a well-formed argon2id hash within
/// [`MAX_VERIFY_MEMORY_KIB`] is `false`; the comparison is constant-time.
fn verify_phc(buffers: &BlockBuffers, password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(Algorithm::Argon2id, version, params.clone());
    let mut buf = buffers.take(blocks_for(&params));
    let r = argon2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut buf[..]);
    buffers.give_back(buf);
    if r.is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|o| &o == expected)
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

    /// Hashes made by the argon2 crate's own `hash_password` (rows written
    /// before the buffer pool) still verify, and ours verify there.
    #[tokio::test]
    async fn compatible_with_the_argon2_crate_phc_strings() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let pool = PasswordHasherPool::new(CHEAP, HashQueueLimits::default()).unwrap();
        let params =
            Params::new(CHEAP.memory_kib, CHEAP.iterations, CHEAP.parallelism, None).unwrap();
        let stock = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let theirs = stock.hash_password(b"pw one").unwrap().to_string();
        assert!(pool.verify(b"pw one", Some(&theirs)).await.unwrap());
        assert!(!pool.verify(b"pw two", Some(&theirs)).await.unwrap());
        let ours = pool.hash(b"pw one").await.unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(stock.verify_password(b"pw one", &parsed).is_ok());
        assert!(stock.verify_password(b"pw two", &parsed).is_err());
        // Another cost (an older configuration) still verifies.
        let other = Params::new(128, 2, 2, None).unwrap();
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, other)
            .hash_password(b"pw one")
            .unwrap()
            .to_string();
        assert!(pool.verify(b"pw one", Some(&older)).await.unwrap());
    }

    /// Stored hashes that are not argon2id, or that ask for more memory
    /// than `MAX_VERIFY_MEMORY_KIB`, are `false` without being computed.
    #[tokio::test]
    async fn foreign_or_oversized_hashes_are_refused() {
        use argon2::PasswordHasher;
        let pool = PasswordHasherPool::new(CHEAP, HashQueueLimits::default()).unwrap();
        let params = Params::new(64, 1, 1, None).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(argon2i.starts_with("$argon2i$"));
        assert!(!pool.verify(b"pw", Some(&argon2i)).await.unwrap());
        // A row claiming 1 KiB over the cap: refused without computing it
        // (that would take the cap's worth of memory).
        let ours = pool.hash(b"pw").await.unwrap();
        let huge = ours.replace("m=64,", &format!("m={},", MAX_VERIFY_MEMORY_KIB + 1));
        assert_ne!(huge, ours);
        assert!(!pool.verify(b"pw", Some(&huge)).await.unwrap());
        // No buffer was grown for it.
        let sizes: Vec<usize> = pool
            .buffers
            .free
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert!(sizes.iter().all(|n| *n <= 64), "{sizes:?}");
        for bad in ["", "$argon2id$", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ"] {
            assert!(!pool.verify(b"pw", Some(bad)).await.unwrap(), "{bad}");
        }
    }

    /// Many concurrent hashes share at most `concurrency` buffers, and the
    /// buffers are zeroed when given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffers_are_reused_one_per_slot() {
        let limits = HashQueueLimits {
            concurrency: 3,
            timeout: Duration::from_secs(60),
            max_waiters: 64,
        };
        let pool = PasswordHasherPool::new(CHEAP, limits).unwrap();
        let jobs: Vec<_> = (0..40)
            .map(|i| {
                let p = pool.clone();
                tokio::spawn(async move { p.hash(format!("pw {i}").as_bytes()).await })
            })
            .collect();
        let mut hashes = std::collections::BTreeSet::new();
        for j in jobs {
            hashes.insert(j.await.unwrap().unwrap());
        }
        assert_eq!(hashes.len(), 40, "salts differ");
        let free = pool.buffers.free_count();
        assert!((1..=3).contains(&free), "{free} buffers for 3 slots");
        let all_zero = pool
            .buffers
            .free
            .lock()
            .unwrap()
            .iter()
            .all(|b| b.iter().all(|blk| blk.as_ref().iter().all(|w| *w == 0)));
        assert!(all_zero, "buffers are zeroed when given back");
    }
}
