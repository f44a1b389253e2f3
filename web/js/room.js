// The room page: joins over REST, then hands the <video> to the wasm RoomClient
// (see /work/js-api.md) and renders its events. All user text is set with
// textContent (via dom.js); chat can never become markup.
import { api, ApiError, describeError, accessToken, onToken } from './api.js';
import { h, mount, field, messageBox, showMessage, fmtTime } from './dom.js';

/** Longest chat message (characters), as the protocol allows. */
export const CHAT_MAX_CHARS = 500;
/** Chat lines kept on screen; older ones are removed. */
const CHAT_MAX_LINES = 300;
/** How often the clock, seek bar and sync figures are redrawn (ms). */
const TICK_MS = 250;
/** How long the video may wait for data (a seek, or playback that ran out
 * of buffer) before the page says why it is stuck. Longer than a normal
 * seek on a slow connection, short enough that nobody wonders. */
const STUCK_HINT_MS = 3000;
/** The hint, by whether the server (which also serves the video) answers. */
const STUCK_TEXT = {
  loading: 'Loading this part of the video is taking a while…',
  offline: 'The server cannot be reached, so this part of the video cannot load yet. It continues by itself when the connection is back.',
};
const REACTIONS = ['👍', '😂', '😮', '❤️', '👏', '🍿'];
const BUNDLE = '/pkg/watchparty_wasm_peer.js';

let bundle = null;
async function loadBundle() {
  if (!bundle) {
    bundle = import(BUNDLE).then(async (mod) => { await mod.default(); return mod; });
    bundle.catch(() => { bundle = null; });
  }
  return bundle;
}

/** A fresh host key `{seed, publicKey}` from the bundle, or null without it. */
export async function newHostKey() {
  try {
    const mod = await loadBundle();
    return mod.generateHostKey ? mod.generateHostKey() : null;
  } catch (_) {
    return null;
  }
}

const SEED_PREFIX = 'watchparty.hostkey.';

/** Keeps the host key's seed for this room in this browser (not the session token). */
export function saveHostSeed(roomId, seed) {
  try { localStorage.setItem(SEED_PREFIX + roomId, seed); } catch (_) { /* storage off: the key lives for this page only */ }
}

function hostSeed(roomId) {
  try { return localStorage.getItem(SEED_PREFIX + roomId) || undefined; } catch (_) { return undefined; }
}

function hostKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const k = params.get('k');
  return k && /^[A-Za-z0-9_-]{16,128}$/.test(k) ? k : undefined;
}

/** The room's admission secret from the invite link (`#k=…&a=…`, protocol §2.2). */
function admitSecretFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const a = params.get('a');
  return a && /^[A-Za-z0-9_-]{43}$/.test(a) ? a : undefined;
}

const ADMIT_PREFIX = 'watchparty.admit.';

/**
 * The admission secret for this room: from the link, remembered in this
 * browser, so reopening the room from the room list or a reload still asks
 * the host for approval (the secret is the room's and survives handoffs).
 */
function admitSecret(roomId) {
  const a = admitSecretFromFragment();
  try {
    if (a) localStorage.setItem(ADMIT_PREFIX + roomId, a);
    return a || localStorage.getItem(ADMIT_PREFIX + roomId) || undefined;
  } catch (_) { return a; }
}

function signalUrl(roomId) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/v1/rooms/${roomId}/signal`;
}

/** What the page says about the connection to the server. */
export const CONNECTION_TEXT = {
  host_left: 'The host left. The video plays on for half a minute, then waits until they come back or hand the room over.',
  retrying: 'Lost the connection to the server. Reconnecting… The video keeps playing meanwhile.',
  closed: 'Disconnected from the room. Reload the page to try again.',
};

/** Short words for the connection pill (by the client's connection state). */
const CONNECTION_PILL = { connecting: 'connecting…', open: 'connected', retrying: 'reconnecting…', closed: 'disconnected' };

/** "You are …" by role. */
const ROLE_TEXT = { host: 'You are the host', controller: 'You are a controller', viewer: 'You are a viewer' };

/** Capitalised, with a full stop: `text` as a sentence. */
function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return '';
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(s) ? s : s + '.';
}

export function roomPage(main, { roomId, me, setBanner, navigate }) {
  const ctx = {
    roomId, me, room: null, role: null, policy: null, client: null,
    closed: false, roster: [], you: String(me.id), queue: { items: [], index: 0 }, titles: new Map(),
    media: [], dragging: false, timers: [], unsubs: [], removed: new Set(), connected: false,
  };
  const msg = messageBox('room-message');
  mount(main, h('h1', { id: 'room-title' }, 'Joining room…'), msg);
  enter(ctx, main, msg, setBanner, navigate).catch((e) => showMessage(msg, describeError(e)));
  return () => {
    ctx.closed = true;
    for (const t of ctx.timers) clearInterval(t);
    for (const u of ctx.unsubs) u();
    if (ctx.onKey) document.removeEventListener('keydown', ctx.onKey);
    if (ctx.client) { try { ctx.client.leave(); } catch (_) { /* already closed */ } }
    ctx.client = null;
    if (window.__watchparty_room) delete window.__watchparty_room;
    setBanner('');
  };
}

// ------------------------------------------------------------------ joining

async function enter(ctx, main, msg, setBanner, navigate) {
  const room = await joinOverRest(ctx, main, msg);
  if (!room || ctx.closed) return;
  ctx.room = room;
  ctx.role = room.my_role;
  ctx.policy = room.policy;
  try {
    ctx.media = await api('GET', '/api/v1/media?limit=500');
    for (const m of ctx.media) ctx.titles.set(String(m.id), m.title);
  } catch (_) { /* titles are cosmetic */ }
  const ui = render(ctx, main, setBanner, navigate);
  if (room.status === 'ended') {
    showMessage(ui.msg, 'This room has ended.');
    setEnabled(ctx, ui, false);
    return;
  }
  let mod;
  try {
    mod = await loadBundle();
  } catch (e) {
    showMessage(ui.msg, 'The browser peer (WebAssembly bundle) could not be loaded: ' + describeError(e) +
      '. The server operator must build it (cargo xtask demo builds it).');
    return;
  }
  if (ctx.closed) return;
  try {
    ctx.client = mod.RoomClient.join({
      signalUrl: signalUrl(ctx.roomId),
      apiBase: location.origin,
      token: accessToken(),
      roomId: ctx.roomId,
      hostKey: hostKeyFromFragment(),
      admitSecret: ctx.role === 'host' ? undefined : admitSecret(ctx.roomId),
      identitySeed: ctx.role === 'host' ? hostSeed(ctx.roomId) : undefined,
      video: ui.video,
    });
  } catch (e) {
    console.error('RoomClient.join failed:', e);
    showMessage(ui.msg, 'Could not start the room connection. Reload the page to try again.');
    return;
  }
  window.__watchparty_room = ctx.client;
  // The host's link carries the admission secret its session derived.
  if (ui.invite) ui.invite.value = inviteLink(ctx);
  ctx.unsubs.push(onToken((t) => { if (t && ctx.client) ctx.client.setToken(t); }));
  ctx.client.onEvent((ev) => { if (!ctx.closed) onEvent(ctx, ui, ev, setBanner); });
  ctx.timers.push(setInterval(() => tick(ctx, ui), TICK_MS));
  setEnabled(ctx, ui, true);
}

/** Makes sure we are a joined member; asks for the password when needed. */
async function joinOverRest(ctx, main, msg) {
  let room = null;
  try {
    room = await api('GET', `/api/v1/rooms/${ctx.roomId}`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  if (room && room.my_status === 'joined') return room;
  if (room && room.status === 'ended') { showMessage(msg, 'This room has ended.'); return null; }
  if (room && room.my_status === 'invited') {
    await api('POST', `/api/v1/invites/${ctx.roomId}/accept`).catch((e) => { throw e; });
    return api('GET', `/api/v1/rooms/${ctx.roomId}`);
  }
  try {
    await api('POST', `/api/v1/rooms/${ctx.roomId}/join`, {});
    return api('GET', `/api/v1/rooms/${ctx.roomId}`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'invalid_room_password') {
      return passwordPrompt(ctx, main, msg);
    }
    if (e instanceof ApiError && e.status === 404) {
      // The server never says whether a room exists to people outside it.
      showMessage(msg, notInvitedText(ctx.me));
      return null;
    }
    if (e instanceof ApiError && e.status === 403 && e.code === 'forbidden') {
      showMessage(msg, /removed/.test(e.message || '')
        ? `The host removed you from this room. Ask the host to invite ${ctx.me.username} again.`
        : 'You cannot join this room: the video is not shared with you. Ask the server admin for access.');
      return null;
    }
    throw e;
  }
}

/**
 * What a person outside an invite-only room reads. An invite link (with the
 * host's key after `#k=`) names a room that exists; a bare address may be
 * mistyped, and the server never says which.
 */
