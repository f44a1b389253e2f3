//! The JavaScript API (`RoomClient`), as documented in `/work/js-api.md`.
//!
//! ```js
//! import init, { RoomClient } from '/pkg/watchparty_wasm_peer.js';
//! await init();
//! const room = RoomClient.join({ signalUrl, apiBase, token, roomId, hostKey, video });
//! room.onEvent(ev => …); await room.command({ type: 'play' }); room.status(); room.leave();
//! ```

use std::rc::Rc;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::cert::parse_invite_fragment;
use watchparty_peer::crypto::{PublicKey, SEED_LEN, SigningKey};
use watchparty_peer::ids::RoomId;
use watchparty_peer::session::UserCommand;
use watchparty_peer::signaling::{
    BoundedVec, IceCredential, IceServer as WireIceServer, IceUrl, IceUsername,
};

use crate::http::Api;
use crate::room::{Driver, JsCommand, Options, Shared, SignalMode, parse_command};
use crate::rtc::{IceServer, MAX_ICE_SERVERS};

/// Longest option string accepted (URLs, keys, ids), in bytes.
pub const MAX_OPTION_LEN: usize = 2048;

fn err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsIceServer {
    urls: UrlList,
    username: Option<String>,
    credential: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UrlList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsOptions {
    signal_url: String,
    api_base: String,
    token: String,
    room_id: String,
    host_key: Option<String>,
    server_key: Option<String>,
    identity_seed: Option<String>,
    admit_secret: Option<String>,
    #[serde(default)]
    ice_servers: Vec<JsIceServer>,
}

/// The page's `iceServers`, each parsed into the signaling protocol's bounded
/// type (1..=`MAX_ICE_URLS` `stun:`/`turn:` URLs, fields of at most
/// `MAX_ICE_FIELD_LEN` bytes); more than [`MAX_ICE_SERVERS`] entries is an
/// error, not a silent cut (the message names the option and the entry,
/// never a value: a credential must not end up in an error text).
fn parse_ice_servers(list: &[JsIceServer]) -> Result<Vec<IceServer>, String> {
    if list.len() > MAX_ICE_SERVERS {
        return Err(format!(
            "option `iceServers` lists {} servers; at most {MAX_ICE_SERVERS} are allowed",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let bad =
                |e: watchparty_peer::ids::InvalidValue| format!("option `iceServers[{i}]`: {e}");
            let urls = match &s.urls {
                UrlList::One(u) => vec![u.clone()],
                UrlList::Many(v) => v.clone(),
            };
            let urls = urls
                .into_iter()
                .map(IceUrl::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            if urls.is_empty() {
                return Err(format!("option `iceServers[{i}]` has no URL"));
            }
            let wire = WireIceServer {
                urls: BoundedVec::new(urls).map_err(|_| {
                    format!(
                        "option `iceServers[{i}]` has more than {} URLs",
                        watchparty_peer::signaling::MAX_ICE_URLS
                    )
                })?,
                username: s
                    .username
                    .clone()
                    .map(IceUsername::new)
                    .transpose()
                    .map_err(bad)?,
                credential: s
                    .credential
                    .clone()
                    .map(IceCredential::new)
                    .transpose()
                    .map_err(bad)?,
            };
            Ok(IceServer::from_wire(&wire))
        })
        .collect()
}

fn check_len(name: &str, s: &str) -> Result<(), JsValue> {
    if s.len() > MAX_OPTION_LEN {
        return Err(err(format!(
            "option `{name}` is longer than {MAX_OPTION_LEN} bytes"
        )));
    }
    Ok(())
}

fn random_seed() -> Result<[u8; SEED_LEN], JsValue> {
    let mut seed = [0u8; SEED_LEN];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| err("the browser's random source failed"))?;
    Ok(seed)
}

/// A new room key for a host: `{seed, publicKey}` (both base64url). Create
/// the room with `publicKey` as `host_public_key`, keep `seed` (e.g. in
/// `localStorage`) and pass it as `identitySeed` when joining as host, so
/// invite links pinning `#k=publicKey` keep working.
///
/// # Errors
/// When the random source fails.
#[wasm_bindgen(js_name = generateHostKey)]
pub fn generate_host_key() -> Result<JsValue, JsValue> {
    let seed = random_seed()?;
    let key = SigningKey::from_seed(&seed).map_err(err)?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let out = serde_json::json!({
        "seed": b64.encode(seed),
        "publicKey": key.public_key().to_base64url(),
    });
    js_sys::JSON::parse(&out.to_string())
}

/// The host key in an invite link's fragment (`#k=…` or `k=…`), or `null`.
///
/// # Errors
/// A malformed `k=` value.
#[wasm_bindgen(js_name = hostKeyFromFragment)]
pub fn host_key_from_fragment(fragment: &str) -> Result<Option<String>, JsValue> {
    check_len("fragment", fragment)?;
    let frag = fragment.strip_prefix('#').unwrap_or(fragment);
    parse_invite_fragment(frag)
        .map(|k| k.map(|k| k.to_base64url()))
        .map_err(|e| err(format!("invalid invite link key: {e}")))
}

/// A room connection for the page. See `/work/js-api.md`.
#[wasm_bindgen]
pub struct RoomClient {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for RoomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomClient").finish_non_exhaustive()
    }
}

fn parse_options(options: &JsValue) -> Result<(JsOptions, web_sys::HtmlMediaElement), JsValue> {
    let video = js_sys::Reflect::get(options, &JsValue::from_str("video"))
        .ok()
        .and_then(|v| v.dyn_into::<web_sys::HtmlMediaElement>().ok())
        .ok_or_else(|| err("option `video` must be an HTMLVideoElement or HTMLAudioElement"))?;
    // Everything but the element goes through JSON: the element is not JSON.
    let copy = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
    js_sys::Reflect::delete_property(&copy, &JsValue::from_str("video"))
        .map_err(|_| err("bad options"))?;
    let text = js_sys::JSON::stringify(&copy)
        .map_err(|_| err("options must be a plain object"))?
        .as_string()
        .ok_or_else(|| err("options must be a plain object"))?;
    let opts: JsOptions = serde_json::from_str(&text).map_err(|e| {
        let msg = e.to_string();
        let rule = msg
            .split(['`', '"'])
            .next()
            .unwrap_or("invalid")
            .trim()
            .to_owned();
        err(format!(
            "invalid join options: {rule} ({})",
            field_hint(&msg)
        ))
    })?;
    Ok((opts, video))
}

/// The option name serde complains about, if any (never a value).
fn field_hint(msg: &str) -> String {
    msg.split('`')
        .nth(1)
        .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or("see js-api.md")
        .to_owned()
}

fn build_options(o: &JsOptions) -> Result<(Options, SigningKey), JsValue> {
    for (n, v) in [
        ("signalUrl", &o.signal_url),
        ("apiBase", &o.api_base),
        ("roomId", &o.room_id),
    ] {
        check_len(n, v)?;
    }
    if !(o.signal_url.starts_with("ws://") || o.signal_url.starts_with("wss://")) {
        return Err(err(
            "option `signalUrl` must be an absolute ws:// or wss:// URL",
        ));
    }
    if o.signal_url.contains('?') {
        return Err(err(
            "option `signalUrl` must not carry a query (tokens never go in URLs)",
        ));
    }
    if o.token.is_empty() {
        return Err(err("option `token` is required"));
    }
    let room: RoomId = o
        .room_id
        .parse()
        .map_err(|_| err("option `roomId` is not a room id"))?;
    let key = |name: &str, v: &Option<String>| -> Result<Option<PublicKey>, JsValue> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                PublicKey::from_base64url(s.trim_start_matches("#k=").trim_start_matches("k="))
                    .map_err(|_| err(format!("option `{name}` is not a base64url Ed25519 key")))
            })
            .transpose()
    };
    let pinned_host = key("hostKey", &o.host_key)?;
    let server_key = key("serverKey", &o.server_key)?;
    let identity = match o.identity_seed.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| err("option `identitySeed` is not base64url"))?;
            let seed: [u8; SEED_LEN] = bytes
                .try_into()
                .map_err(|_| err("option `identitySeed` must be 32 bytes"))?;
            SigningKey::from_seed(&seed).map_err(err)?
        }
        None => SigningKey::from_seed(&random_seed()?).map_err(err)?,
    };
    // The room's admission secret (docs/protocol.md §2.2): from the invite
    // link's `a=`, or, for the host (it passes its room key seed), derived
    // from its room key.
    let admit_secret = match o.admit_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            AdmitSecret::from_base64url(s.trim_start_matches("a="))
                .ok_or_else(|| err("option `admitSecret` is not 32 bytes of base64url"))?,
        ),
        None => o
            .identity_seed
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|_| AdmitSecret::derive(&identity)),
    };
    let ice_servers = parse_ice_servers(&o.ice_servers).map_err(err)?;
    let seed_bytes = random_seed()?;
    let mut seed = [0u8; 8];
    seed.copy_from_slice(seed_bytes.get(..8).unwrap_or(&[0; 8]));
    Ok((
        Options {
            signal: SignalMode::WebSocket(o.signal_url.clone()),
            api: Api {
                base: o.api_base.trim_end_matches('/').to_owned(),
                token: o.token.clone(),
            },
            room,
            pinned_host,
            admit_secret,
            server_key,
            ice_servers,
            seed: u64::from_le_bytes(seed),
        },
        identity,
    ))
}

