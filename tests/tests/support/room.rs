//! A running room of CLI peers (server, host, followers) for the
//! whole-system tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use super::procs::{Peer, Server, applied, first_media, login, step, wait_rooms_agree};

/// Largest follower − host position difference accepted after settling.
pub const SYNC_TOLERANCE_MS: f64 = 20.0;
/// Longest wait for the room to settle after a burst of commands (generous:
/// the suite runs on 2 busy cores).
pub const SETTLE: Duration = Duration::from_secs(30);

/// A running room: server, host, followers and the invite link.
pub struct Room {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub host: Peer,
    pub followers: Vec<Peer>,
    pub link: String,
}

impl Room {
    /// Server with users `host` + `followers` (+ `extra` users that join
    /// later), the host's room (followers invited as viewers), every
    /// follower joined with the media loaded and a full mesh of open data
    /// channels.
    pub fn start(followers: &[&str], extra: &[&str]) -> Room {
        let dir = tempfile::tempdir().unwrap();
        let mut users = vec!["host"];
        users.extend(followers);
        users.extend(extra);
        step("server: admin setup");
        let mut server = Server::setup(dir.path(), &users);
        server.start();
        step("server: started");
        for u in &users {
            let d = dir.path().join(u);
            std::fs::create_dir_all(&d).unwrap();
            login(&d, &server, u);
        }
        step("logged in");
        let media = first_media(&dir.path().join("host"));
        let invites: Vec<String> = followers.iter().map(|f| format!("{f}:viewer")).collect();
        let invites: Vec<&str> = invites.iter().map(String::as_str).collect();
        let mut host = Peer::host("host", &dir.path().join("host"), media, &invites);
        let created = host.wait_event("room_created");
        let link = created["link"].as_str().unwrap().to_owned();
        host.wait_event("joined");
        host.wait_event("media_loaded");
        let mut room = Room {
            followers: Vec::new(),
            dir,
            server,
            host,
            link,
        };
        step("host: media loaded");
        for f in followers {
            room.add_follower(f);
        }
        room.wait_mesh();
        step("room: full mesh");
        room
    }

    /// `watchparty join LINK` as `name`; waits until its media is loaded.
    pub fn add_follower(&mut self, name: &str) {
        let mut p = Peer::join(name, &self.dir.path().join(name), &self.link);
        let j = p.wait_event("joined");
        assert_eq!(j["role"], "viewer", "{j}");
        p.wait_event("media_loaded");
        self.followers.push(p);
    }

    /// Every peer has every other one connected with all channels open.
    pub fn wait_mesh(&mut self) {
        let n = self.followers.len();
        for p in std::iter::once(&mut self.host).chain(self.followers.iter_mut()) {
            p.status_until("a full mesh", Duration::from_secs(30), |s| {
                connected(s) >= n
            });
        }
    }

    /// Host first, then the followers.
    pub fn all(&mut self) -> Vec<&mut Peer> {
        std::iter::once(&mut self.host)
            .chain(self.followers.iter_mut())
            .collect()
    }
}

/// Neighbours with every data channel open.
pub fn connected(s: &Value) -> usize {
    s["peers"].as_array().map_or(0, |ps| {
        ps.iter()
            .filter(|p| p["state"] == "connected" && p["channels_open"].as_u64() >= Some(3))
            .count()
    })
}

/// Sends `cmds` to the host and waits until the host applied them and every
/// follower's view of the room (paused, rate, position) is the host's.
///
/// What the followers end up with is checked, not how they learned it: a
/// follower may get a step from the host's `State` rather than the command
/// itself (docs/protocol.md §4.1), so counting commands per follower would
/// depend on timing. The host's own count is exact: it applies every
/// command it signs.
pub fn host_burst(room: &mut Room, cmds: &[String]) {
    let base = applied(&room.host.status());
    for c in cmds {
        room.host.send(c);
    }
    let n = cmds.len() as u64;
    step(&format!("host: {n} commands sent"));
    room.host
        .status_until(&format!("{n} more commands applied"), SETTLE, |s| {
            applied(s) >= base + n
        });
    wait_rooms_agree(&mut room.all(), SYNC_TOLERANCE_MS, SETTLE);
    step("followers: on the host's timeline");
}
