// Dashboards: the caller's list; one dashboard rendered from its widget config
// (docs/dashboards.md: line_chart, gauge, table, map), live; edited and saved.
import { gql } from '../api.js';
import { showError, showInfo } from '../errors.js';
import { Gauge, LiveChart } from '../chart.js';
import { live } from '../live.js';
import { AGGREGATE, CREATE_DASHBOARD, DASHBOARD_BY_ID, DASHBOARDS, DELETE_DASHBOARD, DEVICES, READING_ADDED, READINGS, UPDATE_DASHBOARD } from '../ops.js';
import { button, field, formatTime, formatValue, h, messageArea, table } from '../ui.js';

const RANGE_SECONDS = { '1h': 3600, '6h': 6 * 3600, '24h': 24 * 3600, '7d': 7 * 86400 };
const KINDS = { line_chart: 'Line chart', gauge: 'Gauge', table: 'Table', map: 'Map' };

export function render(main, [id]) {
  return id ? renderOne(main, id) : renderList(main);
}

function renderList(main) {
  const messages = messageArea();
  const list = h('ul', { class: 'dashboard-list' });
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '100' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'New dashboard' }, field('Name', name), h('button', { type: 'submit', class: 'primary' }, 'Create dashboard'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const data = await gql(CREATE_DASHBOARD, { input: { name: name.value.trim(), config: { layout: { columns: 12 }, widgets: [] } } });
      location.hash = `#/dashboards/${data.createDashboard.id}?edit`;
    } catch (error) {
      showError(messages, error);
    }
  });
  main.append(h('section', { 'aria-labelledby': 'dashboards-heading' }, h('h1', { id: 'dashboards-heading' }, 'Dashboards'), form, messages, list));
  gql(DASHBOARDS).then(
    (data) => {
      if (!data.dashboards.length) list.append(h('li', {}, 'No dashboards yet.'));
      for (const dashboard of data.dashboards) {
        list.append(
          h(
            'li',
            {},
            h('a', { href: `#/dashboards/${dashboard.id}` }, dashboard.name),
            h('span', { class: 'hint' }, ` ${dashboard.config.widgets.length} widgets · changed ${formatTime(dashboard.updatedAt)}`),
          ),
        );
      }
    },
    (error) => showError(messages, error),
  );
}

function renderOne(main, rawId) {
  const [id, flag] = rawId.split('?');
  const messages = messageArea();
  const heading = h('h1', { id: 'dashboard-heading' }, 'Dashboard');
  const grid = h('div', { class: 'dashboard-grid' });
  const editor = h('div', { class: 'editor card', hidden: true });
  const editButton = button('Edit', () => setEditing(editor.hidden), { 'aria-expanded': 'false', 'aria-controls': 'dashboard-editor' });
  editor.id = 'dashboard-editor';
  main.append(
    h(
      'section',
      { 'aria-labelledby': 'dashboard-heading' },
      h('div', { class: 'page-head' }, heading, h('div', { class: 'actions' }, editButton, h('a', { href: '#/dashboards' }, 'All dashboards'))),
      messages,
      editor,
      grid,
    ),
  );
  let dashboard = null;
  let devices = new Map();
  let stopWidgets = () => {};
  let gone = false;

  function setEditing(on) {
    editor.hidden = !on;
    editButton.textContent = on ? 'Close editor' : 'Edit';
    editButton.setAttribute('aria-expanded', String(on));
    if (on) renderEditor();
  }

  function draw() {
    stopWidgets();
    stopWidgets = renderWidgets(grid, dashboard.config, devices);
  }

  function renderEditor() {
    editor.replaceChildren(
      ...buildEditor(dashboard, devices, {
        changed: draw,
        save: async (name) => {
          const data = await gql(UPDATE_DASHBOARD, { id: dashboard.id, input: { name, config: dashboard.config } });
          dashboard = data.updateDashboard;
          heading.textContent = dashboard.name;
          draw();
        },
        remove: async () => {
          await gql(DELETE_DASHBOARD, { id: dashboard.id });
          location.hash = '#/dashboards';
        },
      }),
    );
  }

  (async () => {
    try {
      const [one, all] = await Promise.all([gql(DASHBOARD_BY_ID, { id }), gql(DEVICES, { first: 200 })]);
      if (gone) return;
      dashboard = one.dashboard;
      devices = new Map(all.devices.edges.map((edge) => [edge.node.id, edge.node]));
      heading.textContent = dashboard.name;
      document.title = `${dashboard.name} · IoT platform`;
      draw();
      if (flag === 'edit' || !dashboard.config.widgets.length) setEditing(true);
    } catch (error) {
      showError(messages, error);
    }
  })();
  return () => {
    gone = true;
    stopWidgets();
  };
}