#[wasm_bindgen]
impl RoomClient {
    /// Joins a room: opens signaling, negotiates with every member and
    /// drives `options.video`.
    ///
    /// # Errors
    /// A JS `Error` with a clear message for bad options.
    pub fn join(options: JsValue) -> Result<RoomClient, JsValue> {
        let (o, video) = parse_options(&options)?;
        let (opts, identity) = build_options(&o)?;
        let shared = crate::room::start(video, opts, identity).map_err(err)?;
        Ok(RoomClient { shared })
    }

    /// Sets the event callback (one; a new call replaces it).
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: Option<js_sys::Function>) {
        self.shared.set_on_event(callback);
    }

    /// Runs a command; the promise rejects with `Error(message)` when it
    /// is refused locally (role, policy, rate limit, bad arguments).
    pub async fn command(&self, cmd: JsValue) -> Result<JsValue, JsValue> {
        let text = js_sys::JSON::stringify(&cmd)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| err("a command must be a plain object"))?;
        let parsed = parse_command(&text).map_err(err)?;
        let user = self.to_user_command(parsed).await?;
        self.shared
            .with_driver(|d| d.command(user))
            .map_err(err)?
            .map_err(err)?;
        Ok(JsValue::UNDEFINED)
    }

    async fn to_user_command(&self, cmd: JsCommand) -> Result<UserCommand, JsValue> {
        use crate::room::JsCommand as C;
        use crate::room::command as c;
        Ok(match cmd {
            C::Play => UserCommand::Play,
            C::Pause => UserCommand::Pause,
            C::Seek { position_ms } => UserCommand::Seek(c::position(position_ms).map_err(err)?),
            C::Rate { rate } => UserCommand::Rate(c::rate(rate).map_err(err)?),
            C::Load { media_id } => {
                let api = self.shared.with_driver(|d| d.api()).map_err(err)?;
                let id = media_id.media().map_err(err)?;
                UserCommand::Load(api.media_item(id).await.map_err(err)?)
            }
            C::Queue { media_ids } => {
                let api = self.shared.with_driver(|d| d.api()).map_err(err)?;
                let mut items = Vec::with_capacity(media_ids.len());
                for m in &media_ids {
                    items.push(api.media_item(m.media().map_err(err)?).await.map_err(err)?);
                }
                UserCommand::Queue(items)
            }
            C::Next => UserCommand::Next,
            C::Previous => UserCommand::Previous,
            C::Jump { index } => UserCommand::Jump(index),
            C::Chat { text } => UserCommand::Chat(text),
            C::Reaction { emoji } => UserCommand::Reaction(emoji),
            C::SetRole { member, role } => UserCommand::SetRole {
                member: member.user().map_err(err)?,
                role: c::guest_role(&role).map_err(err)?,
            },
            C::Kick { member } => UserCommand::Kick(member.user().map_err(err)?),
            C::Handoff { member } => UserCommand::Handoff(member.user().map_err(err)?),
            C::Policy {
                buffering,
                wait_timeout_ms,
                controllers,
            } => {
                let current = self
                    .shared
                    .with_driver(|d| d.policy())
                    .map_err(err)?
                    .ok_or_else(|| err("not in a room"))?;
                UserCommand::SetPolicy(
                    c::policy(current, buffering.as_deref(), wait_timeout_ms, controllers)
                        .map_err(err)?,
                )
            }
            C::FreeWatch => UserCommand::FreeWatch,
            C::Resync => UserCommand::Resync,
            C::Ask { what, position_ms } => {
                UserCommand::Ask(c::ask(&what, position_ms).map_err(err)?)
            }
            C::AcceptAsk { member } => UserCommand::AcceptAsk(member.user().map_err(err)?),
            C::DismissAsk { member } => UserCommand::DismissAsk(member.user().map_err(err)?),
            C::Approve { member } => UserCommand::Approve(member.user().map_err(err)?),
        })
    }

    /// A plain-object snapshot (see js-api.md).
    ///
    /// # Errors
    /// After `leave()`.
    pub fn status(&self) -> Result<JsValue, JsValue> {
        let mut v = self.shared.with_driver(|d| d.status()).map_err(err)?;
        if let Some(c) = v.get_mut("counters").and_then(|c| c.as_object_mut()) {
            c.insert("inputs_dropped".into(), self.shared.inputs_dropped().into());
        }
        js_sys::JSON::parse(&v.to_string())
    }

    /// Test diagnostics: sends a `play`/`pause` control frame signed with
    /// this member's own key to every connected peer, bypassing the local
    /// role check (what a tampered page could do). Resolves to the number of
    /// peers it was sent to; they must refuse it (`status().dropped`).
    ///
    /// # Errors
    /// Not joined, bad arguments.
    #[wasm_bindgen(js_name = forgeControl)]
    pub fn forge_control(&self, kind: &str, position_ms: f64) -> Result<u32, JsValue> {
        let paused = match kind {
            "play" => false,
            "pause" => true,
            _ => return Err(err("kind must be `play` or `pause`")),
        };
        if !position_ms.is_finite() || position_ms < 0.0 {
            return Err(err("position_ms must be a finite number >= 0"));
        }
        let n = self
            .shared
            .with_driver(|d| d.forge_control(paused, position_ms as u64))
            .map_err(err)?
            .map_err(err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Call from a click handler after an `autoplay_blocked` event.
    #[wasm_bindgen(js_name = unlockPlayback)]
    pub fn unlock_playback(&self) -> Result<(), JsValue> {
        self.shared
            .with_driver(Driver::unlock_playback)
            .map_err(err)
    }

    /// Uses a refreshed access token from now on.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: String) -> Result<(), JsValue> {
        if token.is_empty() || token.len() > watchparty_peer::signaling::MAX_TOKEN_LEN {
            return Err(err("token is empty or too long"));
        }
        self.shared.with_driver(|d| d.set_token(token)).map_err(err)
    }

    /// Leaves the room: closes connections and signaling, drops every
    /// browser callback. Idempotent.
    pub fn leave(&self) {
        self.shared.shutdown();
    }
}

