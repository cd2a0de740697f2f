// Firmware (ADMIN): images, upload one, start a rollout, its devices' progress live.
// The API has no list of rollouts: the ones started here are remembered in this
// browser (localStorage, ids only), and any rollout opens by its id.
import { auth, gql, upload } from '../api.js';
import { showError, showInfo } from '../errors.js';
import { live } from '../live.js';
import { CANCEL_FIRMWARE_UPDATE, DEVICES, FIRMWARE_UPDATE, FIRMWARE_UPDATE_PROGRESS, FIRMWARES, START_FIRMWARE_UPDATE, UPLOAD_FIRMWARE } from '../ops.js';
import { button, field, formatTime, h, messageArea, table } from '../ui.js';

const ROLLOUTS_KEY = 'iotplatform.console.rollouts';

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(ROLLOUTS_KEY)) || [];
  } catch {
    return [];
  }
}

function remember(id) {
  const ids = [id, ...remembered().filter((other) => other !== id)].slice(0, 20);
  localStorage.setItem(ROLLOUTS_KEY, JSON.stringify(ids));
}

export function render(main) {
  const messages = messageArea();
  main.append(h('h1', {}, 'Firmware'), messages);
  if (!auth.isAdmin) {
    messages.replaceChildren(h('p', { class: 'error', dataset: { code: 'FORBIDDEN' } }, 'Firmware is for administrators: your account is not one. (FORBIDDEN)'));
    return null;
  }
  const stops = [];
  const images = h('tbody');
  const firmwareChoice = h('select', { name: 'firmware', required: true });
  const progress = h('div', { class: 'rollout' });
  const devices = h('fieldset', { class: 'device-boxes' }, h('legend', {}, 'Devices of the image’s type'));
  let fleet = [];
  let firmwares = [];

  async function loadImages() {
    const data = await gql(FIRMWARES);
    firmwares = data.firmwares;
    images.replaceChildren(
      ...firmwares.map((f) =>
        h('tr', {}, h('td', {}, f.version), h('td', {}, f.deviceType), h('td', {}, `${(f.size / 1024).toFixed(1)} KiB`), h('td', {}, h('code', {}, f.sha256.slice(0, 16) + '…')), h('td', {}, formatTime(f.createdAt))),
      ),
    );
    if (!firmwares.length) images.append(h('tr', {}, h('td', { colspan: '5' }, 'No images yet.')));
    firmwareChoice.replaceChildren(...firmwares.map((f) => h('option', { value: f.id }, `${f.version} (${f.deviceType})`)));
    showDevices();
  }

  function showDevices() {
    const chosen = firmwares.find((f) => f.id === firmwareChoice.value);
    const eligible = fleet.filter((d) => chosen && d.type === chosen.deviceType);
    devices.replaceChildren(
      h('legend', {}, 'Devices of the image’s type'),
      ...eligible.map((d) => h('label', {}, h('input', { type: 'checkbox', name: 'rollout-device', value: d.id, checked: true }), ` ${d.name}`)),
      ...(eligible.length ? [] : [h('p', { class: 'hint' }, 'No device of this type.')]),
    );
  }
  firmwareChoice.addEventListener('change', showDevices);

  // Upload.
  const file = h('input', { type: 'file', name: 'file', required: true });
  const version = h('input', { type: 'text', name: 'version', required: true, placeholder: '1.2.0' });
  const deviceType = h('input', { type: 'text', name: 'deviceType', required: true, value: 'sensor' });
  const uploadForm = h('form', { class: 'inline-form', 'aria-label': 'Upload an image' }, field('Image file', file), field('Version', version), field('Device type', deviceType), h('button', { type: 'submit' }, 'Upload'));
  uploadForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await upload(UPLOAD_FIRMWARE, { input: { file: null, version: version.value.trim(), deviceType: deviceType.value.trim() } }, 'variables.input.file', file.files[0]);
      uploadForm.reset();
      showInfo(messages, 'Image stored and signed.');
      await loadImages();
    } catch (error) {
      showError(messages, error);
    }
  });

  // Start a rollout.
  const pace = h('input', { type: 'number', name: 'devicesPerMinute', min: '1', value: '10' });
  const startForm = h('form', { 'aria-label': 'Start a rollout' }, h('div', { class: 'inline-form' }, field('Image', firmwareChoice), field('Devices per minute', pace)), devices, h('button', { type: 'submit', class: 'primary' }, 'Start rollout'));
  startForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const deviceIds = [...devices.querySelectorAll('input:checked')].map((box) => box.value);
    try {
      const data = await gql(START_FIRMWARE_UPDATE, { input: { firmwareId: firmwareChoice.value, deviceIds, devicesPerMinute: Number(pace.value) } });
      remember(data.startFirmwareUpdate.id);
      watch(data.startFirmwareUpdate.id);
    } catch (error) {
      showError(messages, error);
    }
  });

  // One rollout: its devices, then every change live.
  const openId = h('input', { type: 'text', name: 'rollout-id' });
  const openForm = h('form', { class: 'inline-form', 'aria-label': 'Open a rollout' }, field('Rollout id', openId), h('button', { type: 'submit' }, 'Show'));
  openForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (openId.value.trim()) watch(openId.value.trim());
  });
  const recent = h('ul', { class: 'recent-rollouts' });
  function showRecent() {
    recent.replaceChildren(...remembered().map((id) => h('li', {}, button(`Rollout ${id}`, () => watch(id), { class: 'link' }))));
  }

  let stopProgress = () => {};
  async function watch(id) {
    stopProgress();
    showRecent();
    let rollout;
    try {
      rollout = (await gql(FIRMWARE_UPDATE, { id })).firmwareUpdate;
    } catch (error) {
      showError(messages, error);
      return;
    }
    const names = new Map(fleet.map((d) => [d.id, d.name]));
    const rows = new Map();
    const tbody = h('tbody');
    const summary = h('p', { 'aria-live': 'polite' });
    const counts = () => {
      const states = {};
      for (const row of rows.values()) states[row.dataset.state] = (states[row.dataset.state] || 0) + 1;
      summary.textContent = `${rollout.firmwareVersion}: ${rollout.state.toLowerCase()}, ${rollout.deviceCount} devices, ${rollout.devicesPerMinute}/min. ` + Object.entries(states).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(', ');
    };
    const show = (d) => {
      const row = h(
        'tr',
        { dataset: { state: d.state } },
        h('td', {}, names.get(d.deviceId) || d.deviceId),
        h('td', {}, d.state.toLowerCase()),
        h('td', {}, h('progress', { max: '100', value: String(d.progress), 'aria-label': `${names.get(d.deviceId) || d.deviceId} progress` }), ` ${d.progress}%`),
        h('td', {}, d.error || ''),
      );
      const existing = rows.get(d.deviceId);
      if (existing) existing.replaceWith(row);
      else tbody.append(row);
      rows.set(d.deviceId, row);
      counts();
    };
    rollout.devices.forEach(show);
    const cancel = button('Cancel rollout', async () => {
      try {
        rollout = (await gql(CANCEL_FIRMWARE_UPDATE, { id })).cancelFirmwareUpdate;
        rollout.devices.forEach(show);
      } catch (error) {
        showError(messages, error);
      }
    }, { class: 'danger' });
    progress.replaceChildren(h('h3', {}, `Rollout ${id}`), summary, table(['Device', 'State', 'Progress', 'Error'], tbody, 'Rollout devices'), cancel);
    stopProgress = live.subscribe(FIRMWARE_UPDATE_PROGRESS, { id }, ({ firmwareUpdateProgress }) => show(firmwareUpdateProgress), (error) => showError(messages, error));
  }
  stops.push(() => stopProgress());

  main.append(
    h('section', { class: 'card', 'aria-labelledby': 'images-heading' }, h('h2', { id: 'images-heading' }, 'Images'), table(['Version', 'Device type', 'Size', 'SHA-256', 'Stored'], images, 'Firmware images'), uploadForm),
    h('section', { class: 'card', 'aria-labelledby': 'rollout-heading' }, h('h2', { id: 'rollout-heading' }, 'Rollouts'), startForm, openForm, recent, progress),
  );
  showRecent();
  gql(DEVICES, { first: 200 })
    .then((data) => {
      fleet = data.devices.edges.map((edge) => edge.node);
    })
    .catch(() => {})
    .finally(() => loadImages().catch((error) => showError(messages, error)));
  return () => stops.forEach((stop) => stop());
}
