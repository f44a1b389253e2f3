//! The in-memory registry of signaling sockets: counts (global, unauthenticated
//! per IP, per user, per room), one socket per (room, member), the latest
//! certificate of every member seen, and the fan-out used by relays, pushes
//! and the REST hooks that close sockets (kick, leave, end, logout).
//!
//! The lock is a `std::sync::Mutex` that is never held across an `.await`;
//! sends use `try_send` on each socket's bounded queue, and a full queue
//! closes that socket (slow reader) instead of growing memory.
//!
//! Fair admission: when the global cap on unauthenticated sockets is reached,
//! a new socket evicts the oldest unauthenticated socket that has been silent
//! (no `auth` received) for at least [`UNAUTH_EVICT_AFTER`], instead of being
//! refused. Sockets that hold a slot without authenticating therefore cannot
//! lock legitimate members out (per-IP limits alone do not help when the
//! attacker has many addresses); a legitimate client sends `auth` at once and
//! is never the one evicted. Rooms leave the registry as soon as they have
//! neither sockets nor certificates, so its size follows the live rooms.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use watchparty_peer::cert::SignedCertificate;
use watchparty_peer::signaling::{MAX_SIGNAL_MESSAGE_LEN, ServerMessage};

use super::config::SignalingConfig;

/// Close code: authentication failed or timed out.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: replaced by a newer connection of the same member.
pub const CLOSE_REPLACED: u16 = 4002;
/// Close code: authenticated but not a member of this (open) room.
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Close code (RFC 6455): policy violation — rate limit, slow reader,
/// revocation, removal, room end, logout, connection caps.
pub const CLOSE_POLICY: u16 = 1008;
/// Close code (RFC 6455): message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code (RFC 6455): idle (no frame, pongs included, within the idle timeout).
pub const CLOSE_IDLE: u16 = 1001;
/// Close code (RFC 6455): normal (`leave`).
pub const CLOSE_NORMAL: u16 = 1000;

/// Once the global cap on unauthenticated sockets is full, an unauthenticated
/// socket that has sent nothing for this long is closed (4001) to admit a new
/// one. Legitimate clients send `auth` right after the upgrade (one round
/// trip); only silent holders are this old. Crossed by
/// `hub::tests::full_unauthenticated_cap_evicts_the_oldest_silent_socket`
/// and exercised by the silent holders of `signal/tests/soak.rs`.
pub const UNAUTH_EVICT_AFTER: Duration = Duration::from_secs(1);

/// Share of a socket's send queue that relays may never take (percent, at
/// most all but one slot): it stays free for the server's own messages, and a
/// relay that would take it is refused to its sender ([`Relay::Busy`])
/// instead of closing the receiver as a slow reader. Only the server's own
/// messages, or a receiver that stops reading (the write timeout), close a
/// socket. Crossed by `signal/tests/relay_flood.rs`.
pub const RELAY_QUEUE_RESERVE_PERCENT: usize = 25;

/// Outcome of [`Hub::relay_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Queued on the receiver's socket.
    Sent,
    /// The receiver is not connected, or its socket was too slow.
    NotDelivered,
    /// The relayed text would exceed [`MAX_SIGNAL_MESSAGE_LEN`].
    TooLarge,
    /// The receiver's queue holds all the relays it may (see
    /// [`RELAY_QUEUE_RESERVE_PERCENT`]); it is kept open.
    Busy,
}

/// An order to close a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCmd {
    /// WebSocket close code.
    pub code: u16,
    /// Short reason (no secrets).
    pub reason: &'static str,
}

/// What a registered socket receives.
#[derive(Debug)]
struct Conn {
    id: u64,
    session: [u8; 16],
    tx: mpsc::Sender<Arc<str>>,
    /// Free queue slots relays must leave (see [`RELAY_QUEUE_RESERVE_PERCENT`]).
    reserve: usize,
    kill: watch::Sender<Option<CloseCmd>>,
}

impl Conn {
    fn close(&self, cmd: CloseCmd) {
        // `send_replace` never fails; a finished socket just ignores it.
        self.kill.send_replace(Some(cmd));
    }