export function notInvitedText(me) {
  return hostKeyFromFragment()
    ? `You are not invited to this room. Ask the host to invite ${me.username}.`
    : `This room does not exist, or you are not invited to it. If someone sent you the link, ask them to invite ${me.username}.`;
}

function passwordPrompt(ctx, main, msg) {
  return new Promise((resolve) => {
    const input = h('input', { id: 'room-password', type: 'password', autocomplete: 'off', required: true, maxlength: 128 });
    const pmsg = messageBox('room-password-message');
    const form = h('form', { id: 'room-password-form', class: 'card narrow' },
      h('h1', null, 'This room has a password'),
      field('Room password', input),
      h('button', { type: 'submit', class: 'primary', id: 'room-password-submit' }, 'Join'),
      pmsg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showMessage(pmsg, '');
      try {
        await api('POST', `/api/v1/rooms/${ctx.roomId}/join`, { password: input.value });
        resolve(await api('GET', `/api/v1/rooms/${ctx.roomId}`));
      } catch (e) {
        showMessage(pmsg, describeError(e));
        input.select();
      }
    });
    mount(main, form, msg);
    input.focus();
  });
}

// ------------------------------------------------------------------ rendering

/** Controller permission bits of the session's policy (protocol §message). */
const PERM_BITS = { play: 0x01, pause: 0x01, seek: 0x02, rate: 0x04, load: 0x08 };

function can(ctx, action) {
  if (ctx.role === 'host') return true;
  const policy = ctx.sessionPolicy || ctx.policy;
  if (ctx.role !== 'controller' || !policy) return false;
  const c = policy.controllers;
  // The REST policy has named flags; the session's policy event has bits.
  if (typeof c === 'number') return (c & PERM_BITS[action]) !== 0;
  return !!(c && c[action]);
}
function canChat(ctx) { return ctx.role !== 'viewer' || !!(ctx.policy && ctx.policy.viewers_can_chat); }
function canEditQueue(ctx) { return can(ctx, 'load'); }

