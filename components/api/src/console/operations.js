// The operations views: expiry alerts with the last scan, the cluster registry with
// reachability, and the audit trail.

import { ApiError, call, describeError, path } from './api.js';
import {
  append,
  badge,
  checkbox,
  confirmDialog,
  definitions,
  field,
  formatDaysLeft,
  formatLabels,
  formatTime,
  h,
  notices,
  parseLabels,
  replace,
  setFlash,
  table,
  takeFlash,
} from './dom.js';
import { clearErrors, formErrorBox, pemField, showError } from './forms.js';

/** Audit entries read per page. */
const AUDIT_PAGE = 100;

/** Re-renders the current view, as after a write that changed what it shows. */
function reload() {
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}

/** Builds a link to a certificate's details. */
function certificateLink(namespace, name) {
  return h('a', { href: `#/certificates/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, text: `${namespace}/${name}` });
}

// ---------------------------------------------------------------------------------------------
// Alerts

/** Lists expiry alerts, active or resolved, and the counts of the last expiry scan. */
export async function renderAlerts(view, parameters) {
  document.title = 'Alerts - meshcert';
  const statusSelect = h('select', {}, h('option', { value: 'active', text: 'active' }), h('option', { value: 'resolved', text: 'resolved' }));
  const kindSelect = h('select', {}, h('option', { value: '', text: 'All kinds' }), h('option', { value: 'expired', text: 'expired' }), h('option', { value: 'expiring', text: 'expiring' }));
  statusSelect.value = parameters.get('status') === 'resolved' ? 'resolved' : 'active';
  kindSelect.value = ['expired', 'expiring'].includes(parameters.get('kind')) ? parameters.get('kind') : '';
  const applyFilters = () => {
    const query = new URLSearchParams({ status: statusSelect.value });
    if (kindSelect.value) query.set('kind', kindSelect.value);
    location.hash = `#/alerts?${query}`;
  };
  statusSelect.addEventListener('change', applyFilters);
  kindSelect.addEventListener('change', applyFilters);
  const results = h('div', { class: 'results' }, h('p', { class: 'muted', role: 'status', text: 'Loading alerts...' }));
  const scan = h('section', { 'aria-labelledby': 'scan-title' }, h('h2', { id: 'scan-title', text: 'Last expiry scan' }));
  append(view, [
    h('h1', { text: 'Alerts', tabindex: '-1' }),
    h('form', { class: 'filters', 'aria-label': 'Filter alerts', onsubmit: (event) => event.preventDefault() }, field('Status', statusSelect), field('Kind', kindSelect)),
    results,
    scan,
  ]);

  const query = new URLSearchParams({ status: statusSelect.value });
  if (kindSelect.value) query.set('kind', kindSelect.value);
  try {
    const { body } = await call('GET', `/api/v1/alerts?${query}`);
    const alerts = body.alerts.sort((a, b) => a.days_left - b.days_left);
    const rows = alerts.map((alert) =>
      h(
        'tr',
        { 'data-certificate': `${alert.namespace}/${alert.name}`, 'data-kind': alert.kind },
        h('td', {}, certificateLink(alert.namespace, alert.name)),
        h('td', {}, badge(alert.kind)),
        h('td', {}, h('span', { class: 'muted', text: `${alert.role}: ` }), alert.subject, alert.members.length > 1 ? ` and ${alert.members.length - 1} more` : ''),
        h('td', { text: formatTime(alert.not_after) }),
        h('td', { class: 'number', text: formatDaysLeft(alert.days_left) }),
        h('td', { text: formatTime(alert.first_seen) }),
        h('td', { text: notification(alert) }),
      ),
    );
    replace(
      results,
      rows.length
        ? table('', ['Certificate', 'Kind', 'Member', 'Not after', 'Days left', 'First seen', 'Notification'], rows, { class: 'alerts' })
        : h('p', { text: statusSelect.value === 'active' ? 'No active alert: no certificate is expired or expiring.' : 'No resolved alert.' }),
    );
  } catch (error) {
    replace(results, notices([{ kind: 'error', text: error.message }]));
  }

  try {
    const { body } = await call('GET', '/api/v1/scans/last');
    append(scan, [
      definitions([
        ['Finished', formatTime(body.finished_at)],
        ['Certificates scanned', String(body.certificates)],
        ['Expired', String(body.expired)],
        ['Expiring', `${body.expiring} (fewer than ${body.warning_days} days left)`],
        ['Notifications sent', String(body.notified ?? 0)],
      ]),
      body.configuration_error ? notices([{ kind: 'warning', text: body.configuration_error }]) : null,
    ]);
  } catch (error) {
    append(scan, h('p', { class: 'muted', text: error.status === 404 ? 'No expiry scan has run yet. Uploads are checked at once; the scan runs every 6 hours.' : error.message }));
  }
}

/** Describes when an alert was resolved or notified. */
function notification(alert) {
  if (alert.resolved_at) {
    return `resolved ${formatTime(alert.resolved_at)}`;
  }
  if (alert.notified_at) {
    return `notified ${formatTime(alert.notified_at)}`;
  }
  return 'not notified';
}

// ---------------------------------------------------------------------------------------------
// Clusters

/** Lists the registered clusters, probes each one, and offers the register and remove forms. */
export async function renderClusters(view) {
  document.title = 'Clusters - meshcert';
  const results = h('div', { class: 'results' }, h('p', { class: 'muted', role: 'status', text: 'Loading clusters...' }));
  append(view, [h('h1', { text: 'Clusters', tabindex: '-1' }), takeFlash(), results, registerForm()]);

  let clusters;
  try {
    clusters = (await call('GET', '/api/v1/clusters')).body.clusters.sort((a, b) => a.id.localeCompare(b.id));
  } catch (error) {
    replace(results, notices([{ kind: 'error', text: error.message }]));
    return;
  }
  if (!clusters.length) {
    replace(results, h('p', { text: 'No cluster is registered. Register one below; meshcert then syncs every certificate to it.' }));
    return;
  }

  const actionStatus = h('div', { class: 'action-status', 'aria-live': 'polite' });
  const rows = clusters.map((cluster) => {
    const reachability = h('td', { class: 'reachability' }, h('span', { class: 'muted', text: 'checking...' }));
    const secrets = h('td', { class: 'secrets' });
    const clientTls = h('td', { class: 'client-tls' });
    const probe = () => probeCluster(cluster.id, reachability, secrets, clientTls);
    const row = h(
      'tr',
      { 'data-cluster': cluster.id },
      h('th', { scope: 'row' }, cluster.id, cluster.display_name ? h('div', { class: 'muted', text: cluster.display_name }) : null),
      h('td', {}, h('code', { text: cluster.api_server })),
      h('td', { text: formatLabels(cluster.labels) }),
      h('td', { text: cluster.has_ca_bundle ? 'yes' : 'no' }),
      h('td', { text: formatTime(cluster.created_at) }),
      reachability,
      secrets,
      clientTls,
      h(
        'td',
        { class: 'row-actions' },
        h('button', { type: 'button', text: 'Check again', 'aria-label': `Check ${cluster.id} again`, onclick: probe }),
        h('button', { type: 'button', class: 'danger', text: 'Remove', 'aria-label': `Remove ${cluster.id}`, onclick: () => removeCluster(cluster, actionStatus) }),
      ),
    );
    probe();
    return row;
  });
  replace(
    results,
    actionStatus,
    table('', ['Cluster', 'API server', 'Labels', 'CA bundle', 'Registered', 'Reachability', 'Certificates by state', 'Spin TLS', 'Actions'], rows, { class: 'clusters' }),
  );
}

/** Probes a cluster with GET /api/v1/clusters/{id} and fills its reachability cells. */
async function probeCluster(id, reachability, secrets, clientTls) {
  replace(reachability, h('span', { class: 'muted', text: 'checking...' }));
  let details;
  try {
    details = (await call('GET', path`/api/v1/clusters/${id}`)).body;
  } catch (error) {
    replace(reachability, notices([{ kind: 'error', text: error.message }]));
    return;
  }
  const probe = details.reachability;
  if (probe.reachable) {
    replace(reachability, badge('reachable'), ` ${probe.server_version || ''} in ${probe.duration_ms} ms`);
  } else {
    const error = probe.error;
    replace(reachability, badge('unreachable'), error ? [' ', h('code', { text: error.kind }), `: ${error.message}`] : ` HTTP ${probe.status ?? '-'}`);
  }
  const counts = Object.entries(details.secrets);
  replace(secrets, counts.length ? counts.map(([state, count]) => h('span', { class: 'count' }, badge(state, `${state} ${count}`), ' ')) : h('span', { class: 'muted', text: 'none' }));
  replace(clientTls, details.client_tls.state.replace('_', ' '), details.client_tls.message ? h('div', { class: 'hint', text: details.client_tls.message }) : null);
}

/** Asks for confirmation, then removes a cluster, optionally purging meshcert's Secrets first. */
async function removeCluster(cluster, actionStatus) {
  const purge = checkbox(`First remove meshcert's Secrets from ${cluster.id} (purge)`, {
    hint: 'Without this, the Secrets stay in the cluster and meshcert stops updating them.',
  });
  const body = [h('p', { text: `meshcert stops syncing certificates to ${cluster.id} (${cluster.api_server}) and forgets its token.` }), purge];
  if (!(await confirmDialog(`Remove cluster ${cluster.id}?`, body, 'Remove cluster'))) {
    return;
  }
  try {
    const query = purge.control.checked ? '?purge=true' : '';
    await call('DELETE', `${path`/api/v1/clusters/${cluster.id}`}${query}`);
    setFlash([{ kind: 'info', text: `Removed cluster ${cluster.id}.` }]);
    reload();
  } catch (error) {
    replace(actionStatus, notices([{ kind: 'error', text: describeError(error) }]));
  }
}

/** Builds the form that registers a cluster with POST /api/v1/clusters. */
function registerForm() {
  const fields = {
    id: field('Cluster id', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' }), 'A DNS-1123 label, such as east or prod-eu-1.'),
    display_name: field('Display name', h('input', { type: 'text', autocomplete: 'off' }), 'Optional.'),
    api_server: field('API server URL', h('input', { type: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://api.east.example.com:6443' })),
    // No `name` attribute, as on every secret field, so the browser never sends it by itself.
    token: field('ServiceAccount token', h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false' }), "The bearer token of meshcert's ServiceAccount in this cluster. It is stored encrypted and never shown again."),
    ca_bundle: pemField('CA bundle (PEM)', "Optional: the API server's CA certificates. Spin also needs them in its runtime configuration."),
    labels: field('Labels', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'env=prod, region=eu' }), 'Comma-separated key=value pairs, matched by the certificates\' cluster selectors.'),
  };
  const formError = formErrorBox();
  const submit = h('button', { type: 'submit', text: 'Register cluster' });
  const form = h(
    'form',
    { class: 'card', novalidate: true, 'aria-labelledby': 'register-title' },
    h('h2', { id: 'register-title', text: 'Register a cluster' }),
    h('p', { class: 'muted', text: 'meshcert syncs every certificate whose selector matches the labels to the new cluster before it answers.' }),
    formError,
    Object.values(fields),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(fields, formError);
    const body = {
      id: fields.id.control.value.trim(),
      api_server: fields.api_server.control.value.trim(),
      token: fields.token.control.value,
      labels: parseLabels(fields.labels.control.value),
    };
    const displayName = fields.display_name.control.value.trim();
    if (displayName) body.display_name = displayName;
    if (fields.ca_bundle.control.value.trim()) body.ca_bundle = fields.ca_bundle.control.value;
    submit.disabled = true;
    try {
      const { body: registered } = await call('POST', '/api/v1/clusters', body);
      fields.token.control.value = '';
      const messages = [{ kind: 'info', text: `Registered cluster ${registered.id}.` }];
      const sync = registered.sync;
      if (sync.error) {
        messages.push({ kind: 'warning', text: sync.error.message });
      } else {
        messages.push({ kind: sync.failed ? 'warning' : 'info', text: `Sync to ${registered.id}: ${sync.applied} applied, ${sync.unchanged} unchanged, ${sync.failed} failed.` });
      }
      setFlash(messages);
      reload();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(error, fields, formError);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Audit

/** Lists the audit trail, newest first, with filters and one page at a time. */
export async function renderAudit(view, parameters) {
  document.title = 'Audit - meshcert';
  const outcome = h(
    'select',
    {},
    h('option', { value: '', text: 'All outcomes' }),
    ['succeeded', 'rejected', 'failed'].map((value) => h('option', { value, text: value })),
  );
  const action = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'certificate.create' });
  const target = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'certificate istio-system/web' });
  outcome.value = parameters.get('outcome') || '';
  action.value = parameters.get('action') || '';
  target.value = parameters.get('target') || '';
  const filters = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Filter the audit trail',
      onsubmit: (event) => {
        event.preventDefault();
        const query = new URLSearchParams();
        if (outcome.value) query.set('outcome', outcome.value);
        if (action.value.trim()) query.set('action', action.value.trim());
        if (target.value.trim()) query.set('target', target.value.trim());
        location.hash = `#/audit${query.toString() ? `?${query}` : ''}`;
      },
    },
    field('Outcome', outcome),
    field('Action', action),
    field('Target', target),
    h('button', { type: 'submit', text: 'Filter' }),
  );
  const body = h('tbody');
  const status = h('p', { class: 'muted', role: 'status', text: 'Loading the audit trail...' });
  const more = h('button', { type: 'button', text: 'Load older entries', hidden: true });
  append(view, [
    h('h1', { text: 'Audit trail', tabindex: '-1' }),
    h('p', { class: 'muted', text: 'Every write with a valid token, done or refused, newest first.' }),
    filters,
    status,
    h(
      'table',
      { class: 'audit' },
      h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Target', 'Outcome', 'Status', 'Code', 'Summary'].map((heading) => h('th', { scope: 'col', text: heading })))),
      body,
    ),
    more,
  ]);

  const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  for (const name of ['outcome', 'action', 'target']) {
    if (parameters.get(name)) query.set(name, parameters.get(name));
  }
  let cursor = null;
  let count = 0;
  const loadPage = async () => {
    more.disabled = true;
    try {
      const page = new URLSearchParams(query);
      if (cursor) page.set('cursor', cursor);
      const { body: result } = await call('GET', `/api/v1/audit?${page}`);
      for (const entry of result.entries) {
        body.append(
          h(
            'tr',
            { 'data-action': entry.action },
            h('td', { text: formatTime(entry.time) }),
            h('td', { text: entry.actor }),
            h('td', {}, h('code', { text: entry.action })),
            h('td', { text: entry.target }),
            h('td', {}, badge(entry.outcome)),
            h('td', { class: 'number', text: String(entry.status) }),
            h('td', { text: entry.code || '' }),
            h('td', { class: 'summary', text: entry.summary }),
          ),
        );
      }
      count += result.entries.length;
      cursor = result.next_cursor;
      status.textContent = count ? `${count} ${count === 1 ? 'entry' : 'entries'}${cursor ? ', more available' : ''}.` : 'No entry matches.';
      more.hidden = !cursor;
    } catch (error) {
      status.textContent = error.message;
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', loadPage);
  await loadPage();
}
