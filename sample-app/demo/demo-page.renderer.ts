import type { UserSessionInfo } from 'nest-session';
import { DEMO_CSRF_FIELD, DEMO_CSRF_KEY } from './demo-csrf.guard.js';

/** Flash type that carries the admin view's answer to the next page load. */
export const ADMIN_FLASH = 'demo-admin';
/** Session keys of the lock demo's two counters (`POST /counter/:key/increment`). */
export const UNLOCKED_COUNTER = 'demo-unlocked';
export const LOCKED_COUNTER = 'demo-locked';
/** Increments the lock demo fires per counter, and how long each handler waits between read and write. */
const INCREMENTS = 50;
const HANDLER_DELAY_MS = 20;

/** One session in the admin view. */
export interface DemoAdminSession {
  readonly handle: string;
  readonly user: string | null;
  readonly tags: readonly string[];
  readonly createdAt: number;
  readonly lastActivity: number;
  readonly expiresAt: number;
}

/** The admin view's listing (all sessions, or one user's). */
export interface DemoAdminListing {
  readonly user: string | null;
  readonly sessions: readonly DemoAdminSession[];
  readonly truncated: boolean;
}

/** What the admin view answers: a listing, or how many sessions GC removed. */
export type DemoAdminResult = DemoAdminListing | { readonly removed: number };

export interface DemoFlash {
  readonly type: string;
  readonly message: unknown;
}

/** Everything the page shows; the renderer escapes all of it. */
export interface DemoPageView {
  readonly csrfToken: string;
  /** Whether the request's cookie named a live session (else this page started one). */
  readonly resumed: boolean;
  readonly user: string | undefined;
  readonly data: Record<string, unknown>;
  readonly tags: readonly string[];
  readonly createdAt: number;
  readonly lastActivity: number;
  readonly expiresAt: number;
  /** The user's sessions; undefined when not logged in. */
  readonly devices: readonly UserSessionInfo[] | undefined;
  /** The flash messages this request consumed (admin answers included, type `ADMIN_FLASH`). */
  readonly flashes: readonly DemoFlash[];
  readonly adminEnabled: boolean;
}

/** Markup that is already safe; anything else put into `html` templates is escaped. */
class Html {
  constructor(readonly text: string) {}
}

/** Escapes text for HTML content and double- or single-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A template whose interpolations are escaped, except nested `html` results (arrays of them join). */
function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  values.forEach((value, i) => (out += piece(value) + (strings[i + 1] ?? '')));
  return new Html(out);
}

function piece(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(piece).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(typeof value === 'string' ? value : json(value));
}

/** Session values may be Map, Set or BigInt (devalue keeps them); show them as JSON can. */
function json(value: unknown, indent?: number): string {
  const text = JSON.stringify(
    value,
    (_key, v: unknown): unknown =>
      typeof v === 'bigint' ? `${v}n` : v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v] : v,
    indent,
  ) as string | undefined; // undefined for a lone undefined or function
  return text ?? String(value);
}

/** A UTC time to the second, with the exact ISO time in `datetime`. */
const time = (ms: number) => {
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')} UTC</time>`;
};

/** A browser's user agent, cut short for the table (the whole of it in the tooltip). */
const device = (userAgent: string | undefined) =>
  userAgent === undefined
    ? html`<em>unknown</em>`
    : html`<span title="${userAgent}">${userAgent.length > 60 ? `${userAgent.slice(0, 57)}...` : userAgent}</span>`;

/** The hidden field every form carries. */
const csrf = (token: string) => html`<input type="hidden" name="${DEMO_CSRF_FIELD}" value="${token}" />`;

/** The demo page: one HTML document, no external resources. */
export function renderDemoPage(view: DemoPageView): string {
  const admin = view.flashes.filter((f) => f.type === ADMIN_FLASH).map((f) => f.message);
  const messages = view.flashes.filter((f) => f.type !== ADMIN_FLASH);
  return (
    '<!doctype html>\n' +
    html`<html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>nest-session demo</title>
        <style>
          ${new Html(STYLE)}
        </style>
      </head>
      <body>
        <header>
          <h1>nest-session demo</h1>
          <p>Server-side sessions for NestJS. Every box below uses the library through the sample app's routes.</p>
        </header>
        <div id="flashes" aria-live="polite">
          ${messages.map((f) => html`<p class="flash flash-${f.type}" data-testid="flash">${f.message}</p>`)}
        </div>
        <main>
          ${sessionSection(view)} ${devicesSection(view)} ${loginSection(view)} ${flashSection(view)} ${lockSection()}
          ${adminSection(view, admin)}
        </main>
        <script>
          ${new Html(SCRIPT)};
        </script>
      </body>
    </html> `.text
  );
}

