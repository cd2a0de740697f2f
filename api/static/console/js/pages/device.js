// One device: its details, live charts per metric (aggregate history, then each
// readingAdded point, no reload), recent readings, alert rules, twin and logs.
//
// The page is a list of SECTIONS; each gets the device and the page's context (one
// readingAdded subscription shared by all, the message area) and returns its element
// and a stop function. A new capability of the API (commands, say) is one more entry.
import { gql } from '../api.js';
import { showError, showInfo } from '../errors.js';
import { LiveChart } from '../chart.js';
import { live } from '../live.js';
import {
  AGGREGATE,
  ALERT_RULES,
  CREATE_ALERT_RULE,
  CREATE_NO_DATA_RULE,
  DELETE_ALERT_RULE,
  DELETE_DEVICE,
  DEVICE,
  DEVICE_LOG_ADDED,
  DEVICE_LOGS,
  DEVICE_STATUS_CHANGED,
  DEVICE_TWIN,
  DISABLE_ALERT_RULE,
  ENABLE_ALERT_RULE,
  READING_ADDED,
  READINGS,
  TWIN_CHANGED,
  UPDATE_DESIRED_STATE,
  UPDATE_DEVICE,
} from '../ops.js';
import { agoElement, button, field, formatTime, formatValue, h, messageArea, startClock, statusBadge, table } from '../ui.js';

const SECTIONS = [
  { id: 'charts', title: 'Live charts', render: chartsSection },
  { id: 'readings', title: 'Recent readings', render: readingsSection },
  { id: 'rules', title: 'Alert rules', render: rulesSection },
  { id: 'twin', title: 'Twin', render: twinSection },
  { id: 'logs', title: 'Logs', render: logsSection },
  { id: 'details', title: 'Details', render: detailsSection },
];

const RANGES = {
  '1h': { seconds: 3600, bucket: '10s' },
  '6h': { seconds: 6 * 3600, bucket: '1m' },
  '24h': { seconds: 24 * 3600, bucket: '15m' },
};

export function render(main, [id]) {
  const messages = messageArea();
  const container = h('div', { class: 'device-page' }, h('h1', {}, 'Device'), messages);
  main.append(container);
  const stops = [];
  let gone = false;
  (async () => {
    let device;
    try {
      device = (await gql(DEVICE, { id })).device;
    } catch (error) {
      showError(messages, error);
      return;
    }
    if (gone) return;
    const readers = new Set();
    const context = {
      device,
      onReading(handler) {
        readers.add(handler);
      },
    };
    stops.push(
      live.subscribe(READING_ADDED, { deviceId: device.id }, ({ readingAdded }) => {
        for (const reader of readers) reader(readingAdded);
      }),
    );
    const status = h('span', { class: 'status-holder' }, statusBadge(device.status));
    const seen = h('span', { class: 'seen' }, agoElement(device.lastSeen));
    context.onReading((reading) => seen.replaceChildren(agoElement(reading.timestamp)));
    stops.push(
      live.subscribe(DEVICE_STATUS_CHANGED, {}, ({ deviceStatusChanged: change }) => {
        if (change.id !== device.id) return;
        status.replaceChildren(statusBadge(change.status));
        if (change.lastSeen) seen.replaceChildren(agoElement(change.lastSeen));
      }),
    );
    const heading = container.querySelector('h1');
    heading.textContent = device.name;
    const summary = h(
      'p',
      { class: 'device-summary' },
      status,
      ` ${device.type} · last seen `,
      seen,
      device.firmwareVersion ? ` · firmware ${device.firmwareVersion}` : '',
      ' · id ',
      h('code', {}, device.id),
    );
    const nav = h(
      'nav',
      { class: 'sections', 'aria-label': 'Device sections' },
      h('ul', {}, SECTIONS.map((s) => h('li', {}, h('a', { href: `#/devices/${device.id}`, dataset: { section: s.id } }, s.title)))),
    );
    nav.addEventListener('click', (event) => {
      const target = event.target.closest('a[data-section]');
      if (!target) return;
      event.preventDefault();
      const section = document.getElementById(`section-${target.dataset.section}`);
      section.scrollIntoView({ behavior: 'smooth' });
      section.focus({ preventScroll: true });
    });
    container.append(summary, nav);
    for (const section of SECTIONS) {
      const element = h('section', { id: `section-${section.id}`, class: 'card', tabindex: '-1', 'aria-labelledby': `heading-${section.id}` });
      element.append(h('h2', { id: `heading-${section.id}` }, section.title));
      container.append(element);
      const stop = section.render(element, context);
      if (stop) stops.push(stop);
    }
    stops.push(startClock(container));
  })();
  return () => {
    gone = true;
    stops.forEach((stop) => stop());
  };
}

