// watchparty web app: router and the non-room pages.
import * as session from './api.js';
import { api, ApiError, describeError } from './api.js';
import { h, mount, field, messageBox, showMessage, fmtTime } from './dom.js';
import { roomPage, newHostKey, saveHostSeed } from './room.js';
import { activityPage as activity } from './activity.js';

const main = document.getElementById('main');
let me = null;
let cleanup = null; // teardown of the current page (the room page leaves the room)

// ------------------------------------------------------------------ routing

function navigate(path, replace) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a[data-nav]');
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', () => route());
document.getElementById('logout').addEventListener('click', async () => {
  await session.logout();
  me = null;
  navigate('/login');
});
session.onToken((t) => { if (!t) { me = null; updateNav(); } });

function updateNav() {
  const nav = document.getElementById('nav');
  nav.hidden = !me;
  document.getElementById('whoami').textContent = me ? `${me.display_name} (${me.username})` : '';
  document.getElementById('nav-activity').hidden = !(me && me.is_admin);
}

async function refreshInviteCount() {
  const badge = document.getElementById('invite-count');
  try {
    const invites = await api('GET', '/api/v1/invites');
    badge.textContent = String(invites.length);
    badge.hidden = invites.length === 0;
    badge.setAttribute('aria-label', `${invites.length} pending`);
  } catch (_) {
    badge.hidden = true;
  }
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (_) { /* ignore */ } cleanup = null; }
  setBanner('');
  const path = location.pathname;
  if (!session.signedIn()) {
    me = null;
    updateNav();
    if (path !== '/login') sessionStorage.setItem('watchparty.next', path + location.hash);
    loginPage();
    return;
  }
  if (!me) {
    try {
      me = await api('GET', '/api/v1/me');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { session.clearSession(); route(); return; }
      mount(main, h('h1', null, 'watchparty'), h('p', { class: 'message error', role: 'alert' }, describeError(e)));
      return;
    }
  }
  updateNav();
  refreshInviteCount();
  main.focus({ preventScroll: true });
  const m = path.match(/^\/room\/([0-9a-f]{32})\/?$/);
  if (m) { cleanup = roomPage(main, { roomId: m[1], me, setBanner, navigate }); return; }
  if (path === '/rooms') return roomsPage();
  if (path === '/invites') return invitesPage();
  if (path === '/create') return createPage();
  if (path === '/activity') return activityPage();
  if (path === '/login') { navigate(takeNext() || '/', true); return; }
  return mediaPage();
}

function takeNext() {
  const next = sessionStorage.getItem('watchparty.next');
  sessionStorage.removeItem('watchparty.next');
  return next && next.startsWith('/') && !next.startsWith('//') ? next : null;
}

export function setBanner(text, kind) {
  const b = document.getElementById('banner');
  b.textContent = text || '';
  b.hidden = !text;
  b.className = 'banner' + (kind ? ' ' + kind : '');
}

// ------------------------------------------------------------------ sign in

function loginPage() {
  const msg = messageBox('login-message');
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, maxlength: 32 });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 128 });
  const form = h('form', { id: 'login-form', class: 'card narrow' },
    h('h1', null, 'Sign in'),
    field('Username', user),
    field('Password', pass),
    h('button', { id: 'login-submit', type: 'submit', class: 'primary' }, 'Sign in'),
    msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showMessage(msg, '');
    try {
      await session.login(user.value.trim(), pass.value);
      me = null;
      navigate(takeNext() || '/', true);
    } catch (e) {
      showMessage(msg, describeError(e));
      pass.select();
    }
  });

  const rmsg = messageBox('register-message');
  const ruser = h('input', { id: 'reg-username', autocomplete: 'username', required: true, minlength: 3, maxlength: 32, pattern: '[a-z0-9_.\\-]{3,32}' });
  const rname = h('input', { id: 'reg-display', autocomplete: 'nickname', required: true, maxlength: 50 });
  const rpass = h('input', { id: 'reg-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8, maxlength: 128 });
  const reg = h('form', { id: 'register-form', class: 'card narrow' },
    h('h2', null, 'New here? Register'),
    field('Username', ruser, 'lowercase letters, digits, _ . -, 3–32 characters'),
    field('Display name', rname),
    field('Password', rpass, '8–128 characters'),
    h('button', { type: 'submit' }, 'Create account'),
    rmsg);
  reg.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showMessage(rmsg, '');
    try {
      await session.register(ruser.value.trim(), rpass.value, rname.value.trim());
      me = null;
      navigate(takeNext() || '/', true);
    } catch (e) {
      showMessage(rmsg, describeError(e));
    }
  });
  mount(main, h('div', { class: 'stack' }, form, reg));
  user.focus();
}

// ------------------------------------------------------------------ media