impl Drop for RoomClient {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<JsIceServer> {
        let list: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"urls": format!("stun:127.0.0.1:{}", 3478 + i)}))
            .collect();
        serde_json::from_value(serde_json::Value::Array(list)).unwrap()
    }

    #[test]
    fn ice_servers_over_the_limit_are_an_error_not_a_cut() {
        let ok = parse_ice_servers(&servers(MAX_ICE_SERVERS)).unwrap();
        assert_eq!(ok.len(), MAX_ICE_SERVERS);
        assert_eq!(ok[0].urls, ["stun:127.0.0.1:3478"]);
        let e = parse_ice_servers(&servers(MAX_ICE_SERVERS + 1)).unwrap_err();
        assert!(e.contains("iceServers") && e.contains("at most 8"), "{e}");
    }

    #[test]
    fn each_ice_server_is_parsed_into_the_bounded_wire_type() {
        let parse = |v: serde_json::Value| {
            let list: Vec<JsIceServer> = serde_json::from_value(v).unwrap();
            parse_ice_servers(&list)
        };
        let five: Vec<String> = (0..5).map(|i| format!("turn:127.0.0.1:{i}")).collect();
        let e = parse(serde_json::json!([{"urls": five}])).unwrap_err();
        assert!(
            e.contains("iceServers[0]") && e.contains("more than 4 URLs"),
            "{e}"
        );
        let e = parse(serde_json::json!([{"urls": []}])).unwrap_err();
        assert!(e.contains("no URL"), "{e}");
        let e = parse(serde_json::json!([{"urls": "stun:a"}, {"urls": "http://x"}])).unwrap_err();
        assert!(e.contains("iceServers[1]"), "{e}");
        let secret = "s3cret\u{7}";
        let e =
            parse(serde_json::json!([{"urls": "turn:a", "username": "u", "credential": secret}]))
                .unwrap_err();
        assert!(
            !e.contains("s3cret"),
            "a credential never ends up in the message: {e}"
        );
        let ok = parse(serde_json::json!([{"urls": ["turn:a", "turns:b"], "username": "u", "credential": "c"}]))
            .unwrap();
        assert_eq!(ok[0].urls, ["turn:a", "turns:b"]);
        assert_eq!(ok[0].username.as_deref(), Some("u"));
        assert_eq!(ok[0].credential.as_deref(), Some("c"));
    }
}
