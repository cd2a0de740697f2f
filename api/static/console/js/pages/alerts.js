// Alerts: filters (state, device), acknowledge and clear, new ones arriving live.
import { gql } from '../api.js';
import { showError } from '../errors.js';
import { live } from '../live.js';
import { ACKNOWLEDGE_ALERT, ALERT_RAISED, ALERT_UPDATED, ALERTS, CLEAR_ALERT, DEVICES } from '../ops.js';
import { agoElement, button, field, formatNumber, h, messageArea, startClock, table } from '../ui.js';

const PAGE_SIZE = 50;

export function render(main) {
  const messages = messageArea();
  const tbody = h('tbody');
  const rows = new Map();
  const names = new Map();
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const arrivals = h('p', { class: 'sr-only', 'aria-live': 'polite' });
  const more = button('Load more', () => load(true), { hidden: true });
  let cursor = null;
  let total = 0;

  const state = h(
    'select',
    { name: 'state' },
    h('option', { value: 'ACTIVE' }, 'Active'),
    h('option', { value: 'ACKNOWLEDGED' }, 'Acknowledged'),
    h('option', { value: 'CLEARED' }, 'Cleared'),
    h('option', { value: '' }, 'All'),
  );
  const device = h('select', { name: 'device' }, h('option', { value: '' }, 'All devices'));
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter alerts' }, field('State', state), field('Device', device));
  filters.addEventListener('change', () => load(false));
  filters.addEventListener('submit', (event) => event.preventDefault());

  function matches(alert) {
    return (!state.value || alert.state === state.value) && (!device.value || alert.deviceId === device.value);
  }

  async function act(operation, id) {
    try {
      const data = await gql(operation, { id });
      update(data.acknowledgeAlert || data.clearAlert);
    } catch (error) {
      showError(messages, error);
    }
  }

  function row(alert) {
    const actions = h('td', { class: 'row-actions' });
    if (alert.state === 'ACTIVE') actions.append(button('Acknowledge', () => act(ACKNOWLEDGE_ALERT, alert.id), { 'aria-label': `Acknowledge: ${alert.message}` }));
    if (alert.state !== 'CLEARED') actions.append(button('Clear', () => act(CLEAR_ALERT, alert.id), { 'aria-label': `Clear: ${alert.message}` }));
    const element = h(
      'tr',
      { dataset: { alertId: alert.id, state: alert.state }, class: `severity-${alert.severity.toLowerCase()}` },
      h('td', {}, h('span', { class: `severity severity-${alert.severity.toLowerCase()}` }, alert.severity.toLowerCase())),
      h('td', {}, h('a', { href: `#/devices/${alert.deviceId}` }, names.get(alert.deviceId) || alert.deviceId)),
      h('td', {}, alert.message),
      h('td', {}, alert.metric ? `${alert.metric} ${formatNumber(alert.value)}` : '–'),
      h('td', {}, agoElement(alert.raisedAt)),
      h('td', { class: 'state' }, alert.state.toLowerCase()),
      actions,
    );
    rows.set(alert.id, element);
    return element;
  }

  function update(alert) {
    const existing = rows.get(alert.id);
    if (!existing) {
      // Now one of the list's (say, acknowledged while the list shows acknowledged ones).
      if (matches(alert)) {
        tbody.prepend(row(alert));
        setTotal(total + 1);
      }
      return;
    }
    if (matches(alert)) existing.replaceWith(row(alert));
    else {
      existing.remove();
      rows.delete(alert.id);
      setTotal(total - 1);
    }
  }

  function setTotal(value) {
    total = Math.max(0, value);
    count.textContent = `${total} alert${total === 1 ? '' : 's'}`;
  }

  async function load(append) {
    if (!append) cursor = null;
    try {
      const data = await gql(ALERTS, { state: state.value || null, deviceId: device.value || null, first: PAGE_SIZE, after: cursor });
      if (!append) {
        rows.clear();
        tbody.replaceChildren();
      }
      tbody.append(...data.alerts.edges.map((edge) => row(edge.node)));
      cursor = data.alerts.pageInfo.endCursor;
      more.hidden = !data.alerts.pageInfo.hasNextPage;
      setTotal(data.alerts.totalCount);
      messages.replaceChildren();
    } catch (error) {
      showError(messages, error);
    }
  }

  const stops = [
    live.subscribe(ALERT_RAISED, { deviceId: null }, ({ alertRaised: alert }) => {
      if (!matches(alert) || rows.has(alert.id)) return;
      const element = row(alert);
      element.classList.add('arrived');
      tbody.prepend(element);
      setTotal(total + 1);
      arrivals.textContent = `New alert: ${alert.message}`;
    }),
    live.subscribe(ALERT_UPDATED, { deviceId: null }, ({ alertUpdated }) => update(alertUpdated)),
  ];

  main.append(
    h(
      'section',
      { 'aria-labelledby': 'alerts-heading' },
      h('h1', { id: 'alerts-heading' }, 'Alerts'),
      filters,
      messages,
      count,
      arrivals,
      table(['Severity', 'Device', 'Message', 'Value', 'Raised', 'State', 'Actions'], tbody, 'Alerts'),
      more,
    ),
  );
  // Device names for the filter and the rows (the first 200 devices), then the alerts.
  gql(DEVICES, { first: 200 })
    .then((data) => {
      for (const { node } of data.devices.edges) {
        names.set(node.id, node.name);
        device.append(h('option', { value: node.id }, node.name));
      }
    })
    .catch(() => {})
    .finally(() => load(false));
  const stopClock = startClock(main);
  return () => {
    stops.forEach((stop) => stop());
    stopClock();
  };
}
