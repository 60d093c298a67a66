// The UI shell: login, navigation by URL hash, the vhost selector, and one page at a time
// (each page returns a function that stops its timers when the user leaves).
import { api, credentials, get, setCredentials, setUnauthorizedHandler } from './api.js';
import { clear, flash, h, replace } from './dom.js';
import * as overview from './pages/overview.js';
import * as connections from './pages/connections.js';
import * as exchanges from './pages/exchanges.js';
import * as queues from './pages/queues.js';
import * as topology from './pages/topology.js';
import * as admin from './pages/admin.js';

const main = document.getElementById('main');
let stopPage = () => {};
let me = null;

const ROUTES = [
  [/^\/overview$/, overview.render, 'overview'],
  [/^\/connections$/, connections.renderConnections, 'connections'],
  [/^\/channels$/, connections.renderChannels, 'channels'],
  [/^\/exchanges$/, exchanges.renderList, 'exchanges'],
  [/^\/exchanges\/([^/]+)\/([^/]*)$/, exchanges.renderOne, 'exchanges'],
  [/^\/queues$/, queues.renderList, 'queues'],
  [/^\/queues\/([^/]+)\/([^/]+)$/, queues.renderOne, 'queues'],
  [/^\/topology$/, topology.render, 'topology'],
  [/^\/admin(?:\/(\w+))?$/, admin.render, 'admin'],
];

export const ctx = {
  /** The vhost chosen in the header, or '' for all. */
  vhost() {
    return document.getElementById('vhost-select').value;
  },
  user() {
    return me;
  },
  go(hash) {
    location.hash = hash;
  },
};

function showLogin(message) {
  stopPage();
  stopPage = () => {};
  me = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('session').hidden = true;
  replace(main, document.getElementById('login-template').content.cloneNode(true));
  const form = document.getElementById('login-form');
  const error = document.getElementById('login-error');
  if (message) {
    error.textContent = message;
    error.hidden = false;
  }
  form.username.focus();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const creds = { user: form.username.value, password: form.password.value };
    try {
      me = await api('GET', '/api/whoami', undefined, creds);
    } catch (err) {
      error.textContent = err.status === 401 ? (err.message === 'Login failed' ? 'Login failed: wrong user name or password.' : err.message) : `Cannot log in: ${err.message}`;
      error.hidden = false;
      return;
    }
    setCredentials(creds.user, creds.password);
    await start();
  });
}

async function loadVhosts() {
  const select = document.getElementById('vhost-select');
  const current = select.value;
  const vhosts = await get('/api/vhosts?columns=name');
  replace(select, h('option', { value: '' }, 'All'), vhosts.map((v) => h('option', { value: v.name }, v.name)));
  select.value = vhosts.some((v) => v.name === current) ? current : '';
}

async function start() {
  const creds = credentials();
  if (!creds) return showLogin();
  try {
    me = await get('/api/whoami');
  } catch (err) {
    return showLogin(err.status === 401 ? undefined : err.message);
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('session').hidden = false;
  document.getElementById('whoami').textContent = `${me.name}${me.tags.length ? ` (${me.tags.join(', ')})` : ''}`;
  document.querySelector('#nav a[data-page="admin"]').hidden = !me.tags.includes('administrator');
  await loadVhosts().catch(() => {});
  route();
}

function route() {
  if (!me) return;
  const path = location.hash.replace(/^#/, '') || '/overview';
  stopPage();
  stopPage = () => {};
  for (const [re, render, nav] of ROUTES) {
    const m = re.exec(path.split('?')[0]);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === nav);
    clear(main);
    const params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
    Promise.resolve(render(main, params, ctx))
      .then((stop) => {
        if (typeof stop === 'function') stopPage = stop;
      })
      .catch((err) => {
        replace(main, h('div.card', h('h2', 'Something went wrong'), h('p.error', err.message)));
      });
    return;
  }
  location.hash = '#/overview';
}

setUnauthorizedHandler(() => {
  setCredentials(null);
  showLogin('Your session ended; please log in again.');
});

document.getElementById('logout').addEventListener('click', () => {
  setCredentials(null);
  showLogin();
});
document.getElementById('vhost-select').addEventListener('change', () => route());
window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason && ev.reason.message) flash(ev.reason.message, 'error');
});

/** Pages call this after creating or deleting a vhost, so the selector stays current. */
export function vhostsChanged() {
  loadVhosts().catch(() => {});
}

start();
