// Calls to meshcert's API with the token that the user pasted. The token lives in this tab's
// sessionStorage only, and travels only in the Authorization header, never in a URL.

const TOKEN_KEY = 'meshcert.token';

/** An error response of the API, `{"error": {"code", "message", "field"}}`, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, field, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.body = body;
  }

  /** Whether the token may only read (403 on a write). */
  get readOnly() {
    return this.status === 403;
  }
}

/** Returns the stored token, or an empty string. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** Stores the token for this tab. */
export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token. */
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Listeners called with the error when the API rejects the token (401). */
const unauthorizedListeners = [];

/** Calls `listener(error)` whenever the API rejects the stored token. */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

/**
 * Sends a request to the API and returns `{status, body, headers}` for a 2xx response. Any other
 * status throws an ApiError with the API's code, message and field; a 401 also removes the stored token.
 * `options.token` overrides the stored token, `options.headers` adds headers.
 */
export async function call(method, path, body = undefined, options = {}) {
  const headers = { Accept: 'application/json', ...(options.headers || {}) };
  const bearer = options.token ?? token();
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }

  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (error) {
    throw new ApiError(0, 'network_error', `The API could not be reached (${error.message}). Check that meshcert is running, then retry.`);
  }

  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.ok) {
    return { status: response.status, body: parsed, headers: response.headers };
  }

  const detail = parsed && parsed.error ? parsed.error : {};
  const message = detail.message || `${method} ${path} failed with HTTP status ${response.status}.`;
  const error = new ApiError(response.status, detail.code || `http_${response.status}`, message, detail.field, parsed);
  if (response.status === 401 && options.token === undefined) {
    clearToken();
    for (const listener of unauthorizedListeners) {
      listener(error);
    }
  }
  throw error;
}

/** Encodes the parts of a path, such as a namespace and a name. */
export function path(strings, ...values) {
  return strings.reduce((joined, part, index) => joined + part + (index < values.length ? encodeURIComponent(values[index]) : ''), '');
}

/** Reads every page of a paged list, `limit` at a time, up to `maxItems` items. */
export async function readAllPages(basePath, key, { limit = 1000, maxItems = 20000 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const separator = basePath.includes('?') ? '&' : '?';
    const query = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const { body } = await call('GET', `${basePath}${separator}${query}`);
    items.push(...body[key]);
    cursor = body.next_cursor;
  } while (cursor && items.length < maxItems);
  return { items, truncated: Boolean(cursor) };
}

/** Returns the message to show for a failed write: the API's message, with a plain note for a read-only token. */
export function describeError(error) {
  if (error.readOnly) {
    return `Read-only token: ${error.message}. Forget this token and paste api_token to make changes.`;
  }
  return error.message;
}