function chartsSection(element, { device, onReading }) {
  const messages = messageArea();
  const grid = h('div', { class: 'charts' });
  const range = h('select', { name: 'range' }, Object.keys(RANGES).map((key) => h('option', { value: key }, `Last ${key}`)));
  const charts = new Map();
  const empty = h('p', { class: 'hint' }, 'No readings yet: charts appear with the first one.');
  element.append(h('div', { class: 'toolbar' }, field('Time range', range)), messages, grid);

  async function chartFor(metric, unit) {
    const chart = new LiveChart({ title: metric, unit, windowSeconds: RANGES[range.value].seconds });
    chart.element.dataset.metric = metric;
    charts.set(metric, chart);
    empty.remove();
    grid.append(chart.element);
    chart.mount();
    const { seconds, bucket } = RANGES[range.value];
    const to = new Date(Date.now() + 60_000);
    const from = new Date(to.getTime() - seconds * 1000);
    try {
      const data = await gql(AGGREGATE, { deviceId: device.id, metric, from: from.toISOString(), to: to.toISOString(), bucket });
      chart.setHistory(0, data.aggregate.map((b) => [new Date(b.start).getTime() / 1000, b.avg]));
    } catch (error) {
      showError(messages, error);
    }
    return chart;
  }

  function build() {
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    grid.replaceChildren();
    const units = new Map((device.latestReading?.values || []).map((v) => [v.metric, v.unit]));
    if (!device.metrics.length) grid.append(empty);
    for (const metric of device.metrics) chartFor(metric, units.get(metric));
  }
  range.addEventListener('change', build);
  build();
  onReading((reading) => {
    const time = new Date(reading.timestamp).getTime() / 1000;
    for (const value of reading.values) {
      let chart = charts.get(value.metric);
      if (!chart) {
        // A metric the device never sent before: its chart starts now.
        device.metrics.push(value.metric);
        chart = new LiveChart({ title: value.metric, unit: value.unit, windowSeconds: RANGES[range.value].seconds });
        chart.element.dataset.metric = value.metric;
        charts.set(value.metric, chart);
        empty.remove();
        grid.append(chart.element);
        chart.mount();
      }
      chart.push(0, time, value.value, { deviceId: reading.deviceId, metric: value.metric, value: value.value, timestamp: reading.timestamp });
    }
  });
  return () => charts.forEach((chart) => chart.destroy());
}

function readingsSection(element, { device, onReading }) {
  const LIMIT = 20;
  const messages = messageArea();
  const tbody = h('tbody');
  const row = (reading) =>
    h(
      'tr',
      {},
      h('td', {}, formatTime(reading.timestamp)),
      h('td', {}, reading.values.map((v) => h('span', { class: 'chip' }, `${v.metric} ${formatValue(v)}`))),
      h('td', {}, reading.anomaly ? 'anomaly' : ''),
    );
  element.append(messages, table(['Time', 'Values', 'Flag'], tbody, 'Recent readings'));
  gql(READINGS, { deviceId: device.id, first: LIMIT }).then(
    (data) => tbody.append(...data.readings.edges.map((edge) => row(edge.node))),
    (error) => showError(messages, error),
  );
  onReading((reading) => {
    tbody.prepend(row(reading));
    while (tbody.children.length > LIMIT) tbody.lastChild.remove();
  });
}

function ruleText(rule) {
  if (rule.kind === 'NO_DATA') return `silent for more than ${rule.noDataSeconds} s`;
  const parts = [];
  if (rule.min !== null) parts.push(`below ${rule.min}`);
  if (rule.max !== null) parts.push(`above ${rule.max}`);
  return `${rule.metric} ${parts.join(' or ')}${rule.durationSeconds ? ` for ${rule.durationSeconds} s` : ''}`;
}