// Every widget of config into grid; one readingAdded subscription feeds them all.
function renderWidgets(grid, config, devices) {
  grid.replaceChildren();
  grid.style.gridTemplateColumns = `repeat(${config.layout.columns}, minmax(0, 1fr))`;
  const readers = new Map(); // device id -> handlers
  const cleanups = [];
  const context = {
    name: (id) => (devices.get(id) ? devices.get(id).name : 'deleted device'),
    device: (id) => devices.get(id),
    onReading(deviceId, handler) {
      if (!readers.has(deviceId)) readers.set(deviceId, []);
      readers.get(deviceId).push(handler);
    },
    cleanup: (fn) => cleanups.push(fn),
  };
  for (const widget of config.widgets) {
    const body = h('div', { class: 'widget-body' });
    const element = h(
      'article',
      { class: `widget widget-${widget.kind}`, dataset: { widgetId: widget.id, kind: widget.kind }, 'aria-label': widget.title || KINDS[widget.kind] },
      h('h2', {}, widget.title || KINDS[widget.kind] || widget.kind),
      body,
    );
    const { x, y, w, h: height } = widget.position;
    element.style.gridColumn = `${x + 1} / span ${w}`;
    element.style.gridRow = `${y + 1} / span ${height}`;
    grid.append(element);
    const draw = WIDGETS[widget.kind];
    if (draw) draw(body, widget, context);
    else body.append(h('p', { class: 'hint' }, `This console does not draw “${widget.kind}” widgets yet.`));
  }
  if (!config.widgets.length) grid.append(h('p', { class: 'hint' }, 'No widgets yet: add one in the editor.'));
  const stop = live.subscribe(READING_ADDED, { deviceId: null }, ({ readingAdded: reading }) => {
    for (const handler of readers.get(reading.deviceId) || []) handler(reading);
  });
  return () => {
    stop();
    cleanups.forEach((fn) => fn());
  };
}

