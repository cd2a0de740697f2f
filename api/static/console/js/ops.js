// Every GraphQL operation the console sends, in one place. Each is a complete document
// (no string building): tests/unit/api/test_console_operations.py validates every one
// against schema.graphql, so a schema change that breaks the console fails a test.

const AUTH = `accessToken refreshToken expiresIn user { id email role }`;

export const REGISTER = `mutation ConsoleRegister($input: RegisterInput!) {
  register(input: $input) { ${AUTH} }
}`;

export const LOGIN = `mutation ConsoleLogin($input: LoginInput!) {
  login(input: $input) { ${AUTH} }
}`;

export const REFRESH_TOKEN = `mutation ConsoleRefreshToken($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) { ${AUTH} }
}`;

export const LOGOUT = `mutation ConsoleLogout { logout }`;

const DEVICE_ROW = `id name type status lastSeen tags metrics
  latestReading { timestamp values { metric value unit } }`;

export const DEVICES = `query ConsoleDevices($first: Int, $after: String, $filter: DeviceFilter) {
  devices(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ${DEVICE_ROW} location { latitude longitude } } }
  }
}`;

export const CREATE_DEVICE = `mutation ConsoleCreateDevice($input: CreateDeviceInput!) {
  createDevice(input: $input) {
    device { ${DEVICE_ROW} }
    credentials { mqttUsername mqttPassword token }
  }
}`;

export const DEVICE = `query ConsoleDevice($id: ID!) {
  device(id: $id) {
    ${DEVICE_ROW} firmwareVersion createdAt attributes
    location { latitude longitude }
  }
}`;

export const UPDATE_DEVICE = `mutation ConsoleUpdateDevice($id: ID!, $input: UpdateDeviceInput!) {
  updateDevice(id: $id, input: $input) { id name type tags location { latitude longitude } }
}`;

export const DELETE_DEVICE = `mutation ConsoleDeleteDevice($id: ID!) { deleteDevice(id: $id) }`;

export const READINGS = `query ConsoleReadings($deviceId: ID!, $first: Int) {
  readings(deviceId: $deviceId, first: $first) {
    edges { node { timestamp anomaly values { metric value unit } } }
  }
}`;

export const AGGREGATE = `query ConsoleAggregate($deviceId: ID!, $metric: String!, $from: DateTime!, $to: DateTime!, $bucket: String!) {
  aggregate(deviceId: $deviceId, metric: $metric, from: $from, to: $to, bucket: $bucket) {
    start count min max avg
  }
}`;

export const READING_ADDED = `subscription ConsoleReadingAdded($deviceId: ID) {
  readingAdded(deviceId: $deviceId) { deviceId timestamp anomaly values { metric value unit } }
}`;

export const DEVICE_STATUS_CHANGED = `subscription ConsoleDeviceStatusChanged {
  deviceStatusChanged { id status lastSeen }
}`;

const RULE = `id deviceId kind metric min max hysteresis durationSeconds noDataSeconds severity enabled`;

export const ALERT_RULES = `query ConsoleAlertRules($deviceId: ID) {
  alertRules(deviceId: $deviceId) { ${RULE} }
}`;

export const CREATE_ALERT_RULE = `mutation ConsoleCreateAlertRule($input: CreateAlertRuleInput!) {
  createAlertRule(input: $input) { ${RULE} }
}`;

export const CREATE_NO_DATA_RULE = `mutation ConsoleCreateNoDataRule($input: CreateNoDataRuleInput!) {
  createNoDataRule(input: $input) { ${RULE} }
}`;

export const ENABLE_ALERT_RULE = `mutation ConsoleEnableAlertRule($id: ID!) {
  enableAlertRule(id: $id) { ${RULE} }
}`;

export const DISABLE_ALERT_RULE = `mutation ConsoleDisableAlertRule($id: ID!) {
  disableAlertRule(id: $id) { ${RULE} }
}`;

export const DELETE_ALERT_RULE = `mutation ConsoleDeleteAlertRule($id: ID!) { deleteAlertRule(id: $id) }`;

const ALERT = `id deviceId ruleId kind metric value message severity state raisedAt acknowledgedAt clearedAt`;

export const ALERTS = `query ConsoleAlerts($state: AlertState, $deviceId: ID, $first: Int, $after: String) {
  alerts(state: $state, deviceId: $deviceId, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ${ALERT} } }
  }
}`;

