// The certificate views: the list, the create form, and the details with rotation, rollback and
// delete.

import { ApiError, call, describeError, path, readAllPages } from './api.js';
import {
  append,
  badge,
  checkbox,
  confirmDialog,
  definitions,
  field,
  formatDaysLeft,
  formatTime,
  h,
  notices,
  replace,
  setFlash,
  table,
  takeFlash,
} from './dom.js';
import { clearErrors, formErrorBox, pemField, showError } from './forms.js';

/** Rows the list shows before "Show more". */
const LIST_PAGE_ROWS = 100;

// ---------------------------------------------------------------------------------------------
// List

/** Lists every certificate, sorted by days left, with filters by namespace and status. */
export async function renderCertificateList(view, parameters) {
  document.title = 'Certificates - meshcert';
  const loading = h('p', { class: 'muted', role: 'status', text: 'Loading certificates...' });
  append(view, [h('h1', { text: 'Certificates', tabindex: '-1' }), takeFlash(), loading]);

  let items;
  let truncated;
  try {
    ({ items, truncated } = await readAllPages('/api/v1/certificates', 'certificates'));
  } catch (error) {
    loading.replaceWith(notices([{ kind: 'error', text: error.message }]));
    return;
  }
  loading.remove();
  items.sort((a, b) => a.days_left - b.days_left || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));

  const namespaces = [...new Set(items.map((item) => item.namespace))].sort();
  const namespaceSelect = h('select', {}, h('option', { value: '', text: 'All namespaces' }), namespaces.map((namespace) => h('option', { value: namespace, text: namespace })));
  const statusSelect = h(
    'select',
    {},
    h('option', { value: '', text: 'All statuses' }),
    ['valid', 'expiring', 'expired'].map((status) => h('option', { value: status, text: status })),
  );
  namespaceSelect.value = namespaces.includes(parameters.get('namespace')) ? parameters.get('namespace') : '';
  statusSelect.value = parameters.get('status') || '';
  const count = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const results = h('div', { class: 'results' });
  const filters = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter certificates', onsubmit: (event) => event.preventDefault() },
    field('Namespace', namespaceSelect),
    field('Status', statusSelect),
    h('a', { class: 'button', href: '#/new', text: 'New certificate' }),
  );
  append(view, [filters, count, results]);

  const show = () => {
    const namespace = namespaceSelect.value;
    const status = statusSelect.value;
    const query = new URLSearchParams();
    if (namespace) query.set('namespace', namespace);
    if (status) query.set('status', status);
    const queryText = query.toString();
    history.replaceState(null, '', `#/certificates${queryText ? `?${queryText}` : ''}`);

    const matching = items.filter((item) => (!namespace || item.namespace === namespace) && (!status || item.status === status));
    count.textContent = `${matching.length} of ${items.length} certificates, sorted by days left.${truncated ? ' Only the first 20,000 were read.' : ''}`;
    if (!items.length) {
      replace(results, h('p', {}, 'No certificates yet. ', h('a', { href: '#/new', text: 'Create the first one.' })));
      return;
    }
    if (!matching.length) {
      replace(results, h('p', { text: 'No certificate matches these filters.' }));
      return;
    }
    renderRows(results, matching, LIST_PAGE_ROWS);
  };
  namespaceSelect.addEventListener('change', show);
  statusSelect.addEventListener('change', show);
  show();
}

