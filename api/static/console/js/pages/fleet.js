// The fleet: devices with their live status, last seen and latest values; filters;
// a new device, whose credentials are shown this once with a mosquitto_pub line.
import { gql } from '../api.js';
import { showError } from '../errors.js';
import { live } from '../live.js';
import { CREATE_DEVICE, DEVICE_STATUS_CHANGED, DEVICES, READING_ADDED } from '../ops.js';
import { agoElement, button, copyText, field, formatValue, h, messageArea, startClock, statusBadge, table } from '../ui.js';

const PAGE_SIZE = 50;

export function render(main) {
  const rows = new Map(); // device id -> {row, device}
  const messages = messageArea();
  const tbody = h('tbody');
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const more = button('Load more', () => load(true), { hidden: true });
  let cursor = null;

  const search = h('input', { type: 'search', name: 'search', placeholder: 'Name' });
  const status = h(
    'select',
    { name: 'status' },
    h('option', { value: '' }, 'Any'),
    h('option', { value: 'ONLINE' }, 'Online'),
    h('option', { value: 'OFFLINE' }, 'Offline'),
    h('option', { value: 'NEVER_SEEN' }, 'Never seen'),
  );
  const type = h('input', { type: 'text', name: 'type', placeholder: 'e.g. sensor' });
  const tag = h('input', { type: 'text', name: 'tag', placeholder: 'e.g. greenhouse' });
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter devices' },
    field('Search', search),
    field('Status', status),
    field('Type', type),
    field('Tag', tag),
    h('button', { type: 'submit' }, 'Apply'),
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    load(false);
  });
  status.addEventListener('change', () => load(false));

  function filter() {
    const value = {};
    if (search.value.trim()) value.search = search.value.trim();
    if (status.value) value.status = status.value;
    if (type.value.trim()) value.type = type.value.trim();
    if (tag.value.trim()) value.tag = tag.value.trim();
    return value;
  }

  function valuesCell(reading) {
    if (!reading) return h('td', { class: 'values' }, '–');
    return h(
      'td',
      { class: 'values' },
      reading.values.slice(0, 6).map((v) => h('span', { class: 'chip', dataset: { metric: v.metric } }, `${v.metric} ${formatValue(v)}`)),
    );
  }

  function deviceRow(device) {
    const row = h(
      'tr',
      { dataset: { deviceId: device.id } },
      h('th', { scope: 'row' }, h('a', { href: `#/devices/${encodeURIComponent(device.id)}` }, device.name)),
      h('td', {}, device.type),
      h('td', { class: 'status-cell' }, statusBadge(device.status)),
      h('td', { class: 'seen' }, agoElement(device.lastSeen)),
      valuesCell(device.latestReading),
      h('td', {}, device.tags.map((t) => h('span', { class: 'tag' }, t))),
    );
    rows.set(device.id, { row, device });
    return row;
  }

  async function load(append) {
    if (!append) cursor = null;
    try {
      const data = await gql(DEVICES, { first: PAGE_SIZE, after: cursor, filter: filter() });
      const connection = data.devices;
      if (!append) {
        rows.clear();
        tbody.replaceChildren();
      }
      tbody.append(...connection.edges.map((edge) => deviceRow(edge.node)));
      cursor = connection.pageInfo.endCursor;
      more.hidden = !connection.pageInfo.hasNextPage;
      count.textContent = `${connection.totalCount} device${connection.totalCount === 1 ? '' : 's'}`;
      if (!connection.totalCount) {
        tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '6' }, 'No devices match. Create one with “New device”.')));
      }
      messages.replaceChildren();
    } catch (error) {
      showError(messages, error);
    }
  }

  // Live: readings update a row's values and last seen; status changes its badge.
  const stops = [
    live.subscribe(READING_ADDED, { deviceId: null }, ({ readingAdded: reading }) => {
      const entry = rows.get(reading.deviceId);
      if (!entry) return;
      const merged = new Map((entry.device.latestReading?.values || []).map((v) => [v.metric, v]));
      for (const value of reading.values) merged.set(value.metric, value);
      entry.device.latestReading = { timestamp: reading.timestamp, values: [...merged.values()] };
      entry.row.children[4].replaceWith(valuesCell(entry.device.latestReading));
      entry.row.querySelector('.seen').replaceChildren(agoElement(reading.timestamp));
    }),
    live.subscribe(DEVICE_STATUS_CHANGED, {}, ({ deviceStatusChanged: change }) => {
      const entry = rows.get(change.id);
      if (!entry) return;
      entry.device.status = change.status;
      entry.row.querySelector('.status-cell').replaceChildren(statusBadge(change.status));
      if (change.lastSeen) entry.row.querySelector('.seen').replaceChildren(agoElement(change.lastSeen));
    }),
  ];

  const creator = newDevicePanel((device) => {
    tbody.querySelector('tr.empty')?.remove();
    tbody.prepend(deviceRow(device));
  });

  main.append(
    h(
      'section',
      { 'aria-labelledby': 'fleet-heading' },
      h('div', { class: 'page-head' }, h('h1', { id: 'fleet-heading' }, 'Fleet'), creator.toggle),
      creator.panel,
      filters,
      messages,
      count,
      table(['Device', 'Type', 'Status', 'Last seen', 'Latest values', 'Tags'], tbody, 'Devices'),
      more,
    ),
  );
  const stopClock = startClock(main);
  load(false);
  return () => {
    stops.forEach((stop) => stop());
    stopClock();
  };
}