function render(ctx, main, setBanner, navigate) {
  const ui = {};
  ui.msg = messageBox('room-message');
  ui.video = h('video', { id: 'video', playsinline: true, preload: 'auto', 'aria-label': 'Room video' });
  ui.autoplay = h('div', { id: 'autoplay-prompt', class: 'overlay', hidden: true },
    h('button', { id: 'autoplay-button', class: 'primary big' }, 'Click to join playback'));
  ui.autoplay.firstChild.addEventListener('click', () => {
    if (ctx.client) ctx.client.unlockPlayback();
    ui.autoplay.hidden = true;
  });
  ui.mediaTitle = h('p', { id: 'media-title', class: 'muted' }, '');
  ui.conn = h('span', { id: 'conn-status', class: 'pill' }, CONNECTION_PILL.connecting);
  ui.roleLabel = h('span', { id: 'my-role', class: 'pill' }, ROLE_TEXT[ctx.role] || '');

  // Transport controls.
  const cmd = (c) => send(ctx, ui, c);
  ui.play = h('button', { id: 'btn-play', type: 'button', onclick: () => cmd({ type: 'play' }) }, '▶ Play');
  ui.pause = h('button', { id: 'btn-pause', type: 'button', onclick: () => cmd({ type: 'pause' }) }, '⏸ Pause');
  ui.back = h('button', { id: 'btn-back', type: 'button', 'aria-label': 'Back 10 seconds', onclick: () => seekBy(ctx, ui, -10000) }, '−10 s');
  ui.fwd = h('button', { id: 'btn-fwd', type: 'button', 'aria-label': 'Forward 10 seconds', onclick: () => seekBy(ctx, ui, 10000) }, '+10 s');
  ui.seek = h('input', { id: 'seek', type: 'range', min: 0, max: 1000, step: 1, value: 0, 'aria-label': 'Position' });
  ui.seek.addEventListener('input', () => { ctx.dragging = true; });
  ui.seek.addEventListener('change', () => {
    ctx.dragging = false;
    const dur = ui.video.duration;
    if (Number.isFinite(dur) && dur > 0) cmd({ type: 'seek', position_ms: Math.round(Number(ui.seek.value) / 1000 * dur * 1000) });
  });
  ui.clock = h('span', { id: 'clock', class: 'clock', 'aria-live': 'off' }, '0:00 / 0:00');
  ui.rate = h('select', { id: 'rate', 'aria-label': 'Playback speed' },
    ['0.5', '0.75', '1', '1.25', '1.5', '2'].map((r) => h('option', { value: r, selected: r === '1' }, r + '×')));
  ui.rate.addEventListener('change', () => cmd({ type: 'rate', rate: Number(ui.rate.value) }));
  // Personal controls: never shared with the room.
  ui.volume = h('input', { id: 'volume', type: 'range', min: 0, max: 1, step: 0.05, value: 1, 'aria-label': 'Volume (only for you)' });
  ui.volume.addEventListener('input', () => { ui.video.volume = Number(ui.volume.value); ui.video.muted = false; });
  ui.subs = h('select', { id: 'subtitles', 'aria-label': 'Subtitles (only for you)' }, h('option', { value: '' }, 'Subtitles off'));
  ui.subs.addEventListener('change', () => {
    const tracks = ui.video.textTracks;
    for (let i = 0; i < tracks.length; i++) tracks[i].mode = String(i) === ui.subs.value ? 'showing' : 'disabled';
  });
  ui.video.textTracks.addEventListener('addtrack', () => refreshSubtitleChoices(ui));
  ui.full = h('button', { id: 'btn-fullscreen', type: 'button', onclick: () => ui.stage.requestFullscreen && ui.stage.requestFullscreen().catch(() => {}) }, 'Full screen');
  ui.freeWatch = h('input', { id: 'free-watch', type: 'checkbox' });
  ui.freeWatch.addEventListener('change', () => cmd({ type: 'free_watch' }));
  ui.resync = h('button', { id: 'btn-resync', type: 'button', onclick: () => { if (ui.freeWatch.checked) ui.freeWatch.checked = false; cmd({ type: 'resync' }); } }, 'Re-sync');

  // Asking the host: for who may not play or pause themselves.
  ui.askPause = h('button', { id: 'ask-pause', type: 'button', onclick: () => askHost(ctx, ui, 'pause') }, 'Ask the host to pause');
  ui.askPlay = h('button', { id: 'ask-play', type: 'button', onclick: () => askHost(ctx, ui, 'play') }, 'Ask the host to play');
  ui.askRow = h('div', { id: 'ask-host', class: 'row wrap', hidden: true }, ui.askPause, ui.askPlay);

  ui.stuck = h('p', { id: 'video-stuck', class: 'stage-hint', role: 'status', hidden: true }, '');
  ui.stage = h('div', { class: 'stage' }, ui.video, ui.autoplay, ui.stuck);
  const controls = h('div', { class: 'controls', role: 'group', 'aria-label': 'Playback controls' },
    h('div', { class: 'row' }, ui.play, ui.pause, ui.back, ui.fwd, ui.clock),
    ui.askRow,
    h('div', { class: 'row' }, ui.seek),
    h('div', { class: 'row wrap' },
      h('label', { for: 'rate' }, 'Speed '), ui.rate,
      h('label', { for: 'volume' }, 'Volume '), ui.volume,
      ui.subs, ui.full,
      h('label', { class: 'check', for: 'free-watch' }, ui.freeWatch, ' Free watch'), ui.resync));

  // Members, and the room's rules in plain words (for everyone).
  ui.members = h('ul', { id: 'members', class: 'plain members', 'aria-label': 'Members' });
  ui.policyText = h('p', { id: 'room-policy', class: 'muted' }, '');
  // Host: what members asked for.
  ui.asks = h('ul', { id: 'asks', class: 'plain members', 'aria-label': 'Requests', 'aria-live': 'polite' });
  ui.asksCard = h('section', { id: 'asks-card', class: 'card', 'aria-labelledby': 'asks-h', hidden: true },
    h('h2', { id: 'asks-h' }, 'Requests'), ui.asks);
  // Queue.
  ui.queue = h('ol', { id: 'queue', class: 'queue', 'aria-label': 'Queue' });
  ui.queueEmpty = h('p', { id: 'queue-empty', class: 'muted', hidden: true }, 'The queue is empty.');
  ui.queueAddSel = h('select', { id: 'queue-add-select', 'aria-label': 'Video to add' },
    ctx.media.map((m) => h('option', { value: m.id }, m.title)));
  ui.queueAdd = h('button', { id: 'queue-add', type: 'button', onclick: () => {
    const ids = currentQueueIds(ctx);
    ids.push(Number(ui.queueAddSel.value));
    cmd({ type: 'queue', media_ids: ids });
  } }, 'Add to queue');
  ui.prev = h('button', { id: 'queue-prev', type: 'button', onclick: () => cmd({ type: 'previous' }) }, '⏮ Previous');
  ui.next = h('button', { id: 'queue-next', type: 'button', onclick: () => cmd({ type: 'next' }) }, 'Skip ⏭');
  // Chat.
  ui.chatLog = h('ul', { id: 'chat-log', class: 'chat-log', 'aria-live': 'polite', 'aria-label': 'Chat messages' });
  // No `maxlength`: the browser would cut pasted text silently. Over the
  // limit the counter says so and Send is off.
  ui.chatInput = h('input', { id: 'chat-input', type: 'text', autocomplete: 'off', 'aria-describedby': 'chat-count' });
  ui.chatCount = h('small', { id: 'chat-count', class: 'muted', 'aria-live': 'polite' }, `0/${CHAT_MAX_CHARS}`);
  ui.chatInput.addEventListener('input', () => updateChatCount(ctx, ui));
  ui.chatSend = h('button', { id: 'chat-send', type: 'submit' }, 'Send');
  const chatForm = h('form', { id: 'chat-form', class: 'chat-form' },
    h('label', { for: 'chat-input', class: 'sr-only' }, 'Chat message'), ui.chatInput, ui.chatSend, ui.chatCount);
  chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.chatInput.value;
    if (!text.trim()) return;
    if ([...text].length > CHAT_MAX_CHARS) { showMessage(ui.msg, chatTooLongText([...text].length)); return; }
    send(ctx, ui, { type: 'chat', text }).then((ok) => {
      if (ok) { ui.chatInput.value = ''; updateChatCount(ctx, ui); }
    });
  });
  ui.reactions = h('div', { class: 'reactions', role: 'group', 'aria-label': 'Quick reactions' },
    REACTIONS.map((e) => h('button', { type: 'button', class: 'reaction', 'aria-label': `React ${e}`, onclick: () => cmd({ type: 'reaction', emoji: e }) }, e)));

  // Host tools.
  ui.invite = h('input', { id: 'invite-link', readonly: true, value: inviteLink(ctx), 'aria-label': 'Invite link' });
  ui.inviteNote = h('p', { id: 'invite-note', class: 'muted' });
  ui.inviteUser = h('input', { id: 'invite-username', type: 'text', autocomplete: 'off', maxlength: 32, list: 'invite-audience', placeholder: 'username', 'aria-label': 'Username to invite' });
  ui.inviteAudience = h('datalist', { id: 'invite-audience' });
  ui.inviteRole = h('select', { id: 'invite-role', 'aria-label': 'Role of the person invited' },
    h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'controller' }, 'controller'));
  ui.inviteSend = h('button', { id: 'invite-send', type: 'submit' }, 'Invite');
  ui.inviteMsg = h('p', { id: 'invite-message', class: 'message', role: 'status', hidden: true });
  ui.invitePending = h('ul', { id: 'invite-pending', class: 'plain', 'aria-label': 'Invited, not joined yet' });
  ui.inviteForm = h('form', { id: 'invite-form', class: 'invite-form' },
    h('label', { for: 'invite-username' }, 'Invite someone'),
    h('div', { class: 'row wrap' }, ui.inviteUser, ui.inviteAudience, ui.inviteRole, ui.inviteSend),
    ui.inviteMsg, ui.invitePending);
  ui.inviteForm.addEventListener('submit', (ev) => { ev.preventDefault(); inviteFromRoom(ctx, ui); });
  ui.copy = h('button', { id: 'copy-invite', type: 'button' }, 'Copy invite link');
  ui.copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(ui.invite.value); ui.copy.textContent = 'Copied'; } catch (_) {
      ui.invite.select(); ui.copy.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { ui.copy.textContent = 'Copy invite link'; }, 2000);
  });
  ui.waitAll = h('input', { id: 'host-wait', type: 'checkbox', checked: !!(ctx.policy && ctx.policy.wait_for_everyone) });
  ui.waitMs = h('input', { id: 'host-wait-s', type: 'number', min: 0, max: 120, value: Math.round(((ctx.policy && ctx.policy.buffer_wait_ms) || 10000) / 1000) });
  ui.applyPolicy = h('button', { id: 'host-policy', type: 'button', onclick: async () => {
    const waitMs = Math.round(Number(ui.waitMs.value || 0) * 1000);
    // Stored on the server (for members joining later) and announced, signed, to the peers.
    try {
      const base = ctx.room.policy || {};
      await api('PATCH', `/api/v1/rooms/${ctx.roomId}`, { policy: Object.assign({}, base, { wait_for_everyone: ui.waitAll.checked, buffer_wait_ms: waitMs }) });
    } catch (e) { showMessage(ui.msg, describeError(e)); return; }
    send(ctx, ui, { type: 'policy', buffering: ui.waitAll.checked ? 'wait_for_everyone' : 'laggards_catch_up', wait_timeout_ms: waitMs });
  } }, 'Apply');
  ui.end = h('button', { id: 'host-end', type: 'button', class: 'danger', onclick: async () => {
    if (!confirm('End the room for everyone?')) return;
    try { await api('POST', `/api/v1/rooms/${ctx.roomId}/end`); } catch (e) { showMessage(ui.msg, describeError(e)); }
  } }, 'End room');
  ui.hostTools = h('section', { id: 'host-tools', class: 'card', 'aria-label': 'Host tools' },
    h('h2', null, 'Host'),
    h('label', { class: 'check' }, ui.waitAll, ' Wait for everyone who is buffering'),
    field('Longest wait (s)', ui.waitMs), ui.applyPolicy, ' ', ui.end);
  ui.leave = h('button', { id: 'room-leave', type: 'button', onclick: async () => {
    try {
      if (ctx.role !== 'host') await api('POST', `/api/v1/rooms/${ctx.roomId}/leave`);
      navigate('/rooms');
    } catch (e) { showMessage(ui.msg, describeError(e)); }
  } }, 'Leave room');

  mount(main,
    h('div', { class: 'room-head' },
      h('h1', { id: 'room-title' }, ctx.room.name), ui.roleLabel, ui.conn, ui.leave),
    ui.msg,
    h('div', { class: 'room' },
      h('section', { class: 'player', 'aria-label': 'Player' }, ui.stage, ui.mediaTitle, controls),
      h('aside', { class: 'side' },
        ui.asksCard,
        h('section', { class: 'card', 'aria-labelledby': 'members-h' }, h('h2', { id: 'members-h' }, 'Members'), ui.members, ui.policyText),
        h('section', { class: 'card', 'aria-labelledby': 'chat-h' }, h('h2', { id: 'chat-h' }, 'Chat'), ui.chatLog, ui.reactions, chatForm),
        h('section', { class: 'card', 'aria-labelledby': 'queue-h' }, h('h2', { id: 'queue-h' }, 'Queue'), ui.queue, ui.queueEmpty,
          h('div', { class: 'row wrap', id: 'queue-tools' }, ui.prev, ui.next, ui.queueAddSel, ui.queueAdd)),
        h('section', { class: 'card', 'aria-labelledby': 'invite-h' }, h('h2', { id: 'invite-h' }, 'Invite'),
          h('div', { class: 'row' }, ui.invite, ui.copy), ui.inviteNote, ui.inviteForm),
        ui.hostTools)));
  ctx.onKey = (ev) => keyboard(ctx, ui, ev);
  document.addEventListener('keydown', ctx.onKey);
  renderMembersFromRest(ctx, ui);
  renderInvites(ctx, ui);
  loadAudience(ctx, ui);
  setEnabled(ctx, ui, false);
  return ui;
}

