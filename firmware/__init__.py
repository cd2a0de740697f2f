"""Firmware and OTA: images in GridFS, signing, rollouts, the dispatcher, downloads.

- images.py, storage.py, signing.py: upload (streamed, hashed, signed), list, delete;
- rollouts.py, progress.py: rollouts and each device's state (the business rules);
- dispatcher.py, publisher.py, runtime.py: what every API process runs (offers,
  timeouts, clearing retained offers);
- download.py, upload_guard.py: the HTTP edges (image download, multipart guard);
- device.py: the device side, as the simulator runs it.
See docs/ota.md.
"""