async function loadAllMedia(library) {
  const out = [];
  let after = 0;
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ limit: '500', after: String(after) });
    if (library) q.set('library', String(library));
    const items = await api('GET', '/api/v1/media?' + q);
    out.push(...items);
    if (items.length < 500) break;
    after = items[items.length - 1].id;
  }
  return out;
}

async function mediaPage() {
  const msg = messageBox('media-message');
  const list = h('div', { id: 'libraries' }, h('p', { class: 'muted' }, 'Loading…'));
  mount(main, h('h1', null, 'Your media'), msg, list);
  try {
    const [libs, items] = await Promise.all([api('GET', '/api/v1/libraries'), loadAllMedia()]);
    if (libs.length === 0) {
      mount(list, h('p', null, 'No library is shared with you yet. Ask the server admin for access.'));
      return;
    }
    mount(list, libs.map((lib) => h('section', { class: 'card' },
      h('h2', null, lib.name, ' ', h('small', { class: 'muted' }, `${lib.item_count} items`)),
      h('ul', { class: 'media-list' },
        items.filter((i) => i.library_id === lib.id).map((i) => h('li', null,
          h('span', { class: 'title' }, i.title),
          h('small', { class: 'muted' }, ` ${i.kind}, ${i.duration_ms ? fmtTime(i.duration_ms) : 'unknown length'}`,
            i.subtitles.length ? `, subtitles: ${i.subtitles.map((s) => s.language || '?').join(' ')}` : ''),
          ' ',
          h('a', { href: `/create?media=${i.id}`, 'data-nav': true, class: 'button', 'aria-label': `Watch ${i.title} together` }, 'Watch together')))))));
  } catch (e) {
    showMessage(msg, describeError(e));
  }
}

// ------------------------------------------------------------------ rooms list

async function roomsPage() {
  const msg = messageBox('rooms-message');
  const list = h('ul', { id: 'room-list', class: 'plain' });
  mount(main, h('h1', null, 'Your rooms'), msg, list,
    h('p', null, h('a', { href: '/create', 'data-nav': true, class: 'button primary' }, 'Create a room')));
  try {
    const rooms = await api('GET', '/api/v1/rooms');
    if (rooms.length === 0) list.appendChild(h('li', { class: 'muted' }, 'No rooms yet.'));
    for (const r of rooms) {
      list.appendChild(h('li', { class: 'card row' },
        h('a', { href: `/room/${r.id}`, 'data-nav': true }, r.name),
        h('small', { class: 'muted' }, ` ${r.status} · you are ${r.my_role} · ${r.members.filter((m) => m.status === 'joined').length} joined`)));
    }
  } catch (e) {
    showMessage(msg, describeError(e));
  }
}

// ------------------------------------------------------------------ invitations

async function invitesPage() {
  const msg = messageBox('invites-message');
  const list = h('ul', { id: 'invite-list', class: 'plain' });
  mount(main, h('h1', null, 'Invitations'), msg, list);
  let invites;
  try {
    invites = await api('GET', '/api/v1/invites');
  } catch (e) {
    showMessage(msg, describeError(e));
    return;
  }
  if (invites.length === 0) list.appendChild(h('li', { class: 'muted' }, 'No pending invitations.'));
  for (const inv of invites) {
    const accept = h('button', { class: 'primary', 'aria-label': `Accept invitation to ${inv.room_name}` }, 'Accept and join');
    const decline = h('button', { 'aria-label': `Decline invitation to ${inv.room_name}` }, 'Decline');
    const li = h('li', { class: 'card row invite' },
      h('span', null, h('strong', null, inv.room_name), ` from ${inv.host_display_name} (${inv.host_username}) as ${inv.role}`),
      h('span', { class: 'actions' }, accept, decline));
    accept.addEventListener('click', async () => {
      try {
        await api('POST', `/api/v1/invites/${inv.room_id}/accept`);
        navigate(`/room/${inv.room_id}`);
      } catch (e) { showMessage(msg, describeError(e)); }
    });
    decline.addEventListener('click', async () => {
      try {
        await api('POST', `/api/v1/invites/${inv.room_id}/decline`);
        li.remove();
        refreshInviteCount();
      } catch (e) { showMessage(msg, describeError(e)); }
    });
    list.appendChild(li);
  }
}

// ------------------------------------------------------------------ create room

