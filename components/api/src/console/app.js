// The console's shell: the token form, the navigation and the router over the location hash
// (`#/certificates`, `#/certificates/{namespace}/{name}`, `#/new`, `#/alerts`, `#/clusters`,
// `#/audit`).

import { call, clearToken, onUnauthorized, setToken, token } from './api.js';
import { field, h, replace } from './dom.js';
import { renderCertificateList, renderCreateCertificate, renderCertificateDetails } from './certificates.js';
import { renderAlerts, renderAudit, renderClusters } from './operations.js';

const main = document.getElementById('main');
const signOut = document.getElementById('sign-out');
const navigation = document.getElementById('navigation');

/** A message for the token form after the API rejected the stored token. */
let tokenProblem = '';

onUnauthorized((error) => {
  tokenProblem = `The API rejected the token: ${error.message}`;
  render();
});

signOut.addEventListener('click', () => {
  clearToken();
  tokenProblem = '';
  render();
});

// The skip link moves the focus without changing the hash, which names the view.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', render);
render();

/** Shows the view of the current location, or the token form while there is no token. */
function render() {
  const signedIn = Boolean(token());
  signOut.hidden = !signedIn;
  navigation.hidden = !signedIn;
  if (!signedIn) {
    document.title = 'Sign in - meshcert';
    replace(main, tokenForm());
    return;
  }

  const hash = location.hash.startsWith('#/') ? location.hash : '#/certificates';
  const [pathPart, query = ''] = hash.slice(1).split('?');
  let parts;
  try {
    parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    // A malformed escape such as `%E0` in a typed URL: show the list.
    parts = [];
  }
  const parameters = new URLSearchParams(query);
  markCurrent(['new', 'alerts', 'clusters', 'audit'].includes(parts[0]) ? parts[0] : 'certificates');

  const view = h('div', { class: 'view' });
  replace(main, view);
  if (parts[0] === 'certificates' && parts.length === 3) {
    renderCertificateDetails(view, parts[1], parts[2]);
  } else if (parts[0] === 'new') {
    renderCreateCertificate(view);
  } else if (parts[0] === 'alerts') {
    renderAlerts(view, parameters);
  } else if (parts[0] === 'clusters') {
    renderClusters(view);
  } else if (parts[0] === 'audit') {
    renderAudit(view, parameters);
  } else {
    renderCertificateList(view, parameters);
  }
  // Screen readers and keyboard users start at the new view's heading, unless the view has
  // focused a field of its own.
  if (!main.contains(document.activeElement)) {
    view.querySelector('h1')?.focus();
  }
}

/** Marks the navigation link of `section` as the current page. */
function markCurrent(section) {
  for (const link of navigation.querySelectorAll('a')) {
    if (link.dataset.section === section) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
}

/** Builds the form that requests the API token and checks it with one read before storing it. */
function tokenForm() {
  // The input has no `name`, so even a form sent by the browser itself would carry no token.
  const input = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const tokenField = field(
    'API token',
    input,
    'The value of api_token, or of api_read_token to only read. It stays in this tab (sessionStorage) until you close the tab or choose Forget token.',
  );
  if (tokenProblem) {
    tokenField.showError(tokenProblem);
  }
  const submit = h('button', { type: 'submit', text: 'Use token' });
  const form = h(
    'form',
    {
      class: 'card token-form',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) {
          tokenField.showError('Paste a token first.');
          input.focus();
          return;
        }
        submit.disabled = true;
        tokenField.clearError();
        try {
          await call('GET', '/api/v1/certificates?limit=1', undefined, { token: value });
          setToken(value);
          tokenProblem = '';
          input.value = '';
          render();
        } catch (error) {
          tokenField.showError(error.status === 401 ? `The API rejected this token: ${error.message}` : error.message);
          input.focus();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h1', { text: 'meshcert console' }),
    h('p', { text: 'Certificates of Istio gateways, their expiry, and the clusters they are synced to.' }),
    tokenField,
    h('div', { class: 'actions' }, submit),
  );
  queueMicrotask(() => input.focus());
  return form;
}
