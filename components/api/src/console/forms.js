// Form parts shared by the views: PEM fields with a file picker, and API errors shown next to
// the field they concern.

import { describeError } from './api.js';
import { field, fileLoader, h } from './dom.js';

/** Builds a PEM text area with a file picker. `secret` masks the text and keeps it out of autofill. */
export function pemField(label, hint, { secret = false } = {}) {
  const textarea = h('textarea', {
    class: secret ? 'pem secret' : 'pem',
    rows: '7',
    spellcheck: 'false',
    autocomplete: 'off',
    autocapitalize: 'off',
  });
  const note = h('span', { class: 'hint file-note', 'aria-live': 'polite' });
  const picker = h('label', { class: 'file-picker' }, 'Or load it from a file ', fileLoader(textarea, note));
  const wrapper = field(label, textarea, hint, [h('div', { class: 'file-row' }, picker, note)]);
  wrapper.note = note;
  return wrapper;
}

/**
 * Shows an API error next to the field it names, or in `formError` when it names none of
 * `fields`, and moves the focus there.
 */
export function showError(error, fields, formError) {
  const message = describeError(error);
  // A field such as `labels.env` belongs to the `labels` input.
  const target = error.field ? fields[error.field] || fields[error.field.split('.')[0]] : undefined;
  if (target && !target.hidden && !target.closest('[hidden]')) {
    target.showError(message);
    target.control.focus();
    return;
  }
  formError.textContent = error.field ? `${message} (field ${error.field})` : message;
  formError.hidden = false;
  formError.focus();
}

/** Clears every field error and the form error. */
export function clearErrors(fields, formError) {
  for (const wrapper of Object.values(fields)) {
    wrapper.clearError?.();
  }
  formError.hidden = true;
  formError.textContent = '';
}

/** Builds the form's error box, for errors that concern no single field, such as a read-only token. */
export function formErrorBox() {
  return h('p', { class: 'notice notice-error form-error', role: 'alert', tabindex: '-1', hidden: true });
}
