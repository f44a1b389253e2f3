//! Chain of custody of the host role (docs/protocol.md §6): the one rule
//! that decides whether a host term the server announces (`host_changed`,
//! or a newer epoch in a repeated `hello`) may replace the current one.
//!
//! The server may *propose* a host; only the current host can *hand over*.
//! While a host is present — we are the host, or the host's certificate is
//! current (it has not left and has not expired) — a new host is accepted
//! only if that host signed a `Handoff` naming exactly the new host's user,
//! key and epoch, or if the "new" term is the current host's own
//! re-registration (same user, same key: a signaling reconnect or a server
//! restart). A host that is gone can no longer sign anything; the server
//! then installs the next host by itself (refused anyway by peers that
//! pinned the host key, through the pin).

use crate::cert::CertificateBody;
use crate::crypto::PublicKey;
use crate::ids::UserId;
use crate::message::Handoff;

use super::types::HostChangeRefusal;

/// The host that holds the room now, if it is still there to sign a
/// handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PresentHost {
    pub user: UserId,
    pub key: PublicKey,
}

/// Whether the host certificate `new` (already verified under the server
/// key, for a newer epoch) may open a new host term, given the host still
/// present and the `Handoff` that host signed, if any.
pub(super) fn approve(
    present: Option<PresentHost>,
    signed_handoff: Option<&Handoff>,
    new: &CertificateBody,
) -> Result<(), HostChangeRefusal> {
    if let Some(h) = signed_handoff {
        return if h.new_host == new.user && h.new_key == new.key && h.new_epoch == new.epoch {
            Ok(())
        } else {
            Err(HostChangeRefusal::NotTheSignedHandoff)
        };
    }
    match present {
        Some(p) if p.user != new.user || p.key != new.key => {
            Err(HostChangeRefusal::NotSignedByHost)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use crate::ids::{DisplayName, Epoch, Role, RoomId, UnixSeconds};

    fn key(seed: u8) -> PublicKey {
        SigningKey::from_seed(&[seed; 32]).unwrap().public_key()
    }

    fn user(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn host_cert(u: u64, k: u8, epoch: u64) -> CertificateBody {
        CertificateBody {
            room: RoomId::from_bytes([1; 16]),
            epoch: Epoch(epoch),
            user: user(u),
            name: DisplayName::new("bob").unwrap(),
            role: Role::Host,
            key: key(k),
            not_after: UnixSeconds(u64::MAX),
        }
    }

    fn present(u: u64, k: u8) -> Option<PresentHost> {
        Some(PresentHost {
            user: user(u),
            key: key(k),
        })
    }

    #[test]
    fn present_host_must_sign_a_change_to_anyone_else() {
        assert_eq!(
            approve(present(1, 1), None, &host_cert(2, 2, 3)),
            Err(HostChangeRefusal::NotSignedByHost)
        );
        // The same user with another key is another host too.
        assert_eq!(
            approve(present(1, 1), None, &host_cert(1, 9, 3)),
            Err(HostChangeRefusal::NotSignedByHost)
        );
        // Another user with the host's key (the server lying about who).
        assert_eq!(
            approve(present(1, 1), None, &host_cert(2, 1, 3)),
            Err(HostChangeRefusal::NotSignedByHost)
        );
    }

    #[test]
    fn the_hosts_own_re_registration_needs_no_handoff() {
        assert_eq!(approve(present(1, 1), None, &host_cert(1, 1, 3)), Ok(()));
    }

    #[test]
    fn a_signed_handoff_approves_exactly_what_it_names() {
        let h = Handoff {
            new_host: user(2),
            new_key: key(2),
            new_epoch: Epoch(3),
        };
        assert_eq!(
            approve(present(1, 1), Some(&h), &host_cert(2, 2, 3)),
            Ok(())
        );
        for other in [host_cert(3, 2, 3), host_cert(2, 3, 3), host_cert(2, 2, 4)] {
            assert_eq!(
                approve(present(1, 1), Some(&h), &other),
                Err(HostChangeRefusal::NotTheSignedHandoff),
                "{other:?}"
            );
        }
        // Not even the old host's own re-registration overrides the
        // handoff it signed.
        assert_eq!(
            approve(present(1, 1), Some(&h), &host_cert(1, 1, 3)),
            Err(HostChangeRefusal::NotTheSignedHandoff)
        );
    }

    #[test]
    fn without_a_present_host_the_server_installs_the_next_one() {
        assert_eq!(approve(None, None, &host_cert(2, 2, 3)), Ok(()));
    }
}