async function createPage() {
  const msg = messageBox('create-message');
  const mediaSel = h('select', { id: 'create-media', required: true });
  const name = h('input', { id: 'create-name', required: true, maxlength: 100, value: 'Movie night' });
  const inviteOnly = h('input', { id: 'create-invite-only', type: 'checkbox', checked: true });
  const password = h('input', { id: 'create-password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128 });
  const invitees = h('fieldset', { id: 'create-invitees' }, h('legend', null, 'Invite people'), h('p', { class: 'muted' }, 'Pick a video first.'));
  const pol = {
    play: h('input', { type: 'checkbox', id: 'pol-play', checked: true }),
    pause: h('input', { type: 'checkbox', id: 'pol-pause', checked: true }),
    seek: h('input', { type: 'checkbox', id: 'pol-seek', checked: true }),
    rate: h('input', { type: 'checkbox', id: 'pol-rate' }),
    load: h('input', { type: 'checkbox', id: 'pol-load' }),
    chat: h('input', { type: 'checkbox', id: 'pol-chat', checked: true }),
    wait: h('input', { type: 'checkbox', id: 'pol-wait', checked: true }),
    waitMs: h('input', { type: 'number', id: 'pol-wait-s', min: 0, max: 120, step: 1, value: 10 }),
  };
  const check = (label, input) => h('label', { class: 'check' }, input, ' ', label);
  const submit = h('button', { id: 'create-submit', type: 'submit', class: 'primary' }, 'Create room');
  const form = h('form', { id: 'create-form', class: 'card' },
    h('h1', null, 'New room'),
    field('Video', mediaSel),
    field('Room name', name),
    invitees,
    h('fieldset', null, h('legend', null, 'Access'),
      check('Invite only (others cannot join even with the link)', inviteOnly),
      field('Room password (optional, for people not invited)', password, 'leave empty for none; 8–128 characters')),
    h('fieldset', null, h('legend', null, 'Controllers may'),
      check('play', pol.play), check('pause', pol.pause), check('seek', pol.seek),
      check('change speed', pol.rate), check('change the video', pol.load)),
    h('fieldset', null, h('legend', null, 'Room rules'),
      check('Viewers may chat', pol.chat),
      check('Wait for everyone who is buffering', pol.wait),
      field('Longest wait for buffering (seconds)', pol.waitMs)),
    submit, msg);
  mount(main, form);

  let items = [];
  try {
    items = await loadAllMedia();
  } catch (e) { showMessage(msg, describeError(e)); return; }
  if (items.length === 0) {
    showMessage(msg, 'You have no media to watch yet: ask the server admin for access to a library.');
    submit.disabled = true;
    return;
  }
  for (const i of items) mediaSel.appendChild(h('option', { value: i.id }, i.title));
  const wanted = new URLSearchParams(location.search).get('media');
  if (wanted && items.some((i) => String(i.id) === wanted)) mediaSel.value = wanted;

  const rows = new Map(); // username -> {check, role}
  async function loadAudience() {
    rows.clear();
    mount(invitees, h('legend', null, 'Invite people'), h('p', { class: 'muted' }, 'Loading who can watch this…'));
    try {
      const people = await api('GET', `/api/v1/media/${mediaSel.value}/audience`);
      const nodes = [h('legend', null, 'Invite people (only those who can access this video)')];
      if (people.length === 0) nodes.push(h('p', { class: 'muted' }, 'Nobody else can access this video.'));
      for (const p of people) {
        const cb = h('input', { type: 'checkbox', id: `inv-${p.username}`, 'data-username': p.username });
        const role = h('select', { id: `inv-role-${p.username}`, 'aria-label': `Role for ${p.display_name}` },
          h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'controller' }, 'controller'));
        rows.set(p.username, { cb, role });
        nodes.push(h('div', { class: 'invitee' }, h('label', { class: 'check' }, cb, ` ${p.display_name} (${p.username})`), role));
      }
      mount(invitees, nodes);
    } catch (e) {
      mount(invitees, h('legend', null, 'Invite people'), h('p', { class: 'message error' }, describeError(e)));
    }
  }
  mediaSel.addEventListener('change', loadAudience);
  await loadAudience();

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showMessage(msg, '');
    const invites = [];
    for (const [username, r] of rows) if (r.cb.checked) invites.push({ username, role: r.role.value });
    const body = {
      name: name.value.trim(),
      media_id: Number(mediaSel.value),
      invite_only: inviteOnly.checked,
      invites,
      policy: {
        controllers: { play: pol.play.checked, pause: pol.pause.checked, seek: pol.seek.checked, rate: pol.rate.checked, load: pol.load.checked },
        viewers_can_chat: pol.chat.checked,
        wait_for_everyone: pol.wait.checked,
        buffer_wait_ms: Math.round(Number(pol.waitMs.value || 0) * 1000),
      },
    };
    if (password.value) body.password = password.value;
    submit.disabled = true;
    try {
      // The room's host key: its public half goes to the server (and into
      // invite links as #k=…), the seed stays in this browser.
      const key = await newHostKey();
      if (key) body.host_public_key = key.publicKey;
      const room = await api('POST', '/api/v1/rooms', body);
      if (key) saveHostSeed(room.id, key.seed);
      navigate(`/room/${room.id}`);
    } catch (e) {
      showMessage(msg, describeError(e));
    } finally {
      submit.disabled = false;
    }
  });
}

// ------------------------------------------------------------------ activity (admins)

function activityPage() {
  if (!me.is_admin) return mediaPage();
  return activity(main);
}

// Route once the refresh cookie has been traded for an access token (or not).
session.ready.then(route);