function rulesSection(element, { device }) {
  const messages = messageArea();
  const tbody = h('tbody');
  const severity = () =>
    h('select', { name: 'severity' }, ['WARNING', 'CRITICAL', 'INFO'].map((s) => h('option', { value: s }, s.toLowerCase())));

  async function act(operation, id) {
    try {
      await gql(operation, { id });
      await load();
    } catch (error) {
      showError(messages, error);
    }
  }

  function row(rule) {
    return h(
      'tr',
      { dataset: { ruleId: rule.id } },
      h('td', {}, rule.kind === 'NO_DATA' ? 'No data' : 'Threshold'),
      h('td', {}, ruleText(rule)),
      h('td', {}, rule.severity.toLowerCase()),
      h('td', {}, rule.enabled ? 'enabled' : 'disabled'),
      h(
        'td',
        { class: 'row-actions' },
        rule.enabled
          ? button('Disable', () => act(DISABLE_ALERT_RULE, rule.id))
          : button('Enable', () => act(ENABLE_ALERT_RULE, rule.id)),
        button('Delete', () => act(DELETE_ALERT_RULE, rule.id), { class: 'danger' }),
      ),
    );
  }

  async function load() {
    const data = await gql(ALERT_RULES, { deviceId: device.id });
    tbody.replaceChildren(...data.alertRules.map(row));
    if (!data.alertRules.length) tbody.append(h('tr', {}, h('td', { colspan: '5' }, 'No rules yet.')));
  }

  const metric = h('input', { type: 'text', name: 'metric', required: true, list: 'metrics-list' });
  const metrics = h('datalist', { id: 'metrics-list' }, device.metrics.map((m) => h('option', { value: m })));
  const min = h('input', { type: 'number', name: 'min', step: 'any' });
  const max = h('input', { type: 'number', name: 'max', step: 'any' });
  const thresholdSeverity = severity();
  const threshold = h(
    'form',
    { class: 'inline-form', 'aria-label': 'New threshold rule' },
    field('Metric', metric),
    metrics,
    field('Minimum', min),
    field('Maximum', max),
    field('Severity', thresholdSeverity),
    h('button', { type: 'submit' }, 'Add threshold rule'),
  );
  threshold.addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = { deviceId: device.id, metric: metric.value.trim(), severity: thresholdSeverity.value };
    if (min.value !== '') input.min = Number(min.value);
    if (max.value !== '') input.max = Number(max.value);
    try {
      await gql(CREATE_ALERT_RULE, { input });
      threshold.reset();
      showInfo(messages, 'Rule added: it applies to the next readings.');
      await load();
    } catch (error) {
      showError(messages, error);
    }
  });
  const seconds = h('input', { type: 'number', name: 'seconds', min: '1', required: true, value: '300' });
  const silentSeverity = severity();
  const silence = h(
    'form',
    { class: 'inline-form', 'aria-label': 'New no-data rule' },
    field('Silent for (seconds)', seconds),
    field('Severity', silentSeverity),
    h('button', { type: 'submit' }, 'Add no-data rule'),
  );
  silence.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await gql(CREATE_NO_DATA_RULE, { input: { deviceId: device.id, seconds: Number(seconds.value), severity: silentSeverity.value } });
      showInfo(messages, 'Rule added.');
      await load();
    } catch (error) {
      showError(messages, error);
    }
  });
  element.append(table(['Kind', 'Raises when', 'Severity', 'State', 'Actions'], tbody, 'Alert rules'), threshold, silence, messages);
  load().catch((error) => showError(messages, error));
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function twinSection(element, { device }) {
  const messages = messageArea();
  const version = h('span');
  const desired = h('pre', { class: 'json', dataset: { twin: 'desired' } });
  const reported = h('pre', { class: 'json', dataset: { twin: 'reported' } });
  const delta = h('pre', { class: 'json', dataset: { twin: 'delta' } });
  let current = null;
  function show(twin) {
    current = twin;
    version.textContent = `version ${twin.version}`;
    desired.textContent = json(twin.desired);
    reported.textContent = json(twin.reported);
    delta.textContent = json(twin.delta);
  }
  const patch = h('textarea', { name: 'patch', rows: '4', spellcheck: false, placeholder: '{"interval": 10}' });
  const form = h(
    'form',
    { 'aria-label': 'Change desired state' },
    field('Change desired (a JSON merge patch: null removes a key)', patch),
    h('button', { type: 'submit' }, 'Send to device'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let value;
    try {
      value = JSON.parse(patch.value);
    } catch {
      messages.replaceChildren(h('p', { class: 'error' }, 'The patch is not valid JSON.'));
      return;
    }
    try {
      const data = await gql(UPDATE_DESIRED_STATE, { deviceId: device.id, patch: value, expectedVersion: current ? current.version : null });
      show(data.updateDesiredState);
      patch.value = '';
      showInfo(messages, 'Sent.');
    } catch (error) {
      showError(messages, error);
    }
  });
  element.append(
    version,
    h('div', { class: 'twin' }, h('div', {}, h('h3', {}, 'Desired'), desired), h('div', {}, h('h3', {}, 'Reported'), reported), h('div', {}, h('h3', {}, 'Delta'), delta)),
    form,
    messages,
  );
  gql(DEVICE_TWIN, { id: device.id }).then((data) => show(data.device.twin), (error) => showError(messages, error));
  return live.subscribe(TWIN_CHANGED, { deviceId: device.id }, (data) => show(data.twinChanged), (error) => showError(messages, error));
}

