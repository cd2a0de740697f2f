// Small DOM helpers: elements are built with h(), never from HTML strings, so text
// from the API (device names, log lines) is always text.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'class') {
      element.className = value;
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name === 'style') {
      Object.assign(element.style, value); // the CSSOM: allowed by the CSP
    } else if (name in element && typeof value !== 'string') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

export function formatNumber(value) {
  if (value === null || value === undefined) return '–';
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(3);
  return Number(value.toFixed(abs >= 100 ? 1 : 3)).toString();
}

export function formatValue(metricValue) {
  const unit = metricValue.unit ? ` ${metricValue.unit}` : '';
  return `${formatNumber(metricValue.value)}${unit}`;
}

export function formatTime(iso) {
  if (!iso) return 'never';
  return new Date(iso).toLocaleString();
}

// "12 s ago", kept current by the pages' clocks (data-since attributes).
export function ago(iso) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function agoElement(iso) {
  return h('time', { datetime: iso || '', dataset: { since: iso || '' }, title: formatTime(iso) }, ago(iso));
}

// Every <time data-since> on the page, refreshed every few seconds.
export function startClock(root) {
  const timer = setInterval(() => {
    for (const element of root.querySelectorAll('time[data-since]')) {
      if (element.dataset.since) element.textContent = ago(element.dataset.since);
    }
  }, 5000);
  return () => clearInterval(timer);
}

export function statusBadge(status) {
  const words = { ONLINE: 'Online', OFFLINE: 'Offline', NEVER_SEEN: 'Never seen' };
  return h('span', { class: `status status-${status.toLowerCase()}` }, words[status] || status);
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('small', { class: 'hint' }, hint) : null,
  );
}

export function button(text, onClick, attributes = {}) {
  return h('button', { type: 'button', onClick, ...attributes }, text);
}

// A region for one section's messages (errors in words, see errors.js).
export function messageArea() {
  return h('div', { class: 'messages', role: 'alert', 'aria-live': 'assertive' });
}

export function table(headers, rows, caption) {
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption || 'table' },
    h(
      'table',
      {},
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((text) => h('th', { scope: 'col' }, text)))),
      rows instanceof HTMLTableSectionElement ? rows : h('tbody', {}, rows),
    ),
  );
}

export async function copyText(text, feedback) {
  try {
    await navigator.clipboard.writeText(text);
    if (feedback) feedback.textContent = 'Copied.';
  } catch {
    if (feedback) feedback.textContent = 'Select the text and copy it (the browser refused).';
  }
}