function sessionSection(view: DemoPageView): Html {
  return html`<section id="session">
    <h2>Your session</h2>
    <dl>
      <dt>Started</dt>
      <dd data-testid="started">
        ${view.resumed ? 'resumed from your cookie' : 'new: this page started it to keep its CSRF token'}
      </dd>
      <dt>User</dt>
      <dd data-testid="user">${view.user ?? html`<em>anonymous</em>`}</dd>
      <dt>Tags</dt>
      <dd>${view.tags.length === 0 ? html`<em>none</em>` : view.tags.map((t) => html`<code>${t}</code> `)}</dd>
      <dt>Created</dt>
      <dd>${time(view.createdAt)}</dd>
      <dt>Last activity</dt>
      <dd>${time(view.lastActivity)}</dd>
      <dt>Expires</dt>
      <dd>${time(view.expiresAt)}</dd>
    </dl>
    <h3>Data</h3>
    <pre data-testid="data">${json(view.data, 2)}</pre>
    <p class="note"><code>${DEMO_CSRF_KEY}</code> is this page's CSRF token, checked on every form post.</p>
  </section>`;
}

function loginSection(view: DemoPageView): Html {
  const body =
    view.user === undefined
      ? html`<form method="post" action="/demo/login" id="login-form">
            ${csrf(view.csrfToken)}
            <label>User name <input name="user" required maxlength="200" autocomplete="username" /></label>
            <button type="submit">Log in</button>
          </form>
          <p class="note">Logging in binds the session to the user, tags it and gives it a new id.</p>`
      : html`<p>Logged in as <strong>${view.user}</strong>.</p>
          <form method="post" action="/demo/logout" id="logout-form">
            ${csrf(view.csrfToken)}
            <button type="submit">Log out</button>
          </form>
          <p class="note">Logging out destroys the session and expires the cookie.</p>`;
  return html`<section id="login">
    <h2>Log in</h2>
    ${body}
  </section>`;
}

function devicesSection(view: DemoPageView): Html {
  if (view.devices === undefined) {
    return html`<section id="devices">
      <h2>My devices</h2>
      <p class="note">Log in (from two browsers, as the same user) to see your sessions here.</p>
    </section>`;
  }
  const rows = view.devices.map(
    (d) =>
      html`<tr data-testid="device" class="${d.current ? 'current' : ''}">
        <td>${device(d.userAgent)}${d.current ? html` <strong>(this device)</strong>` : ''}</td>
        <td>${d.clientAddress ?? ''}</td>
        <td>${time(d.createdAt)}</td>
        <td>${time(d.lastActivity)}</td>
        <td>
          ${
            d.current
              ? ''
              : html`<form method="post" action="/demo/devices/revoke">
                  ${csrf(view.csrfToken)}<input type="hidden" name="handle" value="${d.handle}" />
                  <button type="submit">Revoke</button>
                </form>`
          }
        </td>
      </tr>`,
  );
  return html`<section id="devices">
    <h2>My devices</h2>
    <table>
      <thead>
        <tr>
          <th>Device</th>
          <th>Address</th>
          <th>Signed in</th>
          <th>Last activity</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
    <form method="post" action="/demo/devices/revoke-others" id="revoke-others-form">
      ${csrf(view.csrfToken)}
      <button type="submit">Log out other devices</button>
    </form>
  </section>`;
}

function flashSection(view: DemoPageView): Html {
  return html`<section id="flash">
    <h2>Flash messages</h2>
    <form method="post" action="/demo/flash" id="flash-form">
      ${csrf(view.csrfToken)}
      <label
        >Type
        <select name="type">
          <option>info</option>
          <option>success</option>
          <option>error</option>
        </select></label
      >
      <label>Message <input name="message" required maxlength="500" /></label>
      <button type="submit">Post and redirect</button>
    </form>
    <p class="note">The message is kept in the session's flash bag, shown once after the redirect, then gone.</p>
  </section>`;
}

function lockSection(): Html {
  return html`<section id="lock">
    <h2>Locking</h2>
    <p>
      ${INCREMENTS} parallel <code>POST /counter/:key/increment</code> on one session, each waiting ${HANDLER_DELAY_MS} ms between
      reading and writing the number: without the lock they overwrite each other, with <code>?lock=1</code> none is lost.
    </p>
    <noscript><p class="note">This part needs JavaScript.</p></noscript>
    <button type="button" id="fire" hidden data-increments="${INCREMENTS}" data-delay="${HANDLER_DELAY_MS}">
      Fire ${INCREMENTS} parallel increments
    </button>
    <div class="results">
      <div>
        <h3>Without the lock</h3>
        <output id="unlocked-result" data-key="${UNLOCKED_COUNTER}">-</output>
        <p class="note" id="unlocked-note"></p>
      </div>
      <div>
        <h3>With the lock</h3>
        <output id="locked-result" data-key="${LOCKED_COUNTER}">-</output>
        <p class="note" id="locked-note"></p>
      </div>
    </div>
  </section>`;
}

