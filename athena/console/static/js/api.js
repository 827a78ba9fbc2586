// The console's only way to the gateway: fetch() to the same origin with the key in a header.
// The key lives in this module's closure: never in a URL, a cookie or web storage, so a reload
// or a closed tab forgets it.

let key = null;
let session = null; // what GET /auth/key said about the key

export class ApiError extends Error {
  constructor(status, code, message, data) {
    super(message);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

export function signIn(newKey, info) {
  key = newKey;
  session = info;
}

export function signOut() {
  key = null;
  session = null;
}

export function current() {
  return session;
}

function url(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function headers(extra, { client, json, withKey = true } = {}) {
  const h = new Headers();
  const k = withKey ? key : null;
  if (k) h.set("apikey", k);
  if (client) h.set("X-Athena-Client", client);
  if (json) h.set("Content-Type", "application/json");
  for (const [name, value] of Object.entries(extra || {})) h.set(name, value);
  return h;
}

async function send(method, path, opts = {}) {
  const init = {
    method,
    headers: headers(opts.headers, { client: opts.client, json: opts.body !== undefined, withKey: opts.withKey }),
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
    signal: opts.signal,
  };
  if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
  let res;
  try {
    res = await fetch(url(path, opts.query), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "the gateway did not answer: " + err.message);
  }
  return res;
}

async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (body && typeof body === "object") {
    return new ApiError(res.status, body.code || `http_${res.status}`, body.message || body.error || res.statusText, body.data);
  }
  return new ApiError(res.status, `http_${res.status}`, res.statusText || "request failed");
}

// JSON in, JSON out; a non-2xx answer becomes an ApiError with the envelope's code and message.
export async function call(method, path, opts = {}) {
  const res = await send(method, path, opts);
  if (!res.ok) throw await errorOf(res);
  if (opts.response) return res;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const get = (path, opts) => call("GET", path, opts);
export const post = (path, body, opts = {}) => call("POST", path, { ...opts, body });

// A binary download (a backup, an export) fetched with the key header, handed to the browser
// as a blob: URL so the key never has to appear in a link.
export async function download(path, filename, opts = {}) {
  const res = await send("GET", path, opts);
  if (!res.ok) throw await errorOf(res);
  const blob = await res.blob();
  saveBlob(blob, filename);
  return blob.size;
}

export function saveBlob(blob, filename) {
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

// Server-Sent Events over fetch(): EventSource can neither POST nor send the key header.
// Calls onEvent(name, data) for each event; resolves when the stream ends.
export async function stream(method, path, body, onEvent, opts = {}) {
  const res = await send(method, path, {
    ...opts,
    body,
    headers: { Accept: "text/event-stream", ...(opts.headers || {}) },
  });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (!data.length) continue;
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {
        /* plain text data */
      }
      onEvent(name, parsed);
    }
  }
}
