// The console's shell: the router (#/fleet, #/devices/<id>, #/alerts, #/dashboards,
// #/dashboards/<id>, #/firmware, #/login), the header (navigation, the active-alert
// badge, the live socket's state, the user) and the session's start and end.
import { auth, gql, signOut } from './api.js';
import { live } from './live.js';
import { ACTIVE_ALERT_COUNT, ALERT_RAISED, ALERT_UPDATED } from './ops.js';
import { clear } from './ui.js';
import * as login from './pages/login.js';
import * as fleet from './pages/fleet.js';
import * as device from './pages/device.js';
import * as alerts from './pages/alerts.js';
import * as dashboards from './pages/dashboards.js';
import * as firmware from './pages/firmware.js';

const ROUTES = [
  [/^#\/login$/, login, 'login'],
  [/^#\/fleet$/, fleet, 'fleet'],
  [/^#\/devices\/([^/]+)$/, device, 'fleet'],
  [/^#\/alerts$/, alerts, 'alerts'],
  [/^#\/dashboards$/, dashboards, 'dashboards'],
  [/^#\/dashboards\/([^/]+)$/, dashboards, 'dashboards'],
  [/^#\/firmware$/, firmware, 'firmware'],
];
const main = document.getElementById('main');
const CONNECTION_WORDS = { online: 'Live', connecting: 'Connecting…', offline: 'Offline, reconnecting…' };
let leave = null;
let badgeStop = [];

function route() {
  const hash = location.hash || '#/fleet';
  if (!auth.token && hash !== '#/login') {
    sessionStorage.setItem('iotplatform.console.after', hash);
    location.replace('#/login');
    return;
  }
  let match = null;
  let page = null;
  let section = null;
  for (const [pattern, module, name] of ROUTES) {
    match = hash.match(pattern);
    if (match) {
      page = module;
      section = name;
      break;
    }
  }
  if (!page) {
    location.replace('#/fleet');
    return;
  }
  if (leave) leave();
  leave = null;
  clear(main);
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.page === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  leave = page.render(main, match.slice(1).map(decodeURIComponent)) || null;
  const heading = main.querySelector('h1');
  document.title = `${heading ? heading.textContent : 'Console'} · IoT platform`;
  // To the new page (screen readers announce it), unless the page focused a field itself.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

// The number of ACTIVE alerts, beside "Alerts": counted again when one is raised or changes.
function startBadge() {
  const badge = document.getElementById('alert-badge');
  let timer = 0;
  const count = async () => {
    try {
      const data = await gql(ACTIVE_ALERT_COUNT);
      const total = data.alerts.totalCount;
      badge.textContent = String(total);
      badge.hidden = total === 0;
      badge.setAttribute('aria-label', `${total} active`);
      badge.dataset.count = String(total);
    } catch {
      // Shown again at the next change.
    }
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(count, 300);
  };
  count();
  badgeStop = [live.subscribe(ALERT_RAISED, { deviceId: null }, later), live.subscribe(ALERT_UPDATED, { deviceId: null }, later)];
}

function signedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-firmware').hidden = !auth.isAdmin;
  document.getElementById('sign-out').hidden = false;
  document.getElementById('user').textContent = auth.user.email;
  live.start();
  startBadge();
}

function signedOut() {
  for (const stop of badgeStop) stop();
  badgeStop = [];
  live.stop();
  document.getElementById('nav').hidden = true;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('user').textContent = '';
}

auth.onChange((change) => {
  if (change === 'signed-out') {
    signedOut();
    location.hash = '#/login';
  }
});

// The login page's: a session started by register or login.
document.addEventListener('console:signed-in', () => {
  signedIn();
  const after = sessionStorage.getItem('iotplatform.console.after');
  sessionStorage.removeItem('iotplatform.console.after');
  location.hash = after && after !== '#/login' ? after : '#/fleet';
});

const connection = document.getElementById('connection');
live.onState((state) => {
  connection.className = `connection connection-${state}`;
  connection.textContent = CONNECTION_WORDS[state];
  connection.dataset.state = state;
});

document.getElementById('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);

if (await auth.resume()) signedIn();
route();
// The console is ready: tests wait for this before acting.
document.documentElement.dataset.ready = 'true';