function adminSection(view: DemoPageView, answers: readonly unknown[]): Html {
  return html`<section id="admin">
    <h2>Admin</h2>
    ${view.adminEnabled ? '' : html`<p class="note">Disabled: start the app with <code>ADMIN_TOKEN</code> set.</p>`}
    <form method="post" action="/demo/admin" id="admin-form">
      ${csrf(view.csrfToken)}
      <label>Admin token <input type="password" name="token" autocomplete="off" /></label>
      <label>User <input name="user" placeholder="all users" /></label>
      <button type="submit" name="action" value="list">Sessions by user</button>
      <button type="submit" name="action" value="gc">GC now</button>
    </form>
    ${answers.map(adminAnswer)}
  </section>`;
}

function adminAnswer(answer: unknown): Html {
  if (typeof answer !== 'object' || answer === null) return html``;
  if ('removed' in answer) return html`<p data-testid="gc-result">GC removed ${answer.removed} expired sessions.</p>`;
  const listing = answer as DemoAdminListing;
  return html`<table data-testid="admin-sessions">
    <caption>
      ${listing.sessions.length}${listing.truncated ? '+' : ''}
      session${listing.sessions.length === 1 ? '' : 's'}${listing.user === null ? '' : html` of <strong>${listing.user}</strong>`}
    </caption>
    <thead>
      <tr>
        <th>Handle</th>
        <th>User</th>
        <th>Tags</th>
        <th>Created</th>
        <th>Expires</th>
      </tr>
    </thead>
    <tbody>
      ${listing.sessions.map(
        (s) =>
          html`<tr>
            <td><code>${s.handle}</code></td>
            <td>${s.user ?? html`<em>anonymous</em>`}</td>
            <td>${s.tags.map((t) => html`<code>${t}</code> `)}</td>
            <td>${time(s.createdAt)}</td>
            <td>${time(s.expiresAt)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

const STYLE = `
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 1.5rem; color: #1d2430; background: #f5f6f8; }
  header p { margin-top: -.5rem; color: #4a5568; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 0 1rem 1rem; }
  h2 { font-size: 1.1rem; } h3 { font-size: .95rem; margin-bottom: .3rem; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0; } dt { color: #4a5568; } dd { margin: 0; }
  pre { background: #f0f2f5; padding: .5rem; border-radius: 4px; overflow: auto; max-height: 12rem; white-space: pre-wrap; overflow-wrap: anywhere; }
  dd code { overflow-wrap: anywhere; }
  table { border-collapse: collapse; width: 100%; font-size: .85rem; margin-bottom: .6rem; } td, th { text-align: left; padding: .25rem; border-bottom: 1px solid #e5e8ec; vertical-align: top; }
  tr.current { background: #eef6ff; } caption { text-align: left; padding: .3rem 0; }
  form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .5rem 0; } label { display: flex; flex-direction: column; font-size: .85rem; gap: .15rem; }
  input, select, button { font: inherit; padding: .3rem .5rem; } button { cursor: pointer; }
  .note { color: #5a6472; font-size: .85rem; }
  .flash { padding: .5rem .8rem; border-radius: 6px; background: #e8f0fe; border: 1px solid #b6cdf8; }
  .flash-success { background: #e6f6ea; border-color: #a8dcb5; } .flash-error { background: #fdecec; border-color: #f3b4b4; }
  .results { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } output { font-size: 2.2rem; font-weight: 600; }
  #fire { margin: .3rem 0 .6rem; }
`;

// The lock demo: plain fetch calls of the JSON routes (same origin, so the session cookie goes along).
const SCRIPT = `
  (() => {
    const button = document.getElementById('fire');
    if (!button) return;
    const n = Number(button.dataset.increments);
    const delay = Number(button.dataset.delay);
    button.hidden = false;
    async function fire(output, lock) {
      const key = encodeURIComponent(output.dataset.key);
      await fetch('/session/data/' + key, { method: 'DELETE' });
      const url = '/counter/' + key + '/increment?delay=' + delay + (lock ? '&lock=1' : '');
      const answers = await Promise.all(
        Array.from({ length: n }, () => fetch(url, { method: 'POST' }).then((r) => r.ok, () => false)),
      );
      return answers.filter((ok) => !ok).length;
    }
    button.addEventListener('click', async () => {
      const outputs = [document.getElementById('unlocked-result'), document.getElementById('locked-result')];
      const notes = [document.getElementById('unlocked-note'), document.getElementById('locked-note')];
      button.disabled = true;
      delete button.dataset.done;
      outputs.forEach((o) => (o.textContent = '...'));
      notes.forEach((o) => (o.textContent = ''));
      try {
        const failed = [await fire(outputs[0], false), await fire(outputs[1], true)];
        const { data } = await (await fetch('/session')).json();
        outputs.forEach((output, i) => {
          const value = Number(data[output.dataset.key] ?? 0);
          output.textContent = String(value);
          notes[i].textContent =
            (failed[i] > 0 ? failed[i] + ' requests failed; ' : '') + (n - value) + ' of ' + n + ' updates lost';
        });
      } finally {
        button.disabled = false;
        button.dataset.done = 'true';
      }
    });
  })();
`;