const BROKER_KEY = 'iotplatform.console.broker';

// The API does not say where its broker listens to the outside (devstack: port 1884,
// compose: 1883): the line uses what the person set here, remembered in this browser.
function brokerAddress() {
  return localStorage.getItem(BROKER_KEY) || `${location.hostname || 'localhost'}:1883`;
}

function mosquittoLine(device, credentials, broker) {
  const [host, port = '1883'] = broker.trim().split(/:(?=\d+$)/);
  const payload = JSON.stringify({ temperature: 21.5 });
  return (
    `mosquitto_pub -h ${host} -p ${port} -i ${device.id} -u '${credentials.mqttUsername}' ` +
    `-P '${credentials.mqttPassword}' -t devices/${device.id}/telemetry -q 1 -m '${payload}'`
  );
}

// The "New device" form, then the credentials (shown once).
function newDevicePanel(created) {
  const messages = messageArea();
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '100' });
  const type = h('input', { type: 'text', name: 'type', required: true, value: 'sensor' });
  const result = h('div', { class: 'credentials', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'New device' },
    field('Name', name),
    field('Type', type),
    h('button', { type: 'submit', class: 'primary' }, 'Create device'),
  );
  const panel = h('div', { class: 'card', hidden: true, id: 'new-device' }, h('h2', {}, 'New device'), form, messages, result);
  const toggle = button('New device', () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) name.focus();
  }, { class: 'primary', 'aria-controls': 'new-device', 'aria-expanded': 'false' });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const data = await gql(CREATE_DEVICE, { input: { name: name.value.trim(), type: type.value.trim() } });
      const { device, credentials } = data.createDevice;
      created(device);
      messages.replaceChildren();
      const broker = h('input', { type: 'text', name: 'broker', value: brokerAddress(), autocomplete: 'off' });
      const code = h('code', { dataset: { secret: 'mosquitto' } }, mosquittoLine(device, credentials, broker.value));
      broker.addEventListener('input', () => {
        localStorage.setItem(BROKER_KEY, broker.value.trim());
        code.textContent = mosquittoLine(device, credentials, broker.value);
      });
      const copied = h('span', { class: 'copied', role: 'status' });
      const secret = (label, value, key) =>
        h('div', { class: 'secret' }, h('dt', {}, label), h('dd', {}, h('code', { dataset: { secret: key } }, value)));
      result.replaceChildren(
        h('p', { class: 'warning' }, `“${device.name}” is created. Its credentials are shown this once: copy them now.`),
        h(
          'dl',
          {},
          secret('MQTT client id (the device id)', device.id, 'id'),
          secret('MQTT username', credentials.mqttUsername, 'username'),
          secret('MQTT password', credentials.mqttPassword, 'password'),
          secret('Device token (HTTP, firmware downloads)', credentials.token, 'token'),
        ),
        h('p', {}, 'Publish a reading as this device:'),
        field('Broker address (host:port)', broker, 'Where devices reach the MQTT broker (make run: port 1884).'),
        h('pre', { class: 'command' }, code),
        h('div', { class: 'actions' }, button('Copy command', () => copyText(code.textContent, copied)), copied, h('a', { href: `#/devices/${device.id}` }, 'Open the device')),
      );
      form.reset();
      type.value = 'sensor';
    } catch (error) {
      showError(messages, error);
    }
  });
  return { panel, toggle };
}
