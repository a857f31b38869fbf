// Building elements and formatting values. Text from the API only ever reaches the page through
// text nodes and attribute values, never as HTML.

/**
 * Creates an element. `attributes` contains attribute values, with `class`, `text` (the text
 * content), `hidden`, `disabled`, `checked` and `value` set as properties, and `on<event>`
 * functions added as listeners. Children are elements or strings; strings become text nodes, and
 * null, undefined and false are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      element.textContent = String(value);
    } else if (['hidden', 'disabled', 'checked', 'value', 'required', 'multiple'].includes(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, ...children);
  return element;
}

/** Appends children (elements, strings or nested arrays of them) to `parent`. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

/** Formats an RFC 3339 time as `2026-01-14 09:30 UTC`, or `-` when there is none. */
export function formatTime(value) {
  if (!value) {
    return '-';
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    return String(value);
  }
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * Formats whole days left as the API counts them: rounded down, so negative once expired, and a
 * certificate that expired 5 and a half days ago has -6.
 */
export function formatDaysLeft(days) {
  return `${days} ${Math.abs(days) === 1 ? 'day' : 'days'}`;
}

/** Builds a badge whose colour follows `kind`, such as a status (`valid`) or a sync state (`failed`). */
export function badge(kind, text = kind) {
  return h('span', { class: `badge badge-${String(kind).replace(/[^a-z_-]/g, '')}`, text });
}

/** Builds a definition list from `[term, description]` pairs; a description may be an element. */
export function definitions(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([term, description]) => [h('dt', { text: term }), h('dd', {}, description)]));
}

/** Builds a table with a caption, column headings and rows of cells (strings or elements). */
export function table(caption, headings, rows, attributes = {}) {
  return h(
    'table',
    attributes,
    caption ? h('caption', { text: caption }) : null,
    h('thead', {}, h('tr', {}, headings.map((heading) => h('th', { scope: 'col', text: heading })))),
    h('tbody', {}, rows),
  );
}

/** Builds a file picker that reads the chosen file as text into `textarea` and names the file in `note`. */
export function fileLoader(textarea, note) {
  return h('input', {
    type: 'file',
    accept: '.pem,.crt,.cer,.key,.txt,text/plain,application/x-pem-file',
    onchange: async (event) => {
      const [file] = event.target.files;
      if (!file) {
        return;
      }
      textarea.value = await file.text();
      note.textContent = `Loaded ${file.name} (${file.size} bytes).`;
      textarea.dispatchEvent(new Event('input'));
    },
  });
}

let fieldCounter = 0;

/**
 * Builds a labelled form field with a hint and an error slot, linked with `aria-describedby`.
 * `control` is the input, textarea or select; `extra` goes between it and the error, such as a
 * file picker. Returns the wrapper, whose `showError(message)` and `clearError()` change the
 * slot and the control's `aria-invalid`.
 */
export function field(labelText, control, hint = '', extra = []) {
  fieldCounter += 1;
  const id = control.id || `field-${fieldCounter}`;
  control.id = id;
  const hintElement = hint ? h('p', { class: 'hint', id: `${id}-hint`, text: hint }) : null;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  control.setAttribute('aria-describedby', [hintElement ? `${id}-hint` : '', `${id}-error`].filter(Boolean).join(' '));
  const wrapper = h('div', { class: 'field' }, h('label', { for: id, text: labelText }), hintElement, control, extra, error);
  wrapper.control = control;
  wrapper.error = error;
  wrapper.showError = (message) => {
    error.textContent = message;
    error.hidden = false;
    control.setAttribute('aria-invalid', 'true');
  };
  wrapper.clearError = () => {
    error.textContent = '';
    error.hidden = true;
    control.removeAttribute('aria-invalid');
  };
  return wrapper;
}

/** Builds a checkbox with its label after it, with `role="switch"` when `isSwitch`. */
export function checkbox(labelText, { id, checked = false, isSwitch = false, hint = '' } = {}) {
  fieldCounter += 1;
  const inputId = id || `check-${fieldCounter}`;
  const input = h('input', { type: 'checkbox', id: inputId, checked, role: isSwitch ? 'switch' : null });
  const hintElement = hint ? h('p', { class: 'hint', id: `${inputId}-hint`, text: hint }) : null;
  if (hintElement) {
    input.setAttribute('aria-describedby', `${inputId}-hint`);
  }
  const wrapper = h('div', { class: isSwitch ? 'field check switch' : 'field check' }, input, h('label', { for: inputId, text: labelText }), hintElement);
  wrapper.control = input;
  return wrapper;
}

/** Splits `key=value, key=value` into an object of labels, trimming each part. */
export function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((piece) => piece.trim()).filter(Boolean)) {
    const separator = part.indexOf('=');
    if (separator < 0) {
      labels[part] = '';
    } else {
      labels[part.slice(0, separator).trim()] = part.slice(separator + 1).trim();
    }
  }
  return labels;
}

/** Joins labels as `key=value, key=value`. */
export function formatLabels(labels) {
  const entries = Object.entries(labels || {});
  return entries.length ? entries.map(([key, value]) => `${key}=${value}`).join(', ') : '-';
}

/**
 * Asks for confirmation in a modal dialog with `title`, the `body` elements and a button named
 * `confirmLabel`. Escape and Cancel close it. Resolves to true when confirmed.
 */
export function confirmDialog(title, body, confirmLabel) {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', text: 'Cancel' });
    const confirm = h('button', { type: 'button', class: 'danger', text: confirmLabel });
    const heading = h('h2', { id: 'confirm-title', text: title });
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' }, heading, body, h('div', { class: 'actions' }, cancel, confirm));
    let confirmed = false;
    cancel.addEventListener('click', () => dialog.close());
    confirm.addEventListener('click', () => {
      confirmed = true;
      dialog.close();
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(confirmed);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Messages kept for the next view, such as the warnings of a write that navigated away. */
let flashMessages = [];

/** Keeps `messages` (`{kind, text}`) for the next view that calls takeFlash. */
export function setFlash(messages) {
  flashMessages = messages;
}

/** Returns the kept messages as a list element, or null, and clears them. */
export function takeFlash() {
  const messages = flashMessages;
  flashMessages = [];
  return messages.length ? notices(messages) : null;
}

/** Builds a list of notices, each `{kind: 'info' | 'warning' | 'error', text}`. */
export function notices(messages) {
  return h(
    'ul',
    { class: 'notices', role: 'status' },
    messages.map((message) => h('li', { class: `notice notice-${message.kind}`, text: message.text })),
  );
}