function inviteLink(ctx) {
  const key = ctx.room.host_public_key || hostKeyFromFragment();
  const status = ctx.client ? safeStatus(ctx) : null;
  const secret = (status && status.admit_secret) || admitSecretFromFragment();
  return `${location.origin}/room/${ctx.roomId}` + (key ? `#k=${key}` : '') + (key && secret ? `&a=${secret}` : '');
}

function keyboard(ctx, ui, ev) {
  if (ctx.closed || !ctx.client) return;
  const t = ev.target;
  if (t && (t.closest('input, textarea, select, button, a') || t.isContentEditable)) return;
  if (ev.key === ' ' || ev.key === 'k') {
    ev.preventDefault();
    const playing = !ui.video.paused;
    if (can(ctx, playing ? 'pause' : 'play')) send(ctx, ui, { type: playing ? 'pause' : 'play' });
  } else if (ev.key === 'j' || ev.key === 'ArrowLeft') {
    if (can(ctx, 'seek')) seekBy(ctx, ui, -10000);
  } else if (ev.key === 'l' || ev.key === 'ArrowRight') {
    if (can(ctx, 'seek')) seekBy(ctx, ui, 10000);
  }
}

function seekBy(ctx, ui, deltaMs) {
  const pos = Math.max(0, Math.round(ui.video.currentTime * 1000) + deltaMs);
  send(ctx, ui, { type: 'seek', position_ms: pos });
}

/** Sends a command; shows the refusal. Resolves to true on success. */
async function send(ctx, ui, cmd) {
  if (!ctx.client) { showMessage(ui.msg, 'Not connected to the room yet.'); return false; }
  try {
    await ctx.client.command(cmd);
    showMessage(ui.msg, '');
    return true;
  } catch (e) {
    // The client's refusals are already plain words (what happened and
    // what to do); shown as one sentence.
    showMessage(ui.msg, sentence(describeError(e)));
    return false;
  }
}

/** Asks the host to `what` (`play` or `pause`); says what happens next. */
async function askHost(ctx, ui, what) {
  if (!ctx.client) { showMessage(ui.msg, 'Not connected to the room yet.'); return; }
  try {
    await ctx.client.command({ type: 'ask', what });
    showMessage(ui.msg, `You asked the host to ${what}. They will see your request.`, 'info');
  } catch (e) {
    showMessage(ui.msg, sentence(describeError(e)));
  }
}

/** Host: the pending asks, each with Accept and Dismiss. */
function renderAsks(ctx, ui) {
  const st = ctx.client ? safeStatus(ctx) : null;
  const list = (st && st.asks) || [];
  ui.asksCard.hidden = ctx.role !== 'host';
  if (list.length === 0) {
    mount(ui.asks, h('li', { class: 'muted' }, 'No requests waiting.'));
    return;
  }
  mount(ui.asks, list.map((a) => {
    const answer = (type) => send(ctx, ui, { type, member: a.member }).then(() => renderAsks(ctx, ui));
    return h('li', { class: 'ask', 'data-user': String(a.member) },
      h('span', { class: 'ask-text' }, a.text),
      h('button', { type: 'button', class: 'ask-accept primary', 'aria-label': `Accept: ${a.text}`, onclick: () => answer('accept_ask') }, 'Accept'),
      h('button', { type: 'button', class: 'ask-dismiss', 'aria-label': `Dismiss: ${a.text}`, onclick: () => answer('dismiss_ask') }, 'Dismiss'));
  }));
}