const WIDGETS = {
  line_chart(body, widget, context) {
    const pairs = widget.devices.flatMap((deviceId) => widget.metrics.map((metric) => ({ deviceId, metric })));
    const seconds = RANGE_SECONDS[widget.options.range] || 3600;
    const chart = new LiveChart({
      title: widget.metrics.join(', '),
      series: pairs.map((p) => ({ label: `${context.name(p.deviceId)} · ${p.metric}` })),
      windowSeconds: seconds,
      height: Math.max(120, widget.position.h * 70 - 90),
    });
    body.append(chart.element);
    requestAnimationFrame(() => {
      chart.mount();
      const to = new Date(Date.now() + 60_000);
      const from = new Date(to.getTime() - seconds * 1000);
      pairs.forEach((pair, index) => {
        if (!context.device(pair.deviceId)) return;
        gql(AGGREGATE, { deviceId: pair.deviceId, metric: pair.metric, from: from.toISOString(), to: to.toISOString(), bucket: widget.options.bucket }).then(
          (data) => chart.setHistory(index, data.aggregate.map((b) => [new Date(b.start).getTime() / 1000, b.avg])),
          () => {},
        );
      });
    });
    pairs.forEach((pair, index) =>
      context.onReading(pair.deviceId, (reading) => {
        const value = reading.values.find((v) => v.metric === pair.metric);
        if (value) chart.push(index, new Date(reading.timestamp).getTime() / 1000, value.value, { deviceId: pair.deviceId, metric: pair.metric, value: value.value, widget: widget.id });
      }),
    );
    context.cleanup(() => chart.destroy());
  },

  gauge(body, widget, context) {
    const deviceId = widget.devices[0];
    const metric = widget.metrics[0];
    const gauge = new Gauge({ title: `${context.name(deviceId)} ${metric}`, min: widget.options.min, max: widget.options.max });
    body.append(gauge.element, h('p', { class: 'hint' }, `${context.name(deviceId)} · ${metric}`));
    const latest = context.device(deviceId)?.latestReading?.values.find((v) => v.metric === metric);
    if (latest) gauge.set(latest.value, latest.unit);
    context.onReading(deviceId, (reading) => {
      const value = reading.values.find((v) => v.metric === metric);
      if (value) gauge.set(value.value, value.unit);
    });
  },

  table(body, widget, context) {
    const tbody = h('tbody');
    const wanted = new Set(widget.metrics);
    const limit = widget.options.limit;
    const row = (deviceId, reading) => {
      const values = reading.values.filter((v) => wanted.has(v.metric));
      if (!values.length) return null;
      return h(
        'tr',
        { dataset: { time: reading.timestamp } },
        h('td', {}, formatTime(reading.timestamp)),
        h('td', {}, context.name(deviceId)),
        h('td', {}, values.map((v) => h('span', { class: 'chip' }, `${v.metric} ${formatValue(v)}`))),
      );
    };
    body.append(table(['Time', 'Device', 'Values'], tbody, widget.title || 'Readings'));
    Promise.all(
      widget.devices.filter((d) => context.device(d)).map((deviceId) =>
        gql(READINGS, { deviceId, first: limit }).then((data) => data.readings.edges.map((edge) => [deviceId, edge.node])),
      ),
    ).then((lists) => {
      const merged = lists.flat().sort((a, b) => (a[1].timestamp < b[1].timestamp ? 1 : -1)).slice(0, limit);
      tbody.append(...merged.map(([deviceId, reading]) => row(deviceId, reading)).filter(Boolean));
    }, () => {});
    for (const deviceId of widget.devices) {
      context.onReading(deviceId, (reading) => {
        const element = row(deviceId, reading);
        if (!element) return;
        tbody.prepend(element);
        while (tbody.children.length > limit) tbody.lastChild.remove();
      });
    }
  },

  map(body, widget, context) {
    // No map tiles (the console works offline): the devices on a plain latitude and
    // longitude plane, framed to fit them.
    const placed = widget.devices.map((id) => ({ id, device: context.device(id) })).filter((d) => d.device && d.device.location);
    const unplaced = widget.devices.filter((id) => !placed.some((p) => p.id === id));
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 400 240');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', `Map of ${placed.length} devices`);
    svg.classList.add('map');
    const lats = placed.map((p) => p.device.location.latitude);
    const lons = placed.map((p) => p.device.location.longitude);
    const pad = 0.01;
    const [minLat, maxLat] = [Math.min(...lats) - pad, Math.max(...lats) + pad];
    const [minLon, maxLon] = [Math.min(...lons) - pad, Math.max(...lons) + pad];
    const labels = new Map();
    for (const { id, device } of placed) {
      const x = 20 + ((device.location.longitude - minLon) / (maxLon - minLon)) * 360;
      const y = 220 - ((device.location.latitude - minLat) / (maxLat - minLat)) * 200;
      const dot = document.createElementNS(ns, 'circle');
      dot.setAttribute('cx', x.toFixed(1));
      dot.setAttribute('cy', y.toFixed(1));
      dot.setAttribute('r', '6');
      dot.setAttribute('class', `map-dot status-${device.status.toLowerCase()}`);
      const label = document.createElementNS(ns, 'text');
      label.setAttribute('x', (x + 9).toFixed(1));
      label.setAttribute('y', (y + 4).toFixed(1));
      label.textContent = device.name;
      svg.append(dot, label);
      labels.set(id, label);
    }
    if (placed.length) body.append(svg);
    else body.append(h('p', { class: 'hint' }, 'None of these devices has a location yet: set one in its page’s Details.'));
    const latest = (device) =>
      (device.latestReading?.values || []).filter((v) => !widget.metrics || widget.metrics.includes(v.metric)).map(formatValue).join(', ');
    for (const { id, device } of placed) {
      if (widget.metrics && widget.metrics.length) labels.get(id).textContent = `${device.name} ${latest(device)}`;
      context.onReading(id, (reading) => {
        if (!widget.metrics || !widget.metrics.length) return;
        const values = reading.values.filter((v) => widget.metrics.includes(v.metric)).map(formatValue).join(', ');
        if (values) labels.get(id).textContent = `${device.name} ${values}`;
      });
    }
    if (unplaced.length) body.append(h('p', { class: 'hint' }, `Without a location: ${unplaced.map(context.name).join(', ')}.`));
  },
};

