//! The in-memory registry of signaling sockets: counts (global, unauthenticated
//! per IP, per user, per room), one socket per (room, member), the latest
//! certificate of every member seen, and the fan-out used by relays, pushes
//! and the REST hooks that close sockets (kick, leave, end, logout).
//!
//! The lock is a `std::sync::Mutex` that is never held across an `.await`;
//! sends use `try_send` on each socket's bounded queue, and a full queue
//! closes that socket (slow reader) instead of growing memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
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

/// Outcome of [`Hub::relay_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Queued on the receiver's socket.
    Sent,
    /// The receiver is not connected, or its socket was too slow.
    NotDelivered,
    /// The relayed text would exceed [`MAX_SIGNAL_MESSAGE_LEN`].
    TooLarge,
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

#[derive(Debug, Default)]
struct Inner {
    total: usize,
    unauth_total: usize,
    unauth_per_ip: HashMap<IpAddr, usize>,
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

/// A counted unauthenticated socket; released on drop (i.e. after auth).
#[derive(Debug)]
pub struct UnauthSlot {
    hub: Arc<Hub>,
    ip: IpAddr,
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
        let mut g = self.lock();
        if g.total >= cfg.max_connections {
            return Err(Refusal::Global);
        }
        let per_ip = g.unauth_per_ip.get(&ip).copied().unwrap_or(0);
        if g.unauth_total >= cfg.max_unauthenticated || per_ip >= cfg.max_unauthenticated_per_ip {
            return Err(Refusal::Unauthenticated);
        }
        g.total += 1;
        g.unauth_total += 1;
        *g.unauth_per_ip.entry(ip).or_insert(0) += 1;
        Ok((
            SocketSlot { hub: self.clone() },
            UnauthSlot {
                hub: self.clone(),
                ip,
            },
        ))
    }

    /// Counts: (all sockets, unauthenticated sockets).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.total, g.unauth_total)
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
        let (kill_tx, kill_rx) = watch::channel(None);
        let r = g.rooms.entry(room.to_owned()).or_default();
        r.certs.insert(user, cert);
        let old = r.conns.insert(
            user,
            Conn {
                id,
                session,
                tx,
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

    /// Relays a peer-to-peer message (`offer`, `answer`, `ice`) to `user` in
    /// `room`. The server rewrites `to` into `from`, which can make the text a
    /// few bytes longer than what the sender sent; a relayed text longer than
    /// [`MAX_SIGNAL_MESSAGE_LEN`] would be refused by the receiving peer, so it
    /// is not sent at all ([`Relay::TooLarge`]) and the sender gets an error.
    pub fn relay_to(&self, room: &str, user: i64, msg: &ServerMessage) -> Relay {
        let Ok(text) = msg.to_json() else {
            return Relay::TooLarge;
        };
        if text.len() > MAX_SIGNAL_MESSAGE_LEN {
            return Relay::TooLarge;
        }
        let text: Arc<str> = text.into();
        let g = self.lock();
        let sent = g
            .rooms
            .get(room)
            .and_then(|r| r.conns.get(&user))
            .is_some_and(|c| c.push(&text));
        if sent {
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

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        let mut g = self.hub.lock();
        g.unauth_total = g.unauth_total.saturating_sub(1);
        if let Some(n) = g.unauth_per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.unauth_per_ip.remove(&self.ip);
            }
        }
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
                if r.conns.is_empty() && r.certs.is_empty() {
                    g.rooms.remove(&self.room);
                }
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
