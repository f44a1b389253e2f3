//! Issue #6: a (re)load replaces the player (fresh, paused at zero) while a
//! seek issued to the old player is still awaiting its echo. The sync engine
//! must start over with the fresh player and land it on the room position,
//! not wait for the lost seek, nor take the fresh player's jump to zero for
//! a user's seek (on the host that would move the whole room). Real sessions, virtual time and players.

mod support;

use support::room::*;
use watchparty_peer::ids::Role;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::MediaPos;

#[test]
fn players_follow_load_seek_play_when_the_reload_lands_after_the_seek() {
    let mut room = ready_room(61, 4, |_| Role::Viewer);
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(8_000);
    // Every player finishes its reload while the seek to 90 s is under way
    // (seek latency 50–400 ms): the fresh player never completes it.
    for p in &mut room.peers {
        p.load_delay = Some(30_000);
    }
    room.command(0, UserCommand::Load(item(1, 3600))).unwrap();
    room.command(0, UserCommand::Seek(MediaPos::from_millis(90_000)))
        .unwrap();
    room.command(0, UserCommand::Play).unwrap();
    room.run_for_ms(12_000);
    // The room is where the host put it (its own reload is no user seek)…
    let at = room.peers[0].player.position(room.local(0));
    assert!(
        at > MediaPos::from_millis(90_000) && at < MediaPos::from_millis(110_000),
        "host player at {at:?}"
    );
    // …and every player is there.
    for i in 0..room.peers.len() {
        let err = room.error_now(i);
        assert!(
            err.is_some_and(|e| e.abs() < 20_000),
            "peer {i}: error {err:?} µs; {:?}",
            room.peers[i].session.sync_status(room.local(i))
        );
    }
}