export const ACTIVE_ALERT_COUNT = `query ConsoleActiveAlertCount {
  alerts(state: ACTIVE, first: 1) { totalCount }
}`;

export const ACKNOWLEDGE_ALERT = `mutation ConsoleAcknowledgeAlert($id: ID!) {
  acknowledgeAlert(id: $id) { ${ALERT} }
}`;

export const CLEAR_ALERT = `mutation ConsoleClearAlert($id: ID!) {
  clearAlert(id: $id) { ${ALERT} }
}`;

export const ALERT_RAISED = `subscription ConsoleAlertRaised($deviceId: ID) {
  alertRaised(deviceId: $deviceId) { ${ALERT} }
}`;

export const ALERT_UPDATED = `subscription ConsoleAlertUpdated($deviceId: ID) {
  alertUpdated(deviceId: $deviceId) { ${ALERT} }
}`;

const TWIN = `desired reported delta version desiredUpdatedAt reportedUpdatedAt`;

export const DEVICE_TWIN = `query ConsoleDeviceTwin($id: ID!) {
  device(id: $id) { id twin { ${TWIN} } }
}`;

export const UPDATE_DESIRED_STATE = `mutation ConsoleUpdateDesiredState($deviceId: ID!, $patch: JSON!, $expectedVersion: Int) {
  updateDesiredState(deviceId: $deviceId, patch: $patch, expectedVersion: $expectedVersion) { ${TWIN} }
}`;

export const TWIN_CHANGED = `subscription ConsoleTwinChanged($deviceId: ID!) {
  twinChanged(deviceId: $deviceId) { ${TWIN} }
}`;

export const DEVICE_LOGS = `query ConsoleDeviceLogs($deviceId: ID!, $first: Int) {
  deviceLogs(deviceId: $deviceId, first: $first) {
    edges { node { timestamp level message } }
  }
}`;

export const DEVICE_LOG_ADDED = `subscription ConsoleDeviceLogAdded($deviceId: ID!) {
  deviceLogAdded(deviceId: $deviceId) { timestamp level message }
}`;

const DASHBOARD = `id name config createdAt updatedAt`;

export const DASHBOARDS = `query ConsoleDashboards { dashboards { ${DASHBOARD} } }`;

export const DASHBOARD_BY_ID = `query ConsoleDashboard($id: ID!) { dashboard(id: $id) { ${DASHBOARD} } }`;

export const CREATE_DASHBOARD = `mutation ConsoleCreateDashboard($input: CreateDashboardInput!) {
  createDashboard(input: $input) { ${DASHBOARD} }
}`;

export const UPDATE_DASHBOARD = `mutation ConsoleUpdateDashboard($id: ID!, $input: UpdateDashboardInput!) {
  updateDashboard(id: $id, input: $input) { ${DASHBOARD} }
}`;

export const DELETE_DASHBOARD = `mutation ConsoleDeleteDashboard($id: ID!) { deleteDashboard(id: $id) }`;

const FIRMWARE = `id version deviceType size sha256 filename createdAt`;

export const FIRMWARES = `query ConsoleFirmwares { firmwares { ${FIRMWARE} } }`;

export const UPLOAD_FIRMWARE = `mutation ConsoleUploadFirmware($input: UploadFirmwareInput!) {
  uploadFirmware(input: $input) { ${FIRMWARE} }
}`;

const ROLLOUT = `id state firmwareVersion deviceCount devicesPerMinute createdAt updatedAt
  devices { deviceId state progress error updatedAt }`;

export const START_FIRMWARE_UPDATE = `mutation ConsoleStartFirmwareUpdate($input: StartFirmwareUpdateInput!) {
  startFirmwareUpdate(input: $input) { ${ROLLOUT} }
}`;

export const FIRMWARE_UPDATE = `query ConsoleFirmwareUpdate($id: ID!) { firmwareUpdate(id: $id) { ${ROLLOUT} } }`;

export const CANCEL_FIRMWARE_UPDATE = `mutation ConsoleCancelFirmwareUpdate($id: ID!) {
  cancelFirmwareUpdate(id: $id) { ${ROLLOUT} }
}`;

export const FIRMWARE_UPDATE_PROGRESS = `subscription ConsoleFirmwareUpdateProgress($id: ID!) {
  firmwareUpdateProgress(id: $id) { deviceId state progress error updatedAt }
}`;