    /// Queues `text`; a full queue closes the socket (slow reader).
    fn push(&self, text: &Arc<str>) -> bool {
        match self.tx.try_send(text.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(
                    conn = self.id,
                    "signaling send queue full; closing slow reader"
                );
                self.close(CloseCmd {
                    code: CLOSE_POLICY,
                    reason: "slow reader",
                });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Room {
    conns: HashMap<i64, Conn>,
    certs: HashMap<i64, SignedCertificate>,
}

/// An unauthenticated socket, in opening order (ids grow).
#[derive(Debug)]
struct Pending {
    ip: IpAddr,
    since: Instant,
    /// `auth` arrived; the socket is being authenticated, never evicted.
    authenticating: bool,
    evict: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Inner {
    total: usize,
    unauth_total: usize,
    unauth_per_ip: HashMap<IpAddr, usize>,
    pending: BTreeMap<u64, Pending>,
    per_user: HashMap<i64, usize>,
    rooms: HashMap<String, Room>,
}

/// The registry (one per server, in [`crate::AppState`]).
#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

/// Why a socket was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Global socket cap reached.
    Global,
    /// Unauthenticated cap (global or for this IP) reached.
    Unauthenticated,
    /// Per-user cap reached.
    PerUser,
    /// Per-room cap reached.
    PerRoom,
}

/// A counted socket (global cap); released on drop.
#[derive(Debug)]
pub struct SocketSlot {
    hub: Arc<Hub>,
}

/// A counted unauthenticated socket; released on drop (i.e. after auth) or
/// when evicted (see [`UNAUTH_EVICT_AFTER`]).
#[derive(Debug)]
pub struct UnauthSlot {
    hub: Arc<Hub>,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

/// A registered (authenticated) socket; unregisters and announces
/// `member_left` on drop.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    /// Connection id (for logs).
    pub id: u64,
    /// The room (text id).
    pub room: String,
    /// The member.
    pub user: i64,
    /// Outgoing queue.
    pub rx: mpsc::Receiver<Arc<str>>,
    /// Close orders.
    pub kill: watch::Receiver<Option<CloseCmd>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters in a state
        // worse than slightly off; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a global and an unauthenticated slot for a new socket from `ip`.
    pub fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        cfg: &SignalingConfig,
    ) -> Result<(SocketSlot, UnauthSlot), Refusal> {
        self.open_at(ip, cfg, Instant::now())
    }

    /// [`Hub::open`] at time `now` (tests pass their own clock).
    fn open_at(
        self: &Arc<Self>,
        ip: IpAddr,
        cfg: &SignalingConfig,
        now: Instant,
    ) -> Result<(SocketSlot, UnauthSlot), Refusal> {
        let mut g = self.lock();
        if g.total >= cfg.max_connections {
            return Err(Refusal::Global);
        }
        let per_ip = g.unauth_per_ip.get(&ip).copied().unwrap_or(0);
        if per_ip >= cfg.max_unauthenticated_per_ip {
            return Err(Refusal::Unauthenticated);
        }
        if g.unauth_total >= cfg.max_unauthenticated {
            let oldest = g
                .pending
                .iter()
                .find(|(_, p)| !p.authenticating)
                .filter(|(_, p)| now.duration_since(p.since) >= UNAUTH_EVICT_AFTER)
                .map(|(id, _)| *id);
            let Some(old) = oldest.and_then(|id| g.release_pending(id)) else {
                return Err(Refusal::Unauthenticated);
            };
            // The evicted socket may already be gone; nothing to undo then.
            let _ = old.evict.send(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        g.total += 1;
        g.unauth_total += 1;
        *g.unauth_per_ip.entry(ip).or_insert(0) += 1;
        g.pending.insert(
            id,
            Pending {
                ip,
                since: now,
                authenticating: false,
                evict,
            },
        );
        Ok((
            SocketSlot { hub: self.clone() },
            UnauthSlot {
                hub: self.clone(),
                id,
                evicted,
            },
        ))
    }

    /// Counts: (all sockets, unauthenticated sockets).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.total, g.unauth_total)
    }

    /// Entries of the registry's maps (rooms, users with sockets, IPs with
    /// unauthenticated sockets, unauthenticated sockets): all return to 0
    /// once every socket is gone and every room ended.
    pub fn entries(&self) -> (usize, usize, usize, usize) {
        let g = self.lock();
        (
            g.rooms.len(),
            g.per_user.len(),
            g.unauth_per_ip.len(),
            g.pending.len(),
        )
    }

    /// Registers the authenticated socket of `user` in `room`, replacing
    /// (closing with [`CLOSE_REPLACED`]) an older socket of the same member.
    pub fn register(
        self: &Arc<Self>,
        room: &str,
        user: i64,
        session: [u8; 16],
        cert: SignedCertificate,
        cfg: &SignalingConfig,
    ) -> Result<Registration, Refusal> {
        let mut g = self.lock();
        let replacing = g
            .rooms
            .get(room)
            .is_some_and(|r| r.conns.contains_key(&user));
        let mine = g.per_user.get(&user).copied().unwrap_or(0);
        if !replacing && mine >= cfg.max_per_user {
            return Err(Refusal::PerUser);
        }
        let in_room = g.rooms.get(room).map_or(0, |r| r.conns.len());
        if !replacing && in_room >= cfg.max_per_room {
            return Err(Refusal::PerRoom);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(cfg.send_queue);
        let reserve = (cfg.send_queue * RELAY_QUEUE_RESERVE_PERCENT / 100)
            .min(cfg.send_queue.saturating_sub(1));
        let (kill_tx, kill_rx) = watch::channel(None);
        let r = g.rooms.entry(room.to_owned()).or_default();
        r.certs.insert(user, cert);
        let old = r.conns.insert(
            user,
            Conn {
                id,
                session,
                tx,
                reserve,
                kill: kill_tx,
            },
        );
        if let Some(old) = old {
            old.close(CloseCmd {
                code: CLOSE_REPLACED,
                reason: "replaced by a newer connection",
            });
        } else {
            *g.per_user.entry(user).or_insert(0) += 1;
        }
        Ok(Registration {
            hub: self.clone(),
            id,
            room: room.to_owned(),
            user,
            rx,
            kill: kill_rx,
        })
    }

    /// Stores a member's (re-issued) certificate.
    pub fn set_cert(&self, room: &str, user: i64, cert: SignedCertificate) {
        let mut g = self.lock();
        g.rooms
            .entry(room.to_owned())
            .or_default()
            .certs
            .insert(user, cert);
    }

    /// The latest certificate of `user` in `room`.
    pub fn cert(&self, room: &str, user: i64) -> Option<SignedCertificate> {
        self.lock().rooms.get(room)?.certs.get(&user).cloned()
    }

    /// Every known certificate in `room` with its online state.
    pub fn roster(&self, room: &str) -> Vec<(i64, SignedCertificate, bool)> {
        let g = self.lock();
        let Some(r) = g.rooms.get(room) else {
            return Vec::new();
        };
        let mut v: Vec<_> = r
            .certs
            .iter()
            .map(|(u, c)| (*u, c.clone(), r.conns.contains_key(u)))
            .collect();
        // Online members first, then by user id: truncation keeps the live ones.
        v.sort_by_key(|(u, _, online)| (!online, *u));
        v
    }

    /// Whether `user` has a live socket in `room`.
    pub fn is_online(&self, room: &str, user: i64) -> bool {
        self.lock()
            .rooms
            .get(room)
            .is_some_and(|r| r.conns.contains_key(&user))
    }

    /// Sends `msg` to `user` in `room`. `false` if not connected (nothing is
    /// queued for offline members) or the socket was too slow.
    pub fn send_to(&self, room: &str, user: i64, msg: &ServerMessage) -> bool {
        let Ok(text) = msg.to_json() else {
            return false;
        };
        let text: Arc<str> = text.into();
        let g = self.lock();
        g.rooms
            .get(room)
            .and_then(|r| r.conns.get(&user))
            .is_some_and(|c| c.push(&text))
    }

    /// Relays a peer-to-peer message (`offer`, `answer`, `ice`; its JSON
    /// text) to `user` in `room`, unless its queue holds all the relays it
    /// may ([`Relay::Busy`]; the receiver is never closed for a relay). The server rewrites `to` into `from`, which can make the text a
    /// few bytes longer than what the sender sent; a relayed text longer than
    /// [`MAX_SIGNAL_MESSAGE_LEN`] would be refused by the receiving peer, so it
    /// is not sent at all ([`Relay::TooLarge`]) and the sender gets an error.
    pub fn relay_to(&self, room: &str, user: i64, text: String) -> Relay {
        if text.len() > MAX_SIGNAL_MESSAGE_LEN {
            return Relay::TooLarge;
        }
        let text: Arc<str> = text.into();
        let g = self.lock();
        let Some(c) = g.rooms.get(room).and_then(|r| r.conns.get(&user)) else {
            return Relay::NotDelivered;
        };
        // Every push happens under the lock, so the room counted here is
        // there for the push (the socket only ever frees more).
        if c.tx.capacity() <= c.reserve {
            return Relay::Busy;
        }
        if c.push(&text) {
            Relay::Sent
        } else {
            Relay::NotDelivered
        }
    }

    /// Sends `msg` to every socket in `room` except `except`.
    pub fn broadcast(&self, room: &str, msg: &ServerMessage, except: Option<i64>) {
        let Ok(text) = msg.to_json() else {
            return;
        };
        let text: Arc<str> = text.into();
        let g = self.lock();
        if let Some(r) = g.rooms.get(room) {
            for (u, c) in &r.conns {
                if Some(*u) != except {
                    c.push(&text);
                }
            }
        }
    }

    /// Closes `user`'s socket in `room` (after queueing `last`, if any) and
    /// forgets its certificate.
    pub fn remove_member(
        &self,
        room: &str,
        user: i64,
        last: Option<&ServerMessage>,
        cmd: CloseCmd,
    ) {
        let text: Option<Arc<str>> = last.and_then(|m| m.to_json().ok()).map(Into::into);
        let mut g = self.lock();
        if let Some(r) = g.rooms.get_mut(room) {
            if let Some(c) = r.conns.get(&user) {
                if let Some(t) = &text {
                    c.push(t);
                }
                c.close(cmd);
            }
            r.certs.remove(&user);
        }
        g.forget_if_empty(room);
    }

    /// Pushes `last` to every socket in `room`, closes them all and forgets the room.
    pub fn end_room(&self, room: &str, last: &ServerMessage, cmd: CloseCmd) {
        let text: Option<Arc<str>> = last.to_json().ok().map(Into::into);
        let mut g = self.lock();
        if let Some(r) = g.rooms.get_mut(room) {
            for c in r.conns.values() {
                if let Some(t) = &text {
                    c.push(t);
                }
                c.close(cmd);
            }
            r.certs.clear();
        }
        g.forget_if_empty(room);
    }

    /// Closes every socket opened with `session` (logout).
    pub fn close_session(&self, session: &[u8; 16], cmd: CloseCmd) -> usize {
        let g = self.lock();
        let mut n = 0;
        for r in g.rooms.values() {
            for c in r.conns.values().filter(|c| &c.session == session) {
                c.close(cmd);
                n += 1;
            }
        }
        n
    }

    /// Closes every socket of `user` (account revoked).
    pub fn close_user(&self, user: i64, cmd: CloseCmd) -> usize {
        let g = self.lock();
        let mut n = 0;
        for r in g.rooms.values() {
            if let Some(c) = r.conns.get(&user) {
                c.close(cmd);
                n += 1;
            }
        }
        n
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut g = self.hub.lock();
        g.total = g.total.saturating_sub(1);
    }
}

impl Inner {
    /// Forgets an unauthenticated socket and releases its counts; `None` if
    /// it was already released (evicted).
    fn release_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.unauth_total = self.unauth_total.saturating_sub(1);
        if let Some(n) = self.unauth_per_ip.get_mut(&p.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.unauth_per_ip.remove(&p.ip);
            }
        }
        Some(p)
    }

    /// Drops the entry of `room` once it has neither sockets nor certificates.
    fn forget_if_empty(&mut self, room: &str) {
        if self
            .rooms
            .get(room)
            .is_some_and(|r| r.conns.is_empty() && r.certs.is_empty())
        {
            self.rooms.remove(room);
        }
    }
}

impl UnauthSlot {
    /// Resolves when this socket was evicted to admit a newer one. Pending
    /// forever once `auth` arrived ([`UnauthSlot::authenticating`]).
    pub async fn evicted(&mut self) {
        if (&mut self.evicted).await.is_err() {
            // The sender lives in the registry until eviction or drop; an
            // error means it is gone without an eviction: never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// `auth` arrived: the socket is no longer a candidate for eviction.
    pub fn authenticating(&self) {
        if let Some(p) = self.hub.lock().pending.get_mut(&self.id) {
            p.authenticating = true;
        }
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        self.hub.lock().release_pending(self.id);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let left = {
            let mut g = self.hub.lock();
            let mut left = false;
            if let Some(r) = g.rooms.get_mut(&self.room)
                && r.conns.get(&self.user).is_some_and(|c| c.id == self.id)
            {
                r.conns.remove(&self.user);
                left = true;
                g.forget_if_empty(&self.room);
            }
            if left && let Some(n) = g.per_user.get_mut(&self.user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.per_user.remove(&self.user);
                }
            }
            left
        };
        if left && let Ok(user) = watchparty_peer::ids::UserId::new(self.user.unsigned_abs()) {
            self.hub
                .broadcast(&self.room, &ServerMessage::MemberLeft { user }, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_unauth: usize) -> SignalingConfig {
        SignalingConfig {
            max_unauthenticated: max_unauth,
            ..SignalingConfig::default()
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn full_unauthenticated_cap_evicts_the_oldest_silent_socket() {
        let hub = Arc::new(Hub::default());
        let c = cfg(3);
        let t0 = Instant::now();
        let (s1, mut first) = hub.open_at(ip(1), &c, t0).unwrap();
        let (_s2, second) = hub.open_at(ip(2), &c, t0).unwrap();
        let (_s3, mut third) = hub.open_at(ip(3), &c, t0).unwrap();
        second.authenticating();
        // Full, and nobody silent for UNAUTH_EVICT_AFTER yet: refused.
        let young = t0 + UNAUTH_EVICT_AFTER - Duration::from_millis(1);
        assert_eq!(
            hub.open_at(ip(4), &c, young).map(|_| ()),
            Err(Refusal::Unauthenticated)
        );
        // Past it: the oldest silent socket (the first) is evicted, the
        // authenticating one is kept, the newcomer is admitted.
        let (_s4, _fourth) = hub.open_at(ip(4), &c, t0 + UNAUTH_EVICT_AFTER).unwrap();
        assert!(
            first.evicted.try_recv().is_ok(),
            "the oldest was told to close"
        );
        assert!(third.evicted.try_recv().is_err(), "only one is evicted");
        assert_eq!(hub.counts(), (4, 3));
        // The evicted socket closing does not release its slot a second time.
        drop((s1, first));
        assert_eq!(hub.counts(), (3, 3));
        assert_eq!(hub.entries().3, 3);
        // Next eviction skips the authenticating socket and takes the third.
        let (_s5, _fifth) = hub.open_at(ip(5), &c, t0 + UNAUTH_EVICT_AFTER).unwrap();
        assert!(third.evicted.try_recv().is_ok());
        drop((second, third, _fourth, _fifth));
        assert_eq!(hub.entries(), (0, 0, 0, 0));
    }

    #[test]
    fn per_ip_cap_is_never_bypassed_by_eviction() {
        let hub = Arc::new(Hub::default());
        let c = SignalingConfig {
            max_unauthenticated_per_ip: 1,
            ..cfg(1)
        };
        let t0 = Instant::now();
        let (_s, _held) = hub.open_at(ip(1), &c, t0).unwrap();
        let later = t0 + UNAUTH_EVICT_AFTER * 10;
        assert_eq!(
            hub.open_at(ip(1), &c, later).map(|_| ()),
            Err(Refusal::Unauthenticated)
        );
        assert!(hub.open_at(ip(2), &c, later).is_ok());
    }
}
