// The Activity page (administrators only): the server's audit trail and its
// current alerts, from GET /api/v1/admin/audit and /api/v1/admin/audit/alerts.
// Everything is rendered as text (dom.js never assigns innerHTML).
import { api, describeError } from './api.js';
import { h, mount, field, messageBox, showMessage } from './dom.js';

// Plain words for each recorded action (the server's names stay internal).
const ACTIONS = {
  login: 'Sign-in',
  refresh_reuse: 'Old sign-in used again (session ended for safety)',
  logout: 'Sign-out',
  user_created: 'Account created',
  user_disabled: 'Account disabled',
  user_admin_changed: 'Administrator rights changed',
  user_password_reset: 'Password reset',
  library_added: 'Library added',
  library_scanned: 'Library scanned',
  library_granted: 'Library shared with someone',
  library_revoked: 'Library no longer shared with someone',
  room_created: 'Room created',
  room_invited: 'Invited to a room',
  room_joined: 'Joined a room',
  room_left: 'Left a room',
  room_declined: 'Declined an invitation',
  room_role_changed: 'Role in a room changed',
  room_kicked: 'Removed from a room',
  room_handoff: 'Room handed to a new host',
  room_password_changed: 'Room password changed',
  room_invite_only_changed: 'Invite-only setting changed',
  room_ended: 'Room ended',
  room_cleaned_up: 'Room tidied up by the server',
  signal_revoked: 'Connection closed: access ended',
  audit_suppressed: 'Some failed sign-ins were not recorded (too many)',
};
const OUTCOMES = { success: 'done', failure: 'refused', throttled: 'blocked: too many tries' };
const SINCE = [['', 'any time'], ['3600', 'last hour'], ['86400', 'last day'], ['604800', 'last week']];
const PAGE = 50;

function when(secs) {
  return new Date(secs * 1000).toLocaleString();
}

function who(r) {
  if (r.actor_user_id !== null) return `user #${r.actor_user_id}`;
  if (r.actor_kind === 'anonymous') return r.actor_name_hash ? `unknown name (${r.actor_name_hash.slice(0, 8)}…)` : 'someone not signed in';
  if (r.actor_kind === 'operator') return 'server operator';
  return 'the server';
}

function what(r) {
  const parts = [];
  if (r.target_kind === 'user') parts.push(`user #${r.target_id}`);
  if (r.target_kind === 'room') parts.push(`room ${r.target_id.slice(0, 8)}…`);
  if (r.target_kind === 'library') parts.push(`library #${r.target_id}`);
  if (r.room_id && r.target_kind !== 'room') parts.push(`in room ${r.room_id.slice(0, 8)}…`);
  if (r.library_id !== null && r.target_kind !== 'library') parts.push(`library #${r.library_id}`);
  return parts.join(' ');
}

export async function activityPage(main) {
  const msg = messageBox('activity-message');
  const user = h('input', { id: 'activity-user', maxlength: 32, pattern: '[a-z0-9_.\\-]{3,32}', autocomplete: 'off' });
  const room = h('input', { id: 'activity-room', maxlength: 32, pattern: '[0-9a-f]{32}', autocomplete: 'off' });
  const action = h('select', { id: 'activity-action' }, h('option', { value: '' }, 'everything'),
    Object.entries(ACTIONS).map(([k, v]) => h('option', { value: k }, v)));
  const since = h('select', { id: 'activity-since' }, SINCE.map(([v, t]) => h('option', { value: v }, t)));
  const form = h('form', { id: 'activity-filter', class: 'card row wrap' },
    field('Username', user), field('Room id', room), field('What', action), field('When', since),
    h('button', { type: 'submit', class: 'primary' }, 'Show'));
  const alerts = h('ul', { id: 'activity-alerts', class: 'plain' });
  const body = h('tbody', { id: 'activity-rows' });
  const table = h('table', { class: 'activity' },
    h('thead', null, h('tr', null, ['When', 'Who', 'What', 'Result', 'About', 'Details', 'From'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const more = h('button', { id: 'activity-more', type: 'button', hidden: true }, 'Older entries');
  mount(main, h('h1', null, 'Activity'), msg,
    h('section', { class: 'card' }, h('h2', null, 'Alerts'), alerts),
    form, table, more);

  let before = null;
  async function load(reset) {
    showMessage(msg, '');
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (user.value.trim()) q.set('user', user.value.trim());
    if (room.value.trim()) q.set('room', room.value.trim());
    if (action.value) q.set('action', action.value);
    if (since.value) q.set('since', String(Math.floor(Date.now() / 1000) - Number(since.value)));
    if (!reset && before !== null) q.set('before', String(before));
    try {
      const page = await api('GET', '/api/v1/admin/audit?' + q);
      if (reset) body.replaceChildren();
      for (const r of page.records) {
        body.appendChild(h('tr', null,
          h('td', null, when(r.at)), h('td', null, who(r)), h('td', null, ACTIONS[r.action] || r.action),
          h('td', { 'data-outcome': r.outcome }, OUTCOMES[r.outcome] || r.outcome), h('td', null, what(r)),
          h('td', null, r.detail || ''), h('td', null, r.client_ip || '')));
      }
      if (reset && page.records.length === 0) body.appendChild(h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'Nothing recorded.')));
      before = page.next_before ?? null;
      more.hidden = before === null;
    } catch (e) {
      showMessage(msg, describeError(e));
    }
  }
  async function loadAlerts() {
    try {
      const list = await api('GET', '/api/v1/admin/audit/alerts');
      alerts.replaceChildren();
      if (list.length === 0) alerts.appendChild(h('li', { class: 'muted' }, 'No alerts right now.'));
      for (const a of list) {
        const whose = a.per === 'ip' ? `from address ${a.key}` : `by ${a.key.replace(/^user /, 'user #')}`;
        alerts.appendChild(h('li', { class: 'message error' },
          `${ACTIONS[a.action] || a.action}${a.outcome ? ` (${OUTCOMES[a.outcome] || a.outcome})` : ''}: ${a.count} times ${whose} since ${when(a.window_started_at)} (limit ${a.threshold} in ${Math.round(a.window_secs / 60)} minutes)`));
      }
    } catch (e) {
      showMessage(msg, describeError(e));
    }
  }
  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(true); });
  more.addEventListener('click', () => load(false));
  await Promise.all([loadAlerts(), load(true)]);
}
