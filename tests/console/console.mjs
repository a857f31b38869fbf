// Drives the meshcert console in headless Chromium with Playwright, step by step, against an app
// that tests/tests/console.rs has started with fake clusters. Stops at the first failed step,
// prints what the page showed and saves target/console/failure.png.
//
// Environment (set by the Rust test):
//   MESHCERT_CONSOLE_URL          the app, such as http://127.0.0.1:40123
//   MESHCERT_CONSOLE_TOKEN        api_token
//   MESHCERT_CONSOLE_READ_TOKEN   api_read_token
//   MESHCERT_CONSOLE_FILES        a directory with web.crt, web.key, web-rotated.crt,
//                                 web-rotated.key, other.key and ca.crt
//   MESHCERT_CONSOLE_SCREENSHOTS  where list.png, details.png, create-error.png and
//                                 clusters.png go
//   MESHCERT_CONSOLE_NORTH_URL, MESHCERT_CONSOLE_NORTH_TOKEN
//                                 an unregistered fake cluster to register and remove

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set; run this script through cargo test -p meshcert-host --test console`);
  }
  return value;
};
const APP = env('MESHCERT_CONSOLE_URL');
const TOKEN = env('MESHCERT_CONSOLE_TOKEN');
const READ_TOKEN = env('MESHCERT_CONSOLE_READ_TOKEN');
const FILES = env('MESHCERT_CONSOLE_FILES');
const SCREENSHOTS = env('MESHCERT_CONSOLE_SCREENSHOTS');
const NORTH_URL = env('MESHCERT_CONSOLE_NORTH_URL');
const NORTH_TOKEN = env('MESHCERT_CONSOLE_NORTH_TOKEN');

/** How long a check waits for the page to show what it expects. */
const TIMEOUT_MS = 15_000;

const file = (name) => path.join(FILES, name);
const read = (name) => fs.readFileSync(file(name), 'utf8');

// The network here reaches nothing but package registries, so the flags turn off Chromium's own
// background connections to its services, which would be refused.
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshcert-console-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1360, height: 860 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
context.setDefaultTimeout(TIMEOUT_MS);
const page = context.pages()[0] ?? (await context.newPage());

// Problems that fail the current step whatever it checks: a script error, a resource the
// Content-Security-Policy blocked, a request that leaves the app's origin or carries a token in
// its URL.
const problems = [];
page.on('pageerror', (error) => problems.push(`uncaught error in the page: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) {
    problems.push(`blocked by the policy: ${message.text()}`);
  }
});
page.on('request', (request) => {
  const url = request.url();
  if (!url.startsWith(APP)) {
    problems.push(`request outside the app: ${url}`);
  }
  if (url.includes(TOKEN) || url.includes(READ_TOKEN)) {
    problems.push(`a token in a URL: ${url}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** Waits until `locator`'s text matches `pattern`, and returns the text. */
async function expectText(locator, pattern) {
  const deadline = Date.now() + TIMEOUT_MS;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.first().textContent().catch(() => null)) ?? '';
    if (pattern.test(text)) {
      return text;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`expected text matching ${pattern}, got ${JSON.stringify(text)}`);
}

/** Waits until `locator` matches exactly `count` elements. */
async function expectCount(locator, count) {
  const deadline = Date.now() + TIMEOUT_MS;
  let actual = 0;
  while (Date.now() < deadline) {
    actual = await locator.count();
    if (actual === count) {
      return;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`expected ${count} elements, found ${actual}`);
}

/** The `.field` wrapper of the control labelled exactly `label`. */
function fieldOf(label, scope = page) {
  return scope.locator('.field', { has: page.getByLabel(label, { exact: true }) });
}

/** Returns the table body rows whose `attribute` is `value`. */
function row(attribute, value) {
  return page.locator(`tbody tr[${attribute}="${value}"]`);
}

/** Opens a view through its navigation link, as a user would. */
async function navigate(section) {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: section, exact: true }).click();
}

/** Waits until the list has read the per-cluster states of every row. */
async function waitForClusterStates() {
  await page.locator('table.certificates tbody tr').first().waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('table.certificates tbody tr')].every((tr) => tr.querySelector('.cluster-states li')));
}

// ---------------------------------------------------------------------------------------------
// Steps, in order: each one starts where the previous one left the page.

const steps = [];
const step = (name, run) => steps.push({ name, run });

step('token form keeps the token out of URLs', async () => {
  await page.goto(APP);
  const input = page.getByLabel('API token', { exact: true });
  await input.fill('not-the-token');
  await input.press('Enter');
  await expectText(fieldOf('API token').locator('.field-error'), /The API rejected this token: invalid bearer token/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a rejected token was stored');

  await input.fill(TOKEN);
  await input.press('Enter');
  await expectText(page.locator('h1'), /^Certificates$/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('meshcert.token')), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'something went to localStorage');
  assert.ok(!page.url().includes(TOKEN), `the token is in the URL ${page.url()}`);
});

step('list sorts by days left with status badges', async () => {
  await waitForClusterStates();
  const names = await page.locator('table.certificates tbody tr').evaluateAll((rows) => rows.map((tr) => tr.dataset.certificate));
  assert.deepEqual(names, ['istio-system/legacy-api', 'istio-system/soon', 'istio-system/checkout']);

  const soon = row('data-certificate', 'istio-system/soon');
  assert.equal(await soon.locator('td.status .badge').textContent(), 'expiring');
  const daysLeft = Number((await soon.locator('td.days-left').textContent()).split(' ')[0]);
  assert.ok(daysLeft >= 9, `soon has ${daysLeft} days left`);
  assert.ok(daysLeft <= 10, `soon has ${daysLeft} days left`);
  assert.equal(await row('data-certificate', 'istio-system/legacy-api').locator('td.status .badge').textContent(), 'expired');
  const expiredDays = Number((await row('data-certificate', 'istio-system/legacy-api').locator('td.days-left').textContent()).split(' ')[0]);
  assert.ok(expiredDays < 0, `legacy-api has ${expiredDays} days left`);
  assert.equal(await row('data-certificate', 'istio-system/checkout').locator('td.status .badge').textContent(), 'valid');
  assert.equal(await soon.locator('.cluster-states').textContent(), 'east synced' + 'west synced');

  await page.getByLabel('Status', { exact: true }).selectOption('expiring');
  await expectCount(page.locator('table.certificates tbody tr'), 1);
  assert.equal(await page.locator('table.certificates tbody tr').getAttribute('data-certificate'), 'istio-system/soon');
  assert.ok(page.url().endsWith('#/certificates?status=expiring'), page.url());
  await page.getByLabel('Status', { exact: true }).selectOption('');
  await expectCount(page.locator('table.certificates tbody tr'), 3);
});

step('clusters view registers, probes and removes a cluster', async () => {
  await navigate('Clusters');
  await expectText(row('data-cluster', 'east').locator('.reachability'), /^reachable/);
  await expectText(row('data-cluster', 'west').locator('.reachability'), /^reachable/);

  await page.getByLabel('Cluster id', { exact: true }).fill('north');
  await page.getByLabel('API server URL', { exact: true }).fill(NORTH_URL);
  await page.getByLabel('ServiceAccount token', { exact: true }).fill(NORTH_TOKEN);
  await page.getByLabel('Labels', { exact: true }).fill('env=staging, region=eu');
  await page.getByRole('button', { name: 'Register cluster' }).click();
  await expectText(page.locator('.notices'), /Registered cluster north\./);
  await expectText(row('data-cluster', 'north').locator('.reachability'), /^reachable/);
  assert.equal(await row('data-cluster', 'north').locator('td').nth(1).textContent(), 'env=staging, region=eu');
  await page.screenshot({ path: path.join(SCREENSHOTS, 'clusters.png'), fullPage: true });

  await page.getByRole('button', { name: 'Remove north' }).click();
  const dialog = page.getByRole('dialog', { name: 'Remove cluster north?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Remove cluster' }).click();
  await expectText(page.locator('.notices'), /Removed cluster north\./);
  await expectCount(row('data-cluster', 'north'), 0);
});

step('mismatched key shows the error next to the key field', async () => {
  await navigate('New certificate');
  const name = page.getByLabel('Name', { exact: true });
  await expectText(page.locator('h1'), /New certificate/);
  assert.equal(await page.evaluate(() => document.activeElement.id), await name.getAttribute('id'), 'the name field has the focus');
  await name.fill('mixed');
  await name.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), await page.getByLabel('Namespace', { exact: true }).getAttribute('id'), 'Tab moves to the namespace');
  assert.equal(await page.getByLabel('Namespace', { exact: true }).inputValue(), 'istio-system', 'the default namespace');
  await page.getByLabel('Namespace', { exact: true }).fill('payments');

  await fieldOf('Certificate chain (PEM)').locator('input[type=file]').setInputFiles(file('web.crt'));
  await expectText(fieldOf('Certificate chain (PEM)').locator('.file-note'), /Loaded web\.crt/);
  assert.equal(await page.getByLabel('Certificate chain (PEM)', { exact: true }).inputValue(), read('web.crt'));
  const key = page.getByLabel('Private key (PEM)', { exact: true });
  await key.fill(read('other.key'));
  const masking = await key.evaluate((element) => getComputedStyle(element).getPropertyValue('-webkit-text-security'));
  assert.equal(masking, 'disc', 'the key field is not masked');
  await page.getByRole('button', { name: 'Create certificate' }).click();

  const keyError = await expectText(fieldOf('Private key (PEM)').locator('.field-error'), /does not match the leaf certificate/);
  assert.match(keyError, /^private_key does not match the leaf certificate "CN=web\.example\.test"/, 'the message as the API gives it');
  assert.equal(await key.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), await key.getAttribute('id'), 'the key field has the focus');
  assert.equal(await fieldOf('Certificate chain (PEM)').locator('.field-error').isVisible(), false, 'the certificate field shows an error');
  await page.screenshot({ path: path.join(SCREENSHOTS, 'create-error.png'), fullPage: true });
});

step('created certificate shows in the list with its status', async () => {
  await page.getByLabel('Name', { exact: true }).fill('web');
  await fieldOf('Private key (PEM)').locator('input[type=file]').setInputFiles(file('web.key'));
  await expectText(fieldOf('Private key (PEM)').locator('.file-note'), /Loaded web\.key/);
  // The mTLS switch, by keyboard.
  const mtls = page.getByRole('switch', { name: 'Mutual TLS: require client certificates' });
  await mtls.focus();
  await page.keyboard.press('Space');
  assert.equal(await mtls.isChecked(), true);
  await fieldOf('CA certificate (PEM)').locator('input[type=file]').setInputFiles(file('ca.crt'));
  await expectText(fieldOf('CA certificate (PEM)').locator('.file-note'), /Loaded ca\.crt/);
  await page.getByRole('button', { name: 'Create certificate' }).click();

  await expectText(page.locator('h1'), /^payments\/web valid/);
  await expectText(page.locator('.notices'), /Created payments\/web, version 1\./);
  await navigate('Certificates');
  await waitForClusterStates();
  const web = row('data-certificate', 'payments/web');
  assert.equal(await web.locator('td.status .badge').textContent(), 'valid');
  assert.equal(await web.locator('td.sync > .badge').textContent(), 'partial');
  assert.equal(await web.locator('.cluster-states').textContent(), 'east synced' + 'west failed');
});

step('details show the chain, the clusters and the gateways', async () => {
  await row('data-certificate', 'payments/web').getByRole('link', { name: 'web' }).click();
  await expectText(page.locator('h1'), /^payments\/web valid/);

  const chain = page.locator('table.chain tbody tr');
  assert.deepEqual(await chain.evaluateAll((rows) => rows.map((tr) => tr.dataset.member)), ['leaf', 'intermediate 1', 'CA (mTLS)']);
  assert.match(await chain.nth(0).textContent(), /CN=web\.example\.test/);
  assert.match(await chain.nth(1).textContent(), /CN=console test intermediate/);
  assert.match(await chain.nth(2).textContent(), /CN=console test root/);
  for (const index of [0, 1, 2]) {
    const dates = await chain.nth(index).locator('td').evaluateAll((cells) => cells.map((cell) => cell.textContent).filter((text) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/.test(text)));
    assert.equal(dates.length, 2, `chain member ${index} shows not before and not after`);
  }
  const facts = await page.locator('dl.facts').textContent();
  for (const fact of ['web.example.test', 'www.web.example.test', 'EC P-256', 'CN=console test intermediate', 'SHA-256 fingerprint', 'Serial number']) {
    assert.ok(facts.includes(fact), `the facts lack ${fact}: ${facts}`);
  }

  assert.equal(await row('data-cluster', 'east').locator('.badge').textContent(), 'synced');
  assert.equal(await row('data-cluster', 'west').locator('.badge').textContent(), 'failed');
  await expectText(row('data-cluster', 'west').locator('.last-error'), /^namespace_not_found.*payments/);

  // east has a Gateway that uses web, with a host web does not cover and pods in istio-system.
  const gateway = row('data-gateway', 'east/payments/public');
  await expectText(gateway, /payments\/public/);
  await expectText(gateway.locator('.badge'), /^not covered: shop\.example\.test$/);
  assert.match(await gateway.textContent(), /443\/HTTPS SIMPLE web\.example\.test, shop\.example\.test/);
  assert.match(await gateway.textContent(), /istio-system/);
  const warnings = await page.locator('section.gateways').textContent();
  assert.ok(warnings.includes('host shop.example.test on gateway payments/public in cluster east is not covered'), warnings);
  assert.ok(warnings.includes('runs its pods in namespace istio-system'), warnings);
  await page.screenshot({ path: path.join(SCREENSHOTS, 'details.png'), fullPage: true });
});

step('rotation stores a new version and rollback restores the old one', async () => {
  await page.getByRole('button', { name: 'Rotate' }).click();
  const form = page.locator('form.rotation');
  await fieldOf('New certificate chain (PEM)', form).locator('input[type=file]').setInputFiles(file('web-rotated.crt'));
  await fieldOf('New private key (PEM)', form).locator('input[type=file]').setInputFiles(file('web-rotated.key'));
  await expectText(fieldOf('New private key (PEM)', form).locator('.file-note'), /Loaded web-rotated\.key/);
  await form.getByRole('button', { name: 'Store new version' }).click();

  await expectText(page.locator('.notices'), /Stored version 2\./);
  assert.deepEqual(await page.locator('table.versions tbody tr').evaluateAll((rows) => rows.map((tr) => tr.dataset.version)), ['2', '1']);
  assert.match(await page.locator('.details-header p').textContent(), /^Version 2,/);
  assert.equal(await row('data-cluster', 'east').locator('td').nth(1).textContent(), '2', 'east holds version 2');

  await row('data-version', '1').getByRole('button', { name: 'Roll back to 1' }).click();
  const dialog = page.getByRole('dialog', { name: 'Roll back payments/web to version 1?' });
  await dialog.getByRole('button', { name: 'Roll back' }).click();
  await expectText(page.locator('.notices'), /Restored version 1 as version 3\./);
  assert.equal(await row('data-version', '3').locator('td').nth(5).textContent(), 'restored from 1');
});

step('delete names the clusters and removes the certificate', async () => {
  await page.goto(`${APP}/#/certificates/istio-system/checkout`);
  await expectText(page.locator('h1'), /^istio-system\/checkout valid/);
  await page.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete istio-system/checkout?' });
  await dialog.waitFor();
  assert.deepEqual(await dialog.locator('.delete-clusters li').allTextContents(), ['east', 'west']);
  await page.keyboard.press('Escape');
  await expectCount(page.getByRole('dialog'), 0);
  assert.match(await page.locator('h1').textContent(), /checkout/, 'Escape deleted the certificate');

  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete certificate' }).click();
  await expectText(page.locator('.notices'), /Deleted istio-system\/checkout\. Its Secret was removed from east, west\./);
  await waitForClusterStates();
  await expectCount(row('data-certificate', 'istio-system/checkout'), 0);
});

step('alerts and audit views list the expiry and the writes', async () => {
  await navigate('Alerts');
  await expectCount(page.locator('table.alerts tbody tr'), 2);
  assert.equal(await page.locator('table.alerts tbody tr[data-certificate="istio-system/soon"]').getAttribute('data-kind'), 'expiring');
  assert.equal(await page.locator('table.alerts tbody tr[data-certificate="istio-system/legacy-api"]').getAttribute('data-kind'), 'expired');

  await navigate('Audit');
  await expectText(page.locator('p[role=status]'), /^\d+ (entry|entries)/);
  const actions = await page.locator('table.audit tbody tr').evaluateAll((rows) => rows.map((tr) => tr.dataset.action));
  for (const action of ['certificate.create', 'certificate.replace', 'certificate.rollback', 'certificate.delete', 'cluster.register', 'cluster.delete']) {
    assert.ok(actions.includes(action), `the audit view lacks ${action}: ${actions}`);
  }
  await page.getByLabel('Outcome', { exact: true }).selectOption('rejected');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expectText(page.locator('table.audit tbody'), /key_mismatch/);
});

step('list screenshot', async () => {
  await navigate('Certificates');
  await waitForClusterStates();
  // The page down to the end of the table, without the empty space below it.
  const bottom = await page.locator('main').evaluate((main) => main.lastElementChild.getBoundingClientRect().bottom);
  await page.screenshot({ path: path.join(SCREENSHOTS, 'list.png'), clip: { x: 0, y: 0, width: 1360, height: Math.ceil(bottom) + 32 } });
});

step('read-only token shows that it may only read', async () => {
  await page.getByRole('button', { name: 'Forget token' }).click();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the token stayed in sessionStorage');
  await page.getByLabel('API token', { exact: true }).fill(READ_TOKEN);
  await page.getByRole('button', { name: 'Use token' }).click();
  await expectText(page.locator('h1'), /^Certificates$/);

  await page.goto(`${APP}/#/certificates/payments/web`);
  await expectText(page.locator('h1'), /^payments\/web/);
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete certificate' }).click();
  await expectText(page.locator('.action-status'), /^Read-only token: this token may only read/);
  assert.match(await page.locator('h1').textContent(), /^payments\/web/);
});

// ---------------------------------------------------------------------------------------------
// Runner

let passed = 0;
let failed = 0;
for (const { name, run } of steps) {
  const started = Date.now();
  try {
    await run();
    if (problems.length) {
      throw new Error(problems.splice(0).join('\n'));
    }
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed += 1;
    console.log(`not ok - ${name}\n${error.stack || error}`);
    console.log(`page: ${page.url()}\n--- what the page shows ---\n${await page.locator('body').innerText().catch(() => '(unreadable)')}`);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'failure.png'), fullPage: true }).catch(() => {});
    break;
  }
}
await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