/** The room's rules in plain words, from the session (host-signed policy). */
function renderPolicy(ctx, ui) {
  const st = ctx.client ? safeStatus(ctx) : null;
  const text = (st && st.policy && st.policy.text) || (ctx.sessionPolicy && ctx.sessionPolicy.text) || '';
  setText(ui.policyText, text);
}

/** The message for chat text of `n` characters, over the limit. */
export function chatTooLongText(n) {
  return `Chat messages can be at most ${CHAT_MAX_CHARS} characters; this one has ${n}. Shorten it to send it.`;
}

function updateChatCount(ctx, ui) {
  const n = [...ui.chatInput.value].length;
  const over = n > CHAT_MAX_CHARS;
  ui.chatCount.textContent = over ? `${n}/${CHAT_MAX_CHARS} — too long by ${n - CHAT_MAX_CHARS}` : `${n}/${CHAT_MAX_CHARS}`;
  ui.chatCount.classList.toggle('warn', n > CHAT_MAX_CHARS - 50);
  ui.chatCount.classList.toggle('over', over);
  ui.chatSend.disabled = over || !ctx.connected || !canChat(ctx);
}

/**
 * Our role now. Once joined, the room client's session is the truth (it
 * applies the host-signed role grants the moment they arrive); the REST
 * view may still be older then.
 */
function syncRole(ctx) {
  const st = ctx.client ? safeStatus(ctx) : null;
  if (st && st.role) ctx.role = st.role;
  return ctx.role;
}

function setEnabled(ctx, ui, connected) {
  ctx.connected = connected;
  const on = (el, yes, why) => {
    el.disabled = !yes;
    if (!yes && why) el.title = why; else el.removeAttribute('title');
  };
  const role = syncRole(ctx);
  const why = role === 'viewer'
    ? 'Only the host and controllers can control playback; use "Ask the host" instead'
    : 'The room\'s rules do not let controllers do this; use "Ask the host" instead';
  on(ui.play, connected && can(ctx, 'play'), why);
  on(ui.pause, connected && can(ctx, 'pause'), why);
  on(ui.seek, connected && can(ctx, 'seek'), why);
  on(ui.back, connected && can(ctx, 'seek'), why);
  on(ui.fwd, connected && can(ctx, 'seek'), why);
  on(ui.rate, connected && can(ctx, 'rate'), why);
  ui.askRow.hidden = !connected || role === 'host' || can(ctx, 'pause');
  const q = connected && canEditQueue(ctx);
  for (const el of [ui.queueAdd, ui.queueAddSel]) on(el, q, why);
  on(ui.chatInput, connected && canChat(ctx), 'Viewers may not chat in this room');
  on(ui.chatSend, connected && canChat(ctx));
  updateChatCount(ctx, ui);
  for (const b of ui.reactions.querySelectorAll('button')) on(b, connected);
  on(ui.freeWatch, connected);
  on(ui.resync, connected);
  ui.hostTools.hidden = role !== 'host';
  ui.leave.hidden = role === 'host';
  ui.roleLabel.textContent = ROLE_TEXT[role] || '';
  ui.roleLabel.dataset.role = role || '';
  ui.inviteForm.hidden = role !== 'host';
  ui.inviteNote.textContent = inviteNote(ctx);
  renderQueue(ctx, ui);
  renderMembers(ctx, ui);
  renderAsks(ctx, ui);
  renderPolicy(ctx, ui);
}

// ------------------------------------------------------------------ events

function onEvent(ctx, ui, ev, setBanner) {
  switch (ev.type) {
    case 'connection': {
      // `detail` (close codes, server reasons) is for diagnostics only.
      ui.conn.textContent = CONNECTION_PILL[ev.state] || '';
      ui.conn.dataset.state = ev.state;
      ctx.connState = ev.state;
      if (ev.state === 'open') setBanner('');
      else if (ev.state === 'retrying') setBanner(CONNECTION_TEXT.retrying, 'warn');
      else if (ev.state === 'closed') { if (!ctx.fatalShown) setBanner(CONNECTION_TEXT.closed, 'error'); setEnabled(ctx, ui, false); }
      break;
    }
    case 'joined':
      ctx.role = ev.role || ctx.role;
      ctx.you = String(ev.you);
      ctx.host = String(ev.host);
      setEnabled(ctx, ui, true);
      // A returning host (reload) first takes the room back from the others
      // ('room_resumed'); a new room starts on its video.
      if (ctx.role === 'host' && !(safeStatus(ctx) || {}).resuming) loadRoomVideo(ctx, ui);
      break;
    case 'room_resumed':
      if (!ev.adopted) loadRoomVideo(ctx, ui);
      break;
    case 'host_returned':
      // The same host reconnected (e.g. reloaded its page): nothing changes.
      setBanner(String(ev.host) === ctx.you ? '' : 'The host is back.', 'info');
      showMessage(ui.msg, '');
      break;
    case 'roster':
      ctx.roster = ev.members || [];
      renderMembers(ctx, ui);
      break;
    case 'member_joined':
      ctx.removed.delete(String(ev.user_id));
      refreshRoom(ctx, ui);
      break;
    case 'member_left':
      refreshRoom(ctx, ui);
      break;
    case 'host_left':
      setBanner(CONNECTION_TEXT.host_left, 'warn');
      break;
    case 'host_changed':
      ctx.host = String(ev.host);
      if (ev.us) ctx.role = 'host';
      else if (ctx.role === 'host') ctx.role = 'controller';
      setBanner(ev.us ? 'You are now the host.' : `${nameOf(ctx, ev.host)} is now the host.`, 'info');
      setEnabled(ctx, ui, ctx.connected);
      refreshRoom(ctx, ui);
      break;
    case 'host_change_refused':
      // The server named another host without the host's signed handoff;
      // the session refused it (the host stays). Say so in plain words.
      setBanner(ev.message, 'warn');
      break;
    case 'role_changed':
      if (String(ev.member) === ctx.you) {
        ctx.role = ev.role;
        showMessage(ui.msg, ev.role === 'controller'
          ? 'The host made you a controller: you can now control playback.'
          : 'The host made you a viewer.', 'info');
      }
      for (const m of ctx.roster) if (String(m.user_id) === String(ev.member)) m.role = ev.role;
      setEnabled(ctx, ui, ctx.connected);
      refreshRoom(ctx, ui);
      break;
    case 'kicked':
      if (ev.us) {
        showMessage(ui.msg, 'The host removed you from this room.');
        setEnabled(ctx, ui, false);
      } else {
        ctx.removed.add(String(ev.member));
        renderMembers(ctx, ui);
        refreshRoom(ctx, ui);
      }
      break;
    case 'chat':
      addChat(ctx, ui, ev.from, ev.name, ev.text, ev.at_ms, false, !!ev.earlier);
      break;
    case 'reaction':
      addChat(ctx, ui, ev.from, null, ev.emoji, null, true);
      break;
    case 'playback':
      ui.video.dataset.playing = ev.playing ? '1' : '0';
      if (ev.rate) ui.rate.value = String(ev.rate);
      break;
    case 'media':
      if (ev.state === 'failed') showMessage(ui.msg, 'The video could not be loaded. Check your connection, then reload the page.');
      ui.mediaTitle.textContent = (ev.title || ctx.titles.get(String(ev.media_id)) || '') + (ev.state === 'loading' ? ' (loading…)' : '');
      if (ev.state === 'ready') ensureSubtitles(ctx, ui);
      break;
    case 'policy':
      if (ev.policy) { ctx.sessionPolicy = ev.policy; setEnabled(ctx, ui, ctx.connected); }
      break;
    case 'asks':
      renderAsks(ctx, ui);
      break;
    case 'queue':
      ctx.queue = { items: ev.items || [], index: ev.index || 0 };
      renderQueue(ctx, ui);
      break;
    case 'autoplay_blocked':
      ui.autoplay.hidden = false;
      ui.autoplay.querySelector('button').focus();
      break;
    case 'autoplay_unblocked':
      // Also when the viewer started the video another way.
      ui.autoplay.hidden = true;
      break;
    case 'not_waited_for':
      // Host: a member kept stalling; the room plays on without it.
      setBanner(ev.message, 'warn');
      renderMembers(ctx, ui);
      break;
    case 'dropped':
      ctx.dropped = (ctx.dropped || 0) + 1;
      break;
    case 'error':
      showMessage(ui.msg, friendlyError(ev));
      if (FATAL_CODES.has(ev.code)) ctx.fatalShown = true;
      break;
    case 'room_ended':
      showMessage(ui.msg, ENDED_TEXT[ev.reason] || ENDED_TEXT.closed);
      setBanner('');
      setEnabled(ctx, ui, false);
      break;
    default:
      break;
  }
}

