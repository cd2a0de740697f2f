"""A simulated device fleet for development and tests: `python -m simulator`.

Not part of the platform: it drives the platform from outside, as real devices do,
through the API (GraphQL) and the broker (each device's own MQTT identity).

- `fleet`: the devices, their telemetry, status and Last Will, the command line;
- `ota`: a device's side of a firmware update (download, verify, install, report);
- `twin`: a device's side of its twin (apply desired `interval`, report what it runs).
"""
