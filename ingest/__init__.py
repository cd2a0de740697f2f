"""The MQTT ingest worker: parse -> validate -> batch -> store -> publish."""