/** Why a room ended, as people read it (by the event's `reason`). */
const ENDED_TEXT = {
  closed: 'The host ended the room.',
  expired: 'The room ended because nobody used it for a long time.',
  kicked: 'The host removed you from this room.',
  other: 'The room has ended.',
};

/** Error codes after which the client stops (no reconnect). */
const FATAL_CODES = new Set(['auth', 'unauthorized', 'not_member', 'bad_url', 'session']);

/**
 * Plain words for the room client's error events, by code. Codes and the
 * client's own `message` never reach the page as they are.
 */
const ERROR_EVENT_TEXT = {
  auth: 'Your sign-in has expired. Sign in again to rejoin the room.',
  unauthorized: 'Your sign-in has expired. Sign in again to rejoin the room.',
  not_member: 'You are no longer a member of this room, or it has ended. Ask the host to invite you again.',
  bad_url: 'Could not connect to the room server. Reload the page to try again.',
  session: 'Could not start the room here. Reload the page to try again.',
  webrtc: 'Your browser could not open a connection to another member. Reloading the page may help.',
  certificate_refused: 'A member\'s pass for this room could not be checked, so you are not connected to them. It usually sorts itself out when they reconnect.',
  certificate_expired: 'A member\'s pass for this room expired; they reconnect on their own.',
  server_key_mismatch: 'The server answered with a different identity than before, so it is not trusted. Tell the server operator.',
  binding_mismatch: 'The connection to the host could not be verified and was closed for safety. Tell the server operator if this keeps happening.',
  binding_missing: 'The connection to the host could not be verified in time, so it was closed for safety; the room still reaches you through the other members. Tell the server operator if this keeps happening.',
  forbidden: 'The server did not allow that.',
  bad_request: 'The server did not understand a message from this page. Reload the page.',
  unsupported_protocol: 'This page is older than the server. Reload the page.',
  not_found: 'That room or member no longer exists.',
  room_full: 'The room is full.',
  rate_limited: 'Too many messages at once; wait a moment and try again.',
  internal: 'The server had a problem. Try again in a moment.',
};

/** What a failed host action (over REST) means to the host, by `what`. */
const REST_ACTION_TEXT = {
  'role change': 'The server did not accept the role change. Reload the page to see the current roles.',
  kick: 'The server did not remove that member. Reload the page and try again.',
  handoff: 'The server did not hand the room over (the new host must be in the room). Try again.',
};

/** The host starts the room on its video if nothing is loaded yet. */
function loadRoomVideo(ctx, ui) {
  const st = safeStatus(ctx);
  if (st && !st.loaded && ctx.room && ctx.room.media_id) send(ctx, ui, { type: 'load', media_id: String(ctx.room.media_id) });
}

function friendlyError(ev) {
  if (ev.code === 'refused') return sentence(ev.message || 'The host refused the request');
  if (ev.code === 'rest') {
    const what = ev.what || Object.keys(REST_ACTION_TEXT).find((w) => String(ev.message || '').startsWith(w));
    return REST_ACTION_TEXT[what] || 'The server did not accept that. Try again.';
  }
  return ERROR_EVENT_TEXT[ev.code] || 'Something went wrong in the room connection. Reloading the page may help.';
}

async function refreshRoom(ctx, ui) {
  try {
    const room = await api('GET', `/api/v1/rooms/${ctx.roomId}`);
    if (ctx.closed) return;
    ctx.room = room;
    ctx.policy = room.policy;
    // The server's record of roles can be overruled by the room itself: a
    // host that refused a host change it never signed is still the host.
    // Before the session joined, the REST role is all we know; after it,
    // the session's (host-signed, applied at once) wins over this read,
    // which can be older than the grant that prompted it.
    const st = safeStatus(ctx);
    if (st && st.is_host) ctx.role = 'host';
    else if (room.my_role && !(ctx.client && st && st.role)) ctx.role = room.my_role;
    renderInvites(ctx, ui);
    setEnabled(ctx, ui, !!ctx.client && ctx.connected);
  } catch (_) { /* shown through events */ }
}

function ensureSubtitles(ctx, ui) {
  // The player adapter adds the item's subtitles as <track>s; each viewer picks their own.
  refreshSubtitleChoices(ui);
}

function refreshSubtitleChoices(ui) {
  const current = ui.subs.value;
  const tracks = ui.video.textTracks;
  const opts = [h('option', { value: '' }, 'Subtitles off')];
  for (let i = 0; i < tracks.length; i++) {
    opts.push(h('option', { value: String(i) }, tracks[i].label || tracks[i].language || `Track ${i + 1}`));
  }
  mount(ui.subs, opts);
  ui.subs.value = current;
}

function nameOf(ctx, id) {
  const key = String(id);
  const r = ctx.roster.find((m) => String(m.user_id) === key);
  if (r && r.name) return r.name;
  const m = ctx.room && ctx.room.members.find((x) => String(x.user_id) === key);
  return m ? m.display_name : `user ${key}`;
}

/**
 * One chat line. `earlier`: a message sent before we joined, which the host
 * offered from its chat history; marked "earlier" and kept, in the order
 * they came, above every live line.
 */