/** Shows the first `limit` of `matching` in a table, with a button for more. */
function renderRows(results, matching, limit) {
  const visible = matching.slice(0, limit);
  const rows = visible.map((item) => {
    const key = `${item.namespace}/${item.name}`;
    const states = h('ul', { class: 'cluster-states', 'aria-label': `Clusters of ${key}` }, clusterStateItems(item.cluster_states || {}));
    return h(
      'tr',
      { 'data-certificate': key },
      h('td', {}, h('a', { href: `#/certificates/${encodeURIComponent(item.namespace)}/${encodeURIComponent(item.name)}`, text: item.name }), item.state === 'deleting' ? [' ', badge('deleting')] : null),
      h('td', { text: item.namespace }),
      h('td', { class: 'status' }, badge(item.status)),
      h('td', { class: 'days-left number', text: formatDaysLeft(item.days_left) }),
      h('td', { text: formatTime(item.not_after) }),
      h('td', { class: 'number', text: String(item.version) }),
      h('td', { class: 'sync' }, badge(item.sync), states),
    );
  });
  const more = matching.length > limit
    ? h('button', { type: 'button', text: `Show ${Math.min(LIST_PAGE_ROWS, matching.length - limit)} more`, onclick: () => renderRows(results, matching, limit + LIST_PAGE_ROWS) })
    : null;
  replace(
    results,
    table('', ['Name', 'Namespace', 'Status', 'Days left', 'Not after', 'Version', 'Sync by cluster'], rows, { class: 'certificates' }),
    more,
  );
}

/** Lists a certificate's state in each cluster, with the last error as the tooltip. */
function clusterStateItems(states) {
  const entries = Object.entries(states);
  if (!entries.length) {
    return h('li', { class: 'muted', text: 'no cluster selected' });
  }
  return entries.map(([cluster, state]) => {
    const item = h('li', { 'data-cluster': cluster }, h('span', { class: 'cluster-name', text: cluster }), ' ', badge(state.state));
    if (state.last_error) {
      item.setAttribute('title', `${state.last_error.kind}: ${state.last_error.message}`);
    }
    return item;
  });
}

// ---------------------------------------------------------------------------------------------
// Create

