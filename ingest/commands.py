"""Command results (devices/{id}/commands/{commandId}/result): validate, store, publish.

An answer is dropped and counted (never stored) when it is malformed
(`bad_command_result`, `too_large`), names no command (`command_unknown`), names
another device's command (`command_wrong_device`: the broker already makes the topic
the sender's own, so a device cannot even publish there; this is the second check), or
its command is not SENT (`command_not_sent`: answered already, expired, cancelled). A
stored answer is acknowledged once written and its live event queued; while MongoDB is
away the answer waits, holding back the stream as storage does.
"""

from __future__ import annotations

from datetime import datetime

from ingest.devices import DeviceInfo
from ingest.ota import patiently
from ingest.payloads import Reason, Rejected, parse_command_result
from ingest.source import Delivery
from live.publisher import LivePublisher
from services.command_queue import DeviceAnswer, ResultRejected, apply_result, command_event

_REASONS: dict[str, Reason] = {
    "unknown": "command_unknown",
    "wrong_device": "command_wrong_device",
    "not_sent": "command_not_sent",
}


class CommandResultHandler:
    """Handles one answer at a time for the worker; drops raise Rejected (the worker counts)."""

    def __init__(self, live: LivePublisher) -> None:
        self.live = live

    async def handle(self, delivery: Delivery, device: DeviceInfo, arrived: datetime) -> None:
        """Apply one answer from `device`, then acknowledge it."""
        parsed = parse_command_result(delivery.topic, delivery.payload)
        answer = DeviceAnswer(ok=parsed.ok, result_json=parsed.result_json, error=parsed.error)
        try:
            command = await patiently(
                lambda: apply_result(device.device_id, parsed.command_id, answer, arrived)
            )
        except ResultRejected as rejected:
            raise Rejected(_REASONS[rejected.reason]) from rejected
        event = command_event(command)
        self.live.publish("commands", event.device_id, event.owner_id, event.encode())
        delivery.ack()
