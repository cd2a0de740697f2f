"""The console's tab under a live fleet for long: 50 devices, 1 reading/s each.

Opt-in (SOAK=1; CONSOLE_SOAK_SECONDS, default 600): the fleet page for the first half
(every reading of every device updates its row), then a device page (its charts and
readings table take every reading of that device). The tab's memory, sampled after a
garbage collection every 10 s (Chrome's JSHeapUsedSize and the DOM's node count), must
stay under 150 MB and stop growing: the second half of each page's samples may not
exceed its first half by more than GROWTH_ALLOWED. Printed: every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

import aiomqtt
import pytest

from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import PASSWORD, CreatedDevice, create_device, register
from tests.system.browser.conftest import Driver

DEVICES = 50
SECONDS = int(os.environ.get("CONSOLE_SOAK_SECONDS", "600"))
SAMPLE_EVERY = 10
HEAP_LIMIT = 150 * 1024 * 1024
GROWTH_ALLOWED = 5 * 1024 * 1024

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="soak: SOAK=1 to run"),
]


async def publish_forever(broker: ManagedBroker, devices: list[CreatedDevice]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                aiomqtt.Client(
                    broker.host,
                    broker.port,
                    username=d.mqtt_username,
                    password=d.mqtt_password,
                    identifier=d.id,
                )
            )
            for d in devices
        ]
        tick = 0
        while True:
            started = time.monotonic()
            await asyncio.gather(
                *(
                    client.publish(
                        f"devices/{device.id}/telemetry",
                        json.dumps({"temperature": 20 + (tick + n) % 10, "humidity": 40 + n % 7}),
                        qos=1,
                    )
                    for n, (client, device) in enumerate(zip(clients, devices, strict=True))
                )
            )
            tick += 1
            await asyncio.sleep(max(0.0, 1 - (time.monotonic() - started)))


async def sample(page: Driver, seconds: float, label: str) -> list[float]:
    heaps = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(SAMPLE_EVERY)
        metrics = (await page("metrics"))["metrics"]
        heaps.append(metrics["JSHeapUsedSize"])
        print(
            f"{label} t={len(heaps) * SAMPLE_EVERY:4d}s heap={metrics['JSHeapUsedSize'] / 2**20:.1f} MiB "
            f"(total {metrics['JSHeapTotalSize'] / 2**20:.1f}) nodes={int(metrics['Nodes'])}",
            flush=True,
        )
    return heaps


def assert_flat(heaps: list[float], label: str) -> None:
    assert max(heaps) < HEAP_LIMIT, (label, heaps)
    half = len(heaps) // 2
    assert max(heaps[half:]) <= max(heaps[:half]) + GROWTH_ALLOWED, (label, heaps)


async def test_console_tab_memory_under_a_live_fleet(
    console_browser: Driver,
    api: Api,
    api_server: str,
    browser_worker: IngestWorker,
    managed_broker: ManagedBroker,
) -> None:
    owner = await register(api, "soak@example.com")
    devices = [
        await create_device(api, owner, name=f"sensor {n:02d}", type="sensor")
        for n in range(DEVICES)
    ]
    page = console_browser
    await page("open", url=f"{api_server}/console/")
    await page("fill", label="E-mail", value=owner.email)
    await page("fill", label="Password", value=PASSWORD)
    await page("click", role="button", name="Sign in")
    await page("wait", selector=".count", text=f"{DEVICES} devices")
    publisher = asyncio.create_task(publish_forever(managed_broker, devices))
    try:
        fleet = await sample(page, SECONDS / 2, "fleet")
        await page("click", role="link", name="sensor 00")
        await page("wait", selector="figure[data-metric=temperature]")
        device = await sample(page, SECONDS / 2, "device")
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
    points = await page(
        "eval",
        expression="document.querySelector('figure[data-metric=temperature]').dataset.points",
    )
    print(f"device chart points at the end: {points['value']}")
    assert_flat(fleet, "fleet")
    assert_flat(device, "device")