// The first place, row by row, where a w × h widget overlaps none of the others.
function freePlace(config, w, h) {
  const overlaps = (x, y) =>
    config.widgets.some(({ position: p }) => x < p.x + p.w && p.x < x + w && y < p.y + p.h && p.y < y + h);
  for (let y = 0; ; y += 1) {
    for (let x = 0; x + w <= config.layout.columns; x += 1) {
      if (!overlaps(x, y)) return { x, y, w, h };
    }
  }
}

// The editor: the name, the widgets (remove, move), a new widget, the JSON; Save.
function buildEditor(dashboard, devices, { changed, save, remove }) {
  const messages = messageArea();
  const config = dashboard.config;
  const name = h('input', { type: 'text', name: 'dashboard-name', value: dashboard.name, required: true });
  const widgetList = h('ol', { class: 'widget-list' });
  const jsonText = h('textarea', { name: 'config', rows: '10', spellcheck: false });

  function refresh() {
    widgetList.replaceChildren(
      ...config.widgets.map((widget, index) =>
        h(
          'li',
          {},
          `${KINDS[widget.kind] || widget.kind}: ${widget.title || widget.metrics?.join(', ') || widget.id} `,
          button('Up', () => move(index, -1), { disabled: index === 0, 'aria-label': `Move ${widget.id} up` }),
          button('Remove', () => {
            config.widgets.splice(index, 1);
            refresh();
            changed();
          }, { class: 'danger', 'aria-label': `Remove ${widget.id}` }),
        ),
      ),
    );
    if (!config.widgets.length) widgetList.append(h('li', {}, 'No widgets.'));
    jsonText.value = JSON.stringify(config, null, 2);
  }

  function move(index, by) {
    const [widget] = config.widgets.splice(index, 1);
    config.widgets.splice(index + by, 0, widget);
    // The two trade places on the grid (each keeps its size, within the columns).
    const [a, b] = [widget.position, config.widgets[index].position];
    [a.x, a.y, b.x, b.y] = [b.x, b.y, a.x, a.y];
    a.x = Math.min(a.x, config.layout.columns - a.w);
    b.x = Math.min(b.x, config.layout.columns - b.w);
    refresh();
    changed();
  }

  // A new widget.
  const kind = h('select', { name: 'kind' }, Object.entries(KINDS).map(([value, text]) => h('option', { value }, text)));
  const title = h('input', { type: 'text', name: 'title', maxlength: '100' });
  const deviceBoxes = h(
    'fieldset',
    { class: 'device-boxes' },
    h('legend', {}, 'Devices'),
    [...devices.values()].map((device) =>
      h('label', {}, h('input', { type: 'checkbox', name: 'devices', value: device.id }), ` ${device.name}`),
    ),
  );
  const allMetrics = [...new Set([...devices.values()].flatMap((d) => d.metrics))];
  const metrics = h('input', { type: 'text', name: 'metrics', value: allMetrics[0] || '', list: 'dashboard-metrics' });
  const metricList = h('datalist', { id: 'dashboard-metrics' }, allMetrics.map((m) => h('option', { value: m })));
  const width = h('input', { type: 'number', name: 'w', min: '1', max: String(config.layout.columns), value: '6' });
  const height = h('input', { type: 'number', name: 'h', min: '1', max: '20', value: '4' });
  const range = h('select', { name: 'range' }, Object.keys(RANGE_SECONDS).map((r) => h('option', { value: r }, r)));
  const bucket = h('select', { name: 'bucket' }, ['10s', '1m', '15m', '1h', '1d'].map((b) => h('option', { value: b }, b)));
  const min = h('input', { type: 'number', name: 'min', step: 'any', value: '0' });
  const max = h('input', { type: 'number', name: 'max', step: 'any', value: '100' });
  const limit = h('input', { type: 'number', name: 'limit', min: '1', max: '100', value: '10' });
  const options = {
    line_chart: h('div', { class: 'options' }, field('Range', range), field('Bucket', bucket)),
    gauge: h('div', { class: 'options', hidden: true }, field('Minimum', min), field('Maximum', max)),
    table: h('div', { class: 'options', hidden: true }, field('Rows', limit)),
    map: h('div', { class: 'options', hidden: true }),
  };
  kind.addEventListener('change', () => {
    for (const [key, element] of Object.entries(options)) element.hidden = key !== kind.value;
  });
  const add = h(
    'form',
    { class: 'add-widget', 'aria-label': 'Add a widget' },
    h('h3', {}, 'Add a widget'),
    h('div', { class: 'inline-form' }, field('Kind', kind), field('Title', title), field('Metrics', metrics, 'Separated by commas.'), metricList, field('Width (columns)', width), field('Height (rows)', height)),
    deviceBoxes,
    Object.values(options),
    h('button', { type: 'submit' }, 'Add widget'),
  );
  add.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = [...deviceBoxes.querySelectorAll('input:checked')].map((box) => box.value);
    const w = Math.min(Number(width.value) || 6, config.layout.columns);
    const widget = {
      id: `w${Date.now().toString(36)}${config.widgets.length}`,
      kind: kind.value,
      devices: chosen,
      position: freePlace(config, w, Number(height.value) || 4),
    };
    if (title.value.trim()) widget.title = title.value.trim();
    const names = metrics.value.split(',').map((m) => m.trim()).filter(Boolean);
    if (kind.value !== 'map' || names.length) widget.metrics = names;
    if (kind.value === 'line_chart') widget.options = { range: range.value, bucket: bucket.value };
    if (kind.value === 'gauge') widget.options = { min: Number(min.value), max: Number(max.value) };
    if (kind.value === 'table') widget.options = { limit: Number(limit.value) };
    if (kind.value === 'map') widget.options = {};
    config.widgets.push(widget);
    refresh();
    changed();
    showInfo(messages, 'Widget added. Save to keep it.');
  });

  const applyJson = button('Apply JSON', () => {
    try {
      const parsed = JSON.parse(jsonText.value);
      config.layout = parsed.layout;
      config.widgets = parsed.widgets;
      refresh();
      changed();
      showInfo(messages, 'Applied. Save to keep it.');
    } catch {
      messages.replaceChildren(h('p', { class: 'error' }, 'The config is not valid JSON.'));
    }
  });
  const saveButton = button('Save dashboard', async () => {
    try {
      await save(name.value.trim());
      refresh();
      showInfo(messages, 'Saved.');
    } catch (error) {
      showError(messages, error);
    }
  }, { class: 'primary' });
  const deleteButton = button('Delete dashboard', async () => {
    if (!window.confirm(`Delete “${dashboard.name}”?`)) return;
    try {
      await remove();
    } catch (error) {
      showError(messages, error);
    }
  }, { class: 'danger' });
  refresh();
  return [
    h('h2', {}, 'Edit dashboard'),
    field('Name', name),
    h('h3', {}, 'Widgets'),
    widgetList,
    add,
    h('details', {}, h('summary', {}, 'The config as JSON (docs/dashboards.md)'), jsonText, applyJson),
    messages,
    h('div', { class: 'actions' }, saveButton, deleteButton),
  ];
}
