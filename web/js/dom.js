// Tiny DOM builder. Strings always become text nodes (never HTML): nothing in
// this app assigns innerHTML, so user-controlled text cannot become markup.

/**
 * h('button', {id: 'x', onclick: fn, disabled: true}, 'text', childNode)
 * Attributes: `class`, `for`, `on<event>` handlers, booleans, plain values.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.className = v;
      } else if (k === 'value') {
        el.value = v;
      } else if (k === 'checked' || k === 'selected') {
        el[k] = !!v;
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: returns [wrapper, input]. */
export function field(label, input, hint) {
  const id = input.id || ('f-' + Math.random().toString(36).slice(2));
  input.id = id;
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input);
  if (hint) {
    const hid = id + '-hint';
    input.setAttribute('aria-describedby', hid);
    wrap.appendChild(h('small', { id: hid, class: 'muted' }, hint));
  }
  return wrap;
}

/** An inline error/status message area. */
export function messageBox(id) {
  return h('p', { id, class: 'message', role: 'alert', 'aria-live': 'assertive', hidden: true });
}

export function showMessage(el, text, kind) {
  if (!el) return;
  el.textContent = text || '';
  el.hidden = !text;
  el.className = 'message' + (kind ? ' ' + kind : ' error');
}

export function fmtTime(ms) {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}
