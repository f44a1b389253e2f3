//! Room types: ids, roles, membership states, policy.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// A room id: 16 random bytes rendered as 32 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// A fresh random id (128 bits from the system CSPRNG).
    pub fn generate() -> Result<Self, ApiError> {
        Ok(RoomId(hex::encode(crate::accounts::random_bytes::<16>()?)))
    }

    /// Parses 32 lowercase hex characters; anything else is `NotFound`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(RoomId(s.to_owned()))
        } else {
            Err(ApiError::NotFound)
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoomId::parse(&s).map_err(|_| serde::de::Error::custom("invalid room id"))
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns the room; signs control.
    Host,
    /// May request the control actions the policy allows.
    Controller,
    /// Watches (and chats if the policy allows).
    Viewer,
}

impl Role {
    /// Database text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Controller => "controller",
            Role::Viewer => "viewer",
        }
    }

    /// From database text.
    pub fn from_db(s: &str) -> Result<Self, ApiError> {
        match s {
            "host" => Ok(Role::Host),
            "controller" => Ok(Role::Controller),
            "viewer" => Ok(Role::Viewer),
            _ => Err(ApiError::internal("bad role in database")),
        }
    }
}

/// A role that can be given by invitation or role change (not `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuestRole {
    /// Controller.
    Controller,
    /// Viewer.
    Viewer,
}

impl From<GuestRole> for Role {
    fn from(r: GuestRole) -> Role {
        match r {
            GuestRole::Controller => Role::Controller,
            GuestRole::Viewer => Role::Viewer,
        }
    }
}

/// Membership state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Invited, not yet joined.
    Invited,
    /// In the room.
    Joined,
    /// Declined the invitation.
    Declined,
    /// Left the room.
    Left,
    /// Removed by the host.
    Kicked,
}

impl MemberStatus {
    /// Database text.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Invited => "invited",
            MemberStatus::Joined => "joined",
            MemberStatus::Declined => "declined",
            MemberStatus::Left => "left",
            MemberStatus::Kicked => "kicked",
        }
    }

    /// From database text.
    pub fn from_db(s: &str) -> Result<Self, ApiError> {
        match s {
            "invited" => Ok(MemberStatus::Invited),
            "joined" => Ok(MemberStatus::Joined),
            "declined" => Ok(MemberStatus::Declined),
            "left" => Ok(MemberStatus::Left),
            "kicked" => Ok(MemberStatus::Kicked),
            _ => Err(ApiError::internal("bad member status in database")),
        }
    }
}

/// What controllers may do (they send requests; the host signs commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerPermissions {
    /// Play.
    pub play: bool,
    /// Pause.
    pub pause: bool,
    /// Seek.
    pub seek: bool,
    /// Change playback rate.
    pub rate: bool,
    /// Load another item from the queue.
    pub load: bool,
}

impl Default for ControllerPermissions {
    fn default() -> Self {
        ControllerPermissions {
            play: true,
            pause: true,
            seek: true,
            rate: false,
            load: false,
        }
    }
}

/// Longest buffering wait a policy may ask for (ms).
pub const MAX_BUFFER_WAIT_MS: u32 = 120_000;

/// Room policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// What controllers may do.
    pub controllers: ControllerPermissions,
    /// Whether viewers may chat (host and controllers always may).
    pub viewers_can_chat: bool,
    /// Buffering policy: pause the room while any member buffers.
    pub wait_for_everyone: bool,
    /// Buffering policy: longest wait for a buffering member before resuming
    /// (ms, at most [`MAX_BUFFER_WAIT_MS`]).
    #[schema(maximum = 120_000)]
    pub buffer_wait_ms: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            controllers: ControllerPermissions::default(),
            viewers_can_chat: true,
            wait_for_everyone: true,
            buffer_wait_ms: 10_000,
        }
    }
}

impl Policy {
    /// Checks bounds.
    pub fn check(&self) -> Result<(), ApiError> {
        if self.buffer_wait_ms > MAX_BUFFER_WAIT_MS {
            return Err(ApiError::InvalidRequest(format!(
                "policy.buffer_wait_ms must be at most {MAX_BUFFER_WAIT_MS}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids() {
        let id = RoomId::generate().unwrap();
        assert_eq!(id.as_str().len(), 32);
        assert!(RoomId::parse(id.as_str()).is_ok());
        assert_ne!(id, RoomId::generate().unwrap());
        for bad in [
            "",
            "ABCDEF0123456789abcdef0123456789",
            "../../etc/passwd",
            "0123",
        ] {
            assert!(RoomId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_json() {
        let p: Policy = serde_json::from_str("{\"viewers_can_chat\":false}").unwrap();
        assert!(!p.viewers_can_chat);
        assert!(p.controllers.play);
        assert!(serde_json::from_str::<Policy>("{\"bogus\":1}").is_err());
    }
}
