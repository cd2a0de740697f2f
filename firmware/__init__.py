"""Firmware and OTA: storage (GridFS), signing, rollouts and the download endpoint.

Empty until the firmware issue lands; the package exists so the layout, the
packaging and the type check already know it.
"""