/** Renders the form that creates a certificate with POST /api/v1/certificates. */
export function renderCreateCertificate(view) {
  document.title = 'New certificate - meshcert';
  const fields = {
    name: field(
      'Name',
      h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', required: true }),
      'The Secret name, which gateways reference as credentialName: lowercase letters, digits, "-" and ".".',
    ),
    namespace: field(
      'Namespace',
      h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: 'istio-system' }),
      'The namespace where the gateway workload runs (not necessarily the Gateway resource).',
    ),
    certificate: pemField('Certificate chain (PEM)', 'The leaf certificate first, then each intermediate.'),
    private_key: pemField('Private key (PEM)', 'The unencrypted key of the leaf. It is stored encrypted, and neither meshcert nor this page shows it again.', { secret: true }),
    ca_certificate: pemField('CA certificate (PEM)', 'The CA that verifies client certificates; the Secret carries it as ca.crt.'),
    clusters: field(
      'Clusters (label selector)',
      h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'env=prod' }),
      'Only clusters whose labels match, such as env=prod or env!=dev. Empty sends the Secret to every cluster.',
    ),
  };
  const mtls = checkbox('Mutual TLS: require client certificates', { isSwitch: true });
  const separateCa = checkbox('Also write the CA to a separate Secret {name}-cacert', {
    hint: 'For gateways that read the CA from its own Secret; Istio reads it before the ca.crt inside {name}.',
  });
  const allowExpired = checkbox('Store it even if it has expired', { hint: 'For migrations: an expired certificate is stored with a warning and alerted at once.' });
  const mtlsGroup = h('div', { class: 'indent', id: 'mtls-fields', hidden: true }, fields.ca_certificate, separateCa);
  mtls.control.setAttribute('aria-controls', 'mtls-fields');
  mtls.control.setAttribute('aria-expanded', 'false');
  mtls.control.addEventListener('change', () => {
    mtlsGroup.hidden = !mtls.control.checked;
    mtls.control.setAttribute('aria-expanded', String(mtls.control.checked));
  });

  const formError = formErrorBox();
  const submit = h('button', { type: 'submit', text: 'Create certificate' });
  const form = h(
    'form',
    { class: 'card', novalidate: true, 'aria-labelledby': 'create-title' },
    h('h1', { id: 'create-title', text: 'New certificate', tabindex: '-1' }),
    h('p', { class: 'muted', text: 'meshcert checks the chain and the key, stores them, and applies the Secret to every selected cluster.' }),
    formError,
    fields.name,
    fields.namespace,
    fields.certificate,
    fields.private_key,
    mtls,
    mtlsGroup,
    fields.clusters,
    allowExpired,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(fields, formError);
    const body = {
      name: fields.name.control.value.trim(),
      certificate: fields.certificate.control.value,
      private_key: fields.private_key.control.value,
    };
    const namespace = fields.namespace.control.value.trim();
    if (namespace) body.namespace = namespace;
    if (mtls.control.checked) {
      body.mtls = true;
      body.ca_certificate = fields.ca_certificate.control.value;
      if (separateCa.control.checked) body.separate_ca_secret = true;
    }
    const selector = fields.clusters.control.value.trim();
    if (selector) body.clusters = selector;
    if (allowExpired.control.checked) body.allow_expired = true;

    submit.disabled = true;
    try {
      const { body: details } = await call('POST', '/api/v1/certificates', body);
      fields.private_key.control.value = '';
      setFlash([{ kind: 'info', text: `Created ${details.namespace}/${details.name}, version ${details.version}.` }, ...warningNotices(details)]);
      location.hash = `#/certificates/${encodeURIComponent(details.namespace)}/${encodeURIComponent(details.name)}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(error, fields, formError);
    } finally {
      submit.disabled = false;
    }
  });
  append(view, [takeFlash(), form]);
  fields.name.control.focus();
}

/** Converts the warnings of a write response to notices. */
function warningNotices(details) {
  return (details.warnings || []).map((warning) => ({ kind: 'warning', text: warning.message }));
}

// ---------------------------------------------------------------------------------------------
// Details

/** Shows one certificate: its facts, chain, clusters, gateways and versions, with the actions. */
export async function renderCertificateDetails(view, namespace, name) {
  document.title = `${namespace}/${name} - meshcert`;
  const flash = takeFlash();
  const loading = h('p', { class: 'muted', role: 'status', text: 'Loading the certificate...' });
  append(view, [loading]);
  let details;
  try {
    details = (await call('GET', path`/api/v1/certificates/${namespace}/${name}`)).body;
  } catch (error) {
    replace(view, h('h1', { text: `${namespace}/${name}` }), flash, notices([{ kind: 'error', text: error.message }]), h('p', {}, h('a', { href: '#/certificates', text: 'Back to the certificates' })));
    return;
  }
  showDetails(view, details, flash);
}

/** Renders `details` into `view`, with `flash` (a notice list or null) under the heading. */
function showDetails(view, details, flash) {
  const { namespace, name } = details;
  const actionStatus = h('div', { class: 'action-status', 'aria-live': 'polite' });
  const reportError = (error) => replace(actionStatus, notices([{ kind: 'error', text: describeError(error) }]));
  const clusters = Object.keys(details.sync);

  const rotation = rotationForm(details, (updated, messages) => showDetails(view, updated, notices(messages)));
  rotation.hidden = true;
  const rotate = h('button', {
    type: 'button',
    text: 'Rotate',
    'aria-expanded': 'false',
    'aria-controls': 'rotation',
    disabled: details.state === 'deleting',
    onclick: () => {
      rotation.hidden = !rotation.hidden;
      rotate.setAttribute('aria-expanded', String(!rotation.hidden));
      if (!rotation.hidden) rotation.querySelector('textarea').focus();
    },
  });
  const remove = h('button', {
    type: 'button',
    class: 'danger',
    text: 'Delete',
    onclick: async () => {
      const body = clusters.length
        ? [h('p', { text: `meshcert removes the Secret ${name} in namespace ${namespace} from these clusters, then deletes every stored version:` }), h('ul', { class: 'delete-clusters' }, clusters.map((cluster) => h('li', { text: cluster })))]
        : [h('p', { text: 'No registered cluster receives it, so only its stored versions are deleted.' })];
      if (!(await confirmDialog(`Delete ${namespace}/${name}?`, body, 'Delete certificate'))) {
        return;
      }
      try {
        const response = await call('DELETE', path`/api/v1/certificates/${namespace}/${name}`);
        if (response.status === 200) {
          const where = clusters.length ? ` Its Secret was removed from ${clusters.join(', ')}.` : '';
          setFlash([{ kind: 'info', text: `Deleted ${namespace}/${name}.${where}` }]);
          location.hash = '#/certificates';
        } else {
          showDetails(view, response.body, notices(warningNotices(response.body)));
        }
      } catch (error) {
        reportError(error);
      }
    },
  });

  const leaf = details.leaf;
  const key = details.key;
  const members = [leaf, ...details.intermediates, ...(details.ca ? [details.ca] : [])];
  const earliest = members.map((member) => member.not_after).sort((a, b) => Date.parse(a) - Date.parse(b))[0];
  const expiry = details.days_left >= 0 ? `${formatDaysLeft(details.days_left)} left` : `expired; days left ${details.days_left}`;
  const header = h(
    'div',
    { class: 'details-header' },
    h('h1', { tabindex: '-1' }, `${namespace}/${name} `, badge(details.status), details.state === 'deleting' ? [' ', badge('deleting')] : null),
    h('p', { class: 'muted', text: `Version ${details.version}, stored ${formatTime(details.updated_at)}. The first member to expire ends ${formatTime(earliest)} (${expiry}).` }),
    h('div', { class: 'actions' }, rotate, remove),
  );
  const facts = definitions([
    ['Status', [badge(details.status), ` ${expiry}, counted from the member that expires first`]],
    ['Subject', leaf.subject],
    ['Issuer', leaf.issuer],
    ['Subject alternative names', leaf.sans.length ? h('ul', { class: 'plain' }, leaf.sans.map((san) => h('li', { text: san }))) : 'none'],
    ['Valid from', formatTime(leaf.not_before)],
    ['Valid until', formatTime(leaf.not_after)],
    ['Serial number', h('code', { text: leaf.serial_hex })],
    ['SHA-256 fingerprint', h('code', { class: 'fingerprint', text: leaf.sha256_fingerprint })],
    ['Key', `${key.algorithm}${key.ec_curve ? ` ${key.ec_curve}` : ''}, ${key.size_bits} bits (PEM ${key.pem_label})`],
    ['Mutual TLS', details.mtls ? `on: the Secret carries the CA as ca.crt${details.separate_ca_secret ? ` and in ${name}-cacert` : ''}` : 'off'],
    ['Clusters', details.clusters ? `those matching ${details.clusters}` : 'every registered cluster'],
    ['Content fingerprint', h('code', { class: 'fingerprint', text: details.content_fingerprint })],
    ['Created', formatTime(details.created_at)],
  ]);

  const gateways = h('section', { class: 'gateways', 'aria-labelledby': 'gateways-title' }, h('h2', { id: 'gateways-title', text: 'Gateways' }), h('p', { class: 'muted', text: 'Loading...' }));
  replace(
    view,
    header,
    flash,
    actionStatus,
    rotation,
    h('section', { 'aria-labelledby': 'summary-title' }, h('h2', { id: 'summary-title', text: 'Leaf certificate' }), facts),
    h('section', { 'aria-labelledby': 'chain-title' }, h('h2', { id: 'chain-title', text: 'Chain' }), chainTable(details)),
    h('section', { 'aria-labelledby': 'clusters-title' }, h('h2', { id: 'clusters-title', text: 'Clusters' }), clusterTable(details)),
    gateways,
    h('section', { 'aria-labelledby': 'versions-title' }, h('h2', { id: 'versions-title', text: 'Versions' }), versionTable(details, reportError, (updated, messages) => showDetails(view, updated, notices(messages)))),
  );
  view.querySelector('h1').focus();
  loadGateways(gateways, namespace, name);
}

/** Builds the table of the chain members (leaf, intermediates) and the mTLS CA with their dates. */
function chainTable(details) {
  const members = [['leaf', details.leaf]];
  details.intermediates.forEach((member, index) => {
    const selfSigned = member.subject === member.issuer && member.is_ca;
    members.push([selfSigned ? 'root' : `intermediate ${index + 1}`, member]);
  });
  if (details.ca) {
    members.push(['CA (mTLS)', details.ca]);
  }
  const rows = members.map(([role, member]) =>
    h(
      'tr',
      { 'data-member': role },
      h('th', { scope: 'row', text: role }),
      h('td', { text: member.subject }),
      h('td', { text: member.issuer }),
      h('td', { text: formatTime(member.not_before) }),
      h('td', { text: formatTime(member.not_after) }),
      h('td', { text: member.ec_curve ? `${member.key_algorithm} ${member.ec_curve}` : `${member.key_algorithm} ${member.key_size_bits}` }),
      h('td', {}, h('code', { class: 'fingerprint', text: member.sha256_fingerprint })),
    ),
  );
  return table('', ['Member', 'Subject', 'Issuer', 'Not before', 'Not after', 'Key', 'SHA-256 fingerprint'], rows, { class: 'chain' });
}

/** Builds the table of the certificate's state in each cluster it goes to, with the last error. */
function clusterTable(details) {
  const entries = Object.entries(details.sync);
  if (!entries.length) {
    return h('p', { text: 'No registered cluster receives this certificate.' });
  }
  const rows = entries.map(([cluster, state]) => {
    const error = state.last_error;
    return h(
      'tr',
      { 'data-cluster': cluster },
      h('th', { scope: 'row', text: cluster }),
      h('td', {}, badge(state.state)),
      h('td', { class: 'number', text: state.version ? String(state.version) : '-' }),
      h('td', { text: formatTime(state.synced_at) }),
      h('td', { text: formatTime(state.updated_at) }),
      h('td', { class: 'number', text: String(state.attempts) }),
      h('td', { class: 'last-error' }, error ? [h('code', { text: error.kind }), error.status && !error.message.includes(`HTTP ${error.status}`) ? ` (HTTP ${error.status})` : '', ': ', error.message] : '-'),
    );
  });
  return table('', ['Cluster', 'State', 'Version', 'Synced', 'Recorded', 'Attempts', 'Last error'], rows, { class: 'cluster-sync' });
}

/** Builds the table of the kept versions, newest first, with a rollback button on each older one. */
function versionTable(details, reportError, onUpdated) {
  const rows = details.versions.map((entry) => {
    const current = entry.version === details.version;
    const rollback = current
      ? h('span', { class: 'muted', text: 'current' })
      : h('button', {
          type: 'button',
          text: `Roll back to ${entry.version}`,
          disabled: details.state === 'deleting',
          onclick: async () => {
            const allowExpired = checkbox('Restore it even if it has expired since');
            const body = [h('p', { text: `meshcert stores the content of version ${entry.version} as a new version and syncs it to every cluster the certificate goes to.` }), allowExpired];
            if (!(await confirmDialog(`Roll back ${details.namespace}/${details.name} to version ${entry.version}?`, body, 'Roll back'))) {
              return;
            }
            const request = { version: entry.version };
            if (allowExpired.control.checked) request.allow_expired = true;
            try {
              const { body: updated } = await call('POST', path`/api/v1/certificates/${details.namespace}/${details.name}/rollback`, request);
              onUpdated(updated, [{ kind: 'info', text: `Restored version ${entry.version} as version ${updated.version}.` }, ...warningNotices(updated)]);
            } catch (error) {
              reportError(error);
            }
          },
        });
    return h(
      'tr',
      { 'data-version': String(entry.version) },
      h('th', { scope: 'row', class: 'number', text: String(entry.version) }),
      h('td', { text: formatTime(entry.created_at) }),
      h('td', { text: entry.author }),
      h('td', { text: entry.subject }),
      h('td', { text: formatTime(entry.not_after) }),
      h('td', {}, h('code', { class: 'fingerprint', text: entry.sha256_fingerprint })),
      h('td', { text: entry.restored_from ? `restored from ${entry.restored_from}` : '' }),
      h('td', {}, rollback),
    );
  });
  return table('', ['Version', 'Stored', 'Author', 'Leaf subject', 'Leaf not after', 'Leaf SHA-256 fingerprint', 'Note', 'Action'], rows, { class: 'versions' });
}

/** Builds the rotation form, which stores a new chain and key as a new version with PUT and If-Match. */
function rotationForm(details, onUpdated) {
  const fields = {
    certificate: pemField('New certificate chain (PEM)', 'The leaf certificate first, then each intermediate.'),
    private_key: pemField('New private key (PEM)', 'The unencrypted key of the new leaf. It is stored encrypted and never matching again.', { secret: true }),
  };
  if (details.mtls) {
    fields.ca_certificate = pemField('New CA certificate (PEM)', 'Empty keeps the current CA.');
  }
  const allowExpired = checkbox('Store it even if it has expired');
  const formError = formErrorBox();
  const submit = h('button', { type: 'submit', text: 'Store new version' });
  const form = h(
    'form',
    { class: 'card rotation', id: 'rotation', novalidate: true, 'aria-labelledby': 'rotation-title' },
    h('h2', { id: 'rotation-title', text: 'Rotate' }),
    h('p', { class: 'muted', text: `The new content becomes version ${details.version + 1} and is synced at once. Mutual TLS, the CA and the cluster selector keep their values.` }),
    formError,
    Object.values(fields),
    allowExpired,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(fields, formError);
    const body = { certificate: fields.certificate.control.value, private_key: fields.private_key.control.value };
    if (fields.ca_certificate && fields.ca_certificate.control.value.trim()) body.ca_certificate = fields.ca_certificate.control.value;
    if (allowExpired.control.checked) body.allow_expired = true;
    submit.disabled = true;
    try {
      // If-Match makes the write fail with 412 when someone else rotated the certificate since
      // this page read it.
      const { body: updated } = await call('PUT', path`/api/v1/certificates/${details.namespace}/${details.name}`, body, { headers: { 'If-Match': `"${details.version}"` } });
      fields.private_key.control.value = '';
      const stored = updated.version === details.version ? [] : [{ kind: 'info', text: `Stored version ${updated.version}.` }];
      onUpdated(updated, [...stored, ...warningNotices(updated)]);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(error, fields, formError);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** Fills the gateways section from GET .../gateways; a 404 means this meshcert reports none. */
async function loadGateways(section, namespace, name) {
  const heading = section.querySelector('h2');
  let report;
  try {
    report = (await call('GET', path`/api/v1/certificates/${namespace}/${name}/gateways`)).body;
  } catch (error) {
    const text = error.status === 404 ? 'No gateway information.' : `Gateways could not be read: ${error.message}`;
    replace(section, heading, h('p', { class: error.status === 404 ? 'muted gateway-info' : 'notice notice-error gateway-info', text }));
    return;
  }

  const gateways = report.gateways || [];
  const content = [heading];
  if (!gateways.length) {
    content.push(h('p', { class: 'gateway-info', text: `No Istio Gateway in a registered cluster references credentialName ${name}.` }));
  } else {
    const rows = gateways.map((gateway) =>
      h(
        'tr',
        { 'data-gateway': `${gateway.cluster}/${gateway.namespace}/${gateway.name}` },
        h('td', { text: gateway.cluster }),
        h('td', { text: `${gateway.namespace}/${gateway.name}` }),
        h(
          'td',
          {},
          h(
            'ul',
            { class: 'plain' },
            (gateway.servers || []).map((server) =>
              h(
                'li',
                {},
                `${server.port}/${server.protocol} ${server.mode || ''} `,
                (server.hosts || []).join(', '),
                server.uncovered_hosts && server.uncovered_hosts.length ? [' ', badge('warning', `not covered: ${server.uncovered_hosts.join(', ')}`)] : null,
              ),
            ),
          ),
        ),
        h('td', { text: (gateway.workload_namespaces || []).join(', ') || '-' }),
      ),
    );
    content.push(table('', ['Cluster', 'Gateway', 'Servers', 'Workload namespaces'], rows, { class: 'gateway-table' }));
  }
  const messages = [
    ...(report.warnings || []).map((warning) => ({ kind: 'warning', text: warning })),
    ...(report.errors || []).map((error) => ({ kind: 'error', text: `${error.cluster}: ${error.kind}: ${error.message}` })),
  ];
  if (messages.length) {
    content.push(notices(messages));
  }
  replace(section, ...content);
}