function logsSection(element, { device }) {
  const LIMIT = 100;
  const messages = messageArea();
  const list = h('ol', { class: 'logs', 'aria-live': 'off' });
  const line = (log) =>
    h('li', { class: `log log-${log.level.toLowerCase()}` }, h('time', { datetime: log.timestamp }, formatTime(log.timestamp)), ` ${log.level} `, log.message);
  element.append(messages, list);
  gql(DEVICE_LOGS, { deviceId: device.id, first: 50 }).then(
    (data) => {
      list.append(...data.deviceLogs.edges.map((edge) => line(edge.node)));
      if (!data.deviceLogs.edges.length) list.append(h('li', { class: 'empty' }, 'No log lines.'));
    },
    (error) => showError(messages, error),
  );
  return live.subscribe(DEVICE_LOG_ADDED, { deviceId: device.id }, ({ deviceLogAdded }) => {
    list.querySelector('.empty')?.remove();
    list.prepend(line(deviceLogAdded));
    while (list.children.length > LIMIT) list.lastChild.remove();
  });
}

function detailsSection(element, { device }) {
  const messages = messageArea();
  const name = h('input', { type: 'text', name: 'name', value: device.name, required: true });
  const tags = h('input', { type: 'text', name: 'tags', value: device.tags.join(', ') });
  const latitude = h('input', { type: 'number', name: 'latitude', step: 'any', min: '-90', max: '90', value: device.location?.latitude ?? '' });
  const longitude = h('input', { type: 'number', name: 'longitude', step: 'any', min: '-180', max: '180', value: device.location?.longitude ?? '' });
  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Device details' },
    field('Name', name),
    field('Tags', tags, 'Separated by commas.'),
    field('Latitude', latitude),
    field('Longitude', longitude),
    h('button', { type: 'submit' }, 'Save details'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = { name: name.value.trim(), tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean) };
    if (latitude.value !== '' && longitude.value !== '') {
      input.location = { latitude: Number(latitude.value), longitude: Number(longitude.value) };
    }
    try {
      await gql(UPDATE_DEVICE, { id: device.id, input });
      showInfo(messages, 'Saved.');
    } catch (error) {
      showError(messages, error);
    }
  });
  const remove = button('Delete device', async () => {
    if (!window.confirm(`Delete “${device.name}”, its credentials and its readings?`)) return;
    try {
      await gql(DELETE_DEVICE, { id: device.id });
      location.hash = '#/fleet';
    } catch (error) {
      showError(messages, error);
    }
  }, { class: 'danger' });
  element.append(form, messages, h('p', { class: 'hint' }, `Registered ${formatTime(device.createdAt)}.`), remove);
}