function addChat(ctx, ui, from, name, text, atMs, isReaction, earlier) {
  const who = name || nameOf(ctx, from);
  const time = new Date(atMs || Date.now()).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const cls = isReaction ? 'reaction-line' : earlier ? 'chat-line earlier' : 'chat-line';
  const li = h('li', { class: cls },
    h('time', { class: 'muted' }, time), ' ', h('strong', null, who), ' ');
  if (earlier) li.appendChild(h('span', { class: 'earlier-label' }, 'earlier'));
  const body = h('span', { class: 'chat-text' });
  body.textContent = String(text); // literal text, never markup
  li.appendChild(body);
  const firstLive = earlier ? ui.chatLog.querySelector('li:not(.earlier)') : null;
  ui.chatLog.insertBefore(li, firstLive);
  while (ui.chatLog.children.length > CHAT_MAX_LINES) ui.chatLog.firstChild.remove();
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

// ------------------------------------------------------------------ members

function renderMembersFromRest(ctx, ui) {
  ctx.roster = ctx.room.members.filter((m) => m.status === 'joined').map((m) => ({
    user_id: m.user_id, name: m.display_name, role: m.role, online: false, connection: 'unknown',
  }));
  renderMembers(ctx, ui);
}

/** Playback offsets under this many ms read as "in sync". */
const IN_SYNC_MS = 20;

/**
 * The sync figure of a member: how far its playback is from the room's
 * (the member's own measurement for us, its report for the host), never a
 * clock difference between machines. Empty when this page does not know.
 * A member whose player kept stalling (the host's hold allowance ran out)
 * says so: the room plays on without waiting for it.
 */
function syncText(errorMs, buffering, detached, waitedFor) {
  if (detached) return 'watching on their own (free watch)';
  if (waitedFor === false) return 'kept stalling: the room does not wait for them';
  if (buffering) return 'loading the video…';
  if (!Number.isFinite(errorMs)) return '';
  const ms = Math.round(Math.abs(errorMs));
  if (ms < IN_SYNC_MS) return `in sync (${ms} ms off)`;
  return `${ms} ms ${errorMs > 0 ? 'ahead of' : 'behind'} the room`;
}

/** Words for a member's connection to us. */
function connectionText(state, online) {
  switch (state) {
    case 'connected': return 'connected';
    case 'connecting': return 'connecting…';
    case 'disconnected': return 'reconnecting…';
    case 'failed': return 'connection failed';
    case 'none': return online ? 'not connected yet' : 'away';
    case 'unknown': return '';
    default: return online ? 'here' : 'away';
  }
}

/**
 * Renders the member list in place: existing rows are updated, not rebuilt,
 * so the host's buttons keep the keyboard focus while roles change.
 */
function renderMembers(ctx, ui) {
  if (!ui.members) return;
  const status = ctx.client ? safeStatus(ctx) : null;
  const peers = new Map(((status && status.peers) || []).map((p) => [String(p.user_id), p]));
  const hostView = ctx.role === 'host';
  ui.memberRows = ui.memberRows || new Map();
  const rows = [];
  const seen = new Set();
  for (const m of ctx.roster) {
    const id = String(m.user_id);
    if (ctx.removed.has(id) || seen.has(id)) continue;
    seen.add(id);
    const you = id === ctx.you;
    const p = peers.get(id) || {};
    let row = ui.memberRows.get(id);
    if (!row) {
      row = {
        name: h('span', { class: 'name' }),
        role: h('span', { class: 'pill role' }),
        conn: h('span', { class: 'pill conn' }),
        sync: h('small', { class: 'sync muted' }),
        actions: null,
        actionsKey: null,
      };
      row.li = h('li', { class: 'member', 'data-user': id }, row.name, row.role, row.conn, row.sync);
      ui.memberRows.set(id, row);
    }
    const name = nameOf(ctx, id);
    setText(row.name, name + (you ? ' (you)' : ''));
    setText(row.role, m.role);
    row.li.dataset.role = m.role;
    const state = you ? 'self' : (m.connection || (m.online ? 'online' : 'offline'));
    row.conn.hidden = you;
    row.conn.dataset.state = state;
    let connText = connectionText(state, m.online);
    if (!you && m.role === 'host' && ctx.role !== 'host' && p.linked) {
      // Whether the host's signature vouches for this very connection.
      connText += p.bound ? ', verified link' : ', link not verified yet';
    }
    const unapproved = !you && m.role !== 'host' && !!status && status.admission && p.admitted === false;
    if (unapproved) {
      // The server let it in, the host never approved it: nobody hears it.
      connText += ', not approved by the host';
    }
    row.li.dataset.admitted = unapproved ? 'false' : 'true';
    setText(row.conn, connText);
    let err = m.error_ms ?? p.error_ms;
    let buffering = m.buffering ?? p.buffering;
    let detached = p.detached;
    if (you) {
      // Our own offset from the room, as our sync engine measures it.
      err = status && status.sync && ctx.role !== 'host' ? status.sync.error_ms : null;
      buffering = false;
      detached = !!(status && status.free_watch);
    }
    if (m.role === 'host') err = null; // the host's playback is the room's
    if (!you && m.problem) {
      // The link could not be established: which member, what was tried,
      // what to do (the peer's words, shared with the native CLI).
      row.conn.dataset.state = 'failed';
      setText(row.conn, connectionText('failed', m.online));
      setText(row.sync, m.problem);
      row.sync.classList.add('problem');
    } else {
      row.sync.classList.remove('problem');
      setText(row.sync, syncText(err, buffering, detached, you ? null : (m.waited_for ?? p.waited_for)));
    }
    const key = hostView && !you && m.role !== 'host' ? 'guest' : '';
    if (row.actionsKey !== key) {
      if (row.actions) row.actions.remove();
      row.actions = key ? memberActions(ctx, ui, id) : null;
      row.actionsKey = key;
      if (row.actions) row.li.appendChild(row.actions);
    }
    if (row.actions) {
      const toggle = row.actions.querySelector('.role-toggle');
      const next = m.role === 'controller' ? 'viewer' : 'controller';
      toggle.dataset.role = next;
      setText(toggle, next === 'controller' ? 'Make controller' : 'Make viewer');
      toggle.setAttribute('aria-label', `Make ${name} a ${next}`);
      row.actions.querySelector('.approve').hidden = !unapproved;
    }
    rows.push(row.li);
  }
  for (const id of [...ui.memberRows.keys()]) if (!seen.has(id)) ui.memberRows.delete(id);
  const current = [...ui.members.children];
  if (rows.length === 0) {
    mount(ui.members, h('li', { class: 'muted' }, 'Nobody here yet.'));
  } else if (current.length !== rows.length || current.some((el, i) => el !== rows[i])) {
    mount(ui.members, rows);
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function memberActions(ctx, ui, id) {
  const name = () => nameOf(ctx, id);
  const toggle = h('button', { type: 'button', class: 'role-toggle' });
  toggle.addEventListener('click', () => send(ctx, ui, { type: 'set_role', member: id, role: toggle.dataset.role }));
  const approve = h('button', { type: 'button', class: 'approve', 'aria-label': `Approve ${name()}: let the room hear them`,
    onclick: () => { if (confirm(`${name()} joined without your invite link. Let the room hear them?`)) send(ctx, ui, { type: 'approve', member: id }); } }, 'Approve');
  return h('span', { class: 'actions' }, approve, toggle,
    h('button', { type: 'button', class: 'make-host', 'aria-label': `Make ${name()} the host`, onclick: () => { if (confirm(`Hand the room over to ${name()}?`)) send(ctx, ui, { type: 'handoff', member: id }); } }, 'Make host'),
    h('button', { type: 'button', class: 'danger remove', 'aria-label': `Remove ${name()}`, onclick: () => { if (confirm(`Remove ${name()} from the room?`)) send(ctx, ui, { type: 'kick', member: id }); } }, 'Remove'));
}

// ------------------------------------------------------------------ invites

function inviteNote(ctx) {
  const room = ctx.room || {};
  if (room.invite_only) {
    return ctx.role === 'host'
      ? 'Only people you invite can join, even with the link. Invite them below, then send them the link.'
      : 'Only people the host invites can join, even with the link.';
  }
  return room.has_password
    ? 'Anyone with the link and the room password can join.'
    : 'Anyone with the link can join.';
}

/** The host's list of people invited who have not joined yet. */
function renderInvites(ctx, ui) {
  if (!ui.invitePending) return;
  const invited = ((ctx.room && ctx.room.members) || []).filter((m) => m.status === 'invited');
  mount(ui.invitePending, invited.map((m) => h('li', { class: 'invited', 'data-user': String(m.user_id) },
    `${m.display_name} (${m.username}) — invited as ${m.role}, not joined yet`)));
}

/** Suggestions for the invite box: people who may watch the room's video. */
async function loadAudience(ctx, ui) {
  if (!ctx.room || !ctx.room.media_id || ctx.room.my_role !== 'host') return;
  try {
    const people = await api('GET', `/api/v1/media/${ctx.room.media_id}/audience`);
    mount(ui.inviteAudience, people.map((p) => h('option', { value: p.username }, p.display_name)));
  } catch (_) { /* suggestions only */ }
}

async function inviteFromRoom(ctx, ui) {
  const username = ui.inviteUser.value.trim().toLowerCase();
  const role = ui.inviteRole.value;
  const say = (text, kind) => { ui.inviteMsg.textContent = text; ui.inviteMsg.hidden = !text; ui.inviteMsg.className = 'message ' + (kind || 'info'); };
  if (!username) { say('Type the username of the person to invite.', 'error'); return; }
  ui.inviteSend.disabled = true;
  try {
    const room = await api('POST', `/api/v1/rooms/${ctx.roomId}/members`, { username, role });
    if (room && room.members) { ctx.room = room; renderInvites(ctx, ui); }
    ui.inviteUser.value = '';
    say(`Invited ${username} as ${role}. Send them the link above; the invitation also waits for them under Invitations.`);
  } catch (e) {
    say(inviteErrorText(e, username), 'error');
  } finally {
    ui.inviteSend.disabled = false;
  }
}

function inviteErrorText(e, username) {
  if (!(e instanceof ApiError)) return describeError(e);
  if (e.code === 'invalid_request') return `There is no user named ${username} on this server.`;
  if (e.code === 'conflict') {
    return /too many/.test(e.message || '')
      ? 'The room has too many members and invitations; nobody more can be invited.'
      : `${username} is already in the room or invited.`;
  }
  if (e.code === 'forbidden') return `${username} cannot watch this room's videos, so they cannot be invited. Ask the server admin to share the library with them.`;
  if (e.code === 'room_ended') return 'The room has ended.';
  return describeError(e);
}

function safeStatus(ctx) {
  try { return ctx.client.status(); } catch (_) { return null; }
}

// ------------------------------------------------------------------ queue

function currentQueueIds(ctx) {
  return (ctx.queue.items || []).map((it) => Number(typeof it === 'object' ? it.media_id : it));
}

function renderQueue(ctx, ui) {
  if (!ui.queue) return;
  const ids = currentQueueIds(ctx);
  const edit = !!ctx.client && canEditQueue(ctx);
  const rows = ids.map((id, i) => {
    const title = ctx.titles.get(String(id)) || `video ${id}`;
    const li = h('li', { class: i === ctx.queue.index ? 'current' : '', 'aria-current': i === ctx.queue.index ? 'true' : null }, h('span', null, title));
    if (edit) {
      const move = (to) => { const next = ids.slice(); const [x] = next.splice(i, 1); next.splice(to, 0, x); send(ctx, ui, { type: 'queue', media_ids: next }); };
      li.appendChild(h('span', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Play ${title} now`, onclick: () => send(ctx, ui, { type: 'jump', index: i }) }, 'Play'),
        h('button', { type: 'button', 'aria-label': `Move ${title} up`, disabled: i === 0, onclick: () => move(i - 1) }, '↑'),
        h('button', { type: 'button', 'aria-label': `Move ${title} down`, disabled: i === ids.length - 1, onclick: () => move(i + 1) }, '↓'),
        h('button', { type: 'button', 'aria-label': `Remove ${title} from the queue`, onclick: () => { const next = ids.slice(); next.splice(i, 1); send(ctx, ui, { type: 'queue', media_ids: next }); } }, '✕')));
    }
    return li;
  });
  mount(ui.queue, rows);
  ui.queue.hidden = rows.length === 0;
  ui.queueEmpty.hidden = rows.length !== 0;
  // Previous/Skip only where there is somewhere to go.
  const at = ctx.queue.index || 0;
  const why = 'Only the host and controllers who may change the video can do this';
  const canPrev = edit && ctx.connected && at > 0;
  const canNext = edit && ctx.connected && at < ids.length - 1;
  ui.prev.disabled = !canPrev;
  ui.next.disabled = !canNext;
  ui.prev.title = canPrev ? '' : (edit ? 'This is the first video in the queue' : why);
  ui.next.title = canNext ? '' : (edit ? 'This is the last video in the queue' : why);
}

// ------------------------------------------------------------------ tick

/** Says so when the video has waited for data for [`STUCK_HINT_MS`]: a
 * seek past what was downloaded, or playback that ran out of it — and why,
 * when the server is unreachable. */
function renderStuck(ctx, ui) {
  const v = ui.video;
  const waiting = v.seeking || (!v.paused && !v.ended && v.readyState < HTMLMediaElement.HAVE_FUTURE_DATA);
  if (!waiting) { ctx.stuckSince = null; ui.stuck.hidden = true; return; }
  const now = performance.now();
  if (ctx.stuckSince == null) ctx.stuckSince = now;
  if (now - ctx.stuckSince < STUCK_HINT_MS) return;
  const offline = ctx.connState === 'retrying' || ctx.connState === 'closed' || navigator.onLine === false;
  ui.stuck.textContent = offline ? STUCK_TEXT.offline : STUCK_TEXT.loading;
  ui.stuck.dataset.reason = offline ? 'offline' : 'loading';
  ui.stuck.hidden = false;
}

function tick(ctx, ui) {
  const v = ui.video;
  const dur = Number.isFinite(v.duration) ? v.duration : 0;
  ui.clock.textContent = `${fmtTime(v.currentTime * 1000)} / ${fmtTime(dur * 1000)}`;
  if (!ctx.dragging && dur > 0) ui.seek.value = String(Math.round(v.currentTime / dur * 1000));
  renderStuck(ctx, ui);
  const st = safeStatus(ctx);
  if (st) {
    if (typeof st.free_watch === 'boolean' && document.activeElement !== ui.freeWatch) ui.freeWatch.checked = st.free_watch;
    // A role the session applied without an event for the page (e.g. a
    // re-issued certificate) shows within one tick.
    if (st.role && st.role !== ctx.role) setEnabled(ctx, ui, ctx.connected);
    ctx.ticks = (ctx.ticks || 0) + 1;
    if (ctx.ticks % 4 === 0) renderMembers(ctx, ui);
  }
}
