"""Fan-out benchmark: `python -m bench.fanout [--quick]` (README, Performance, Fan-out).

1,000 graphql-transport-ws subscribers (one WebSocket each) spread over 2 API
processes: two per device watching that device, one per user watching all of
its devices, and a few ADMINs watching every device. Live events are injected
straight into Redis, in the worker's format and on the worker's three channels
(core.events; the worker's own publish pipe, live.resp), so this measures the
APIs' fan-out alone. Each event's timestamp is its publish time: the subscribers
record publish -> receive latency.

Measured for the shared listener (one Redis subscription per channel per process,
each event's selection executed once per process and shared by its subscribers) and
the naive baseline (`python -m bench.baseline_api --per-subscriber-bus`: one Redis
subscription per GraphQL subscription, strawberry's execution per subscriber), on
the same machine in the same run (--modes adds the API without one of live.compat's
overrides, without-NAME): deliveries/s and latency at rising offered rates (5 s each, 2,500 to
40,000/s, 5,000/s among them) until the APIs saturate, API CPU per delivery, API
RSS per idle subscription, and what the subscriber processes
(bench/fanout_client.py) cost. The APIs run with a large
SUBSCRIPTION_BUFFER so that falling behind shows as latency, not as closed
subscribers. Prints tables, writes bench/results/fanout.json (--quick:
fanout-quick.json, 100 subscribers, 1 s steps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from beanie import PydanticObjectId

from bench.apis import (
    ApiProcess,
    access_token,
    api_processes,
    bench_settings,
    load_average,
    metric,
    new_user,
    private_redis,
    rss_kib,
)
from bench.fanout_report import LATENCY_RATE, report
from bench.harness import ROOT, Stack, cpu_seconds, stack, write_results
from core.database import open_database
from core.events import ReadingEvent, channels_for
from live.resp import PublishPipe
from models.accounts import User
from models.devices import Device

DEVICES_PER_USER = 5
SUBSCRIBERS_PER_DEVICE = 2
BUFFER = 100_000  # SUBSCRIPTION_BUFFER of the APIs under test
TICK_SECONDS = 0.002


@dataclass
class Plan:
    """Who subscribes to what, and how many deliveries each event makes."""

    devices: list[tuple[str, str]]  # (device id, owner id), in injection order
    # (API index, token, device id or None for "every device I may see")
    subscriptions: list[tuple[int, str, str | None]]
    per_event: int
    counts: dict[str, int] = field(default_factory=dict)


async def seed(stack: Stack, subscribers: int, apis: int) -> Plan:
    """Users, devices and tokens written directly; the subscription plan."""
    settings = bench_settings(stack)
    users_count = max(1, subscribers * 9 // 100)
    device_subs = users_count * DEVICES_PER_USER * SUBSCRIBERS_PER_DEVICE
    admin_subs = subscribers - users_count - device_subs
    if admin_subs < 1:
        raise ValueError("too few subscribers for the plan")
    async with open_database(settings):  # documents are built once Beanie is bound
        admin = new_user("bench-admin@example.com", admin=True)
        users = [new_user(f"fan{i}@example.com") for i in range(users_count)]
        devices = [
            Device(
                id=PydanticObjectId(),
                owner_id=user.id,
                name=f"fan-{n}",
                type="bench",
                mqtt_username=f"fan-{user.id}-{n}",
                mqtt_password_hash="-",  # noqa: S106 - never logs in: events are injected
            )
            for user in users
            for n in range(DEVICES_PER_USER)
        ]
        await admin.insert()
        for start in range(0, len(users), 100):
            await User.insert_many(users[start : start + 100])
        for start in range(0, len(devices), 100):
            await Device.insert_many(devices[start : start + 100])
    tokens = {str(user.id): access_token(settings, user.id) for user in [admin, *users]}  # type: ignore[arg-type]
    wanted: list[tuple[str, str | None]] = []
    for device in devices:
        wanted += [(tokens[str(device.owner_id)], str(device.id))] * SUBSCRIBERS_PER_DEVICE
    wanted += [(tokens[str(user.id)], None) for user in users]
    wanted += [(tokens[str(admin.id)], None)] * admin_subs
    random.Random(7).shuffle(wanted)  # every API and client process gets a mix
    return Plan(
        devices=[(str(d.id), str(d.owner_id)) for d in devices],
        subscriptions=[(i % apis, token, device) for i, (token, device) in enumerate(wanted)],
        per_event=SUBSCRIBERS_PER_DEVICE + 1 + admin_subs,
        counts={
            "users": users_count,
            "devices": len(devices),
            "device_subscriptions": device_subs,
            "owner_subscriptions": users_count,
            "admin_subscriptions": admin_subs,
        },
    )


class ClientProcess:
    """One bench.fanout_client process, spoken to in JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> ClientProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fanout_client",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 27,  # latency lists come back as one line
        )
        return cls(process)

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("a subscriber process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def quit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b'{"cmd": "quit"}\n')
        await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def percentile(ordered: Sequence[int], q: float) -> float:
    """The q-quantile of sorted microseconds, in milliseconds."""
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000, 2)


class Run:
    """One mode's APIs, subscribers and injector."""

    def __init__(
        self, plan: Plan, redis_url: str, apis: list[ApiProcess], clients: list[ClientProcess]
    ) -> None:
        self.plan = plan
        self.redis_url = redis_url
        self.apis = apis
        self.clients = clients
        self.injected = 0

    async def received(self) -> tuple[int, int]:
        stats = await asyncio.gather(*(c.ask({"cmd": "stats"}) for c in self.clients))
        return sum(s["received"] for s in stats), sum(s["closed"] for s in stats)

    async def inject(self, events: int, per_second: float) -> float:
        """Publish `events` events at `per_second`, as the worker does; the achieved rate."""
        devices = self.plan.devices
        async with PublishPipe(self.redis_url) as pipe:
            started = time.perf_counter()
            sent = 0
            while sent < events:
                due = min(events, int((time.perf_counter() - started) * per_second) + 1)
                if due > sent:
                    now = datetime.now(UTC)
                    messages: list[tuple[str, bytes]] = []
                    for number in range(self.injected + sent, self.injected + due):
                        device, owner = devices[number % len(devices)]
                        payload = ReadingEvent(
                            device, owner, now, False, (("v", float(number), None),)
                        ).encode()
                        messages += [(c, payload) for c in channels_for("readings", device, owner)]
                    pipe.publish_many(messages)
                    await pipe.drain()
                    sent = due
                await asyncio.sleep(TICK_SECONDS)
            elapsed = time.perf_counter() - started
        self.injected += events
        return events / elapsed

    async def step(self, deliveries_per_second: float, seconds: float) -> dict[str, Any]:
        """Offer a rate for `seconds`; wait for the deliveries; what arrived, how fast."""
        events = max(1, round(deliveries_per_second / self.plan.per_event * seconds))
        expected = events * self.plan.per_event
        before, closed_before = await self.received()
        await asyncio.gather(*(c.ask({"cmd": "latencies"}) for c in self.clients))  # reset
        cpu = self._cpu()
        started = time.time()
        achieved_events = await self.inject(events, deliveries_per_second / self.plan.per_event)
        # Wait for the deliveries while they keep coming.
        last_progress, count = time.monotonic(), before
        while count < before + expected and time.monotonic() - last_progress < 3.0:
            await asyncio.sleep(0.1)
            now_count, _ = await self.received()
            if now_count > count:
                count, last_progress = now_count, time.monotonic()
        used = {name: after - cpu[name] for name, after in self._cpu().items()}
        windows = await asyncio.gather(*(c.ask({"cmd": "latencies"}) for c in self.clients))
        _, closed = await self.received()
        latencies = sorted(v for w in windows for v in w["latencies_us"])
        received = sum(w["received"] for w in windows)
        last = max((w["last"] for w in windows if w["received"]), default=started)
        achieved = received / max(last - started, 1e-6)
        result = {
            "offered_deliveries_per_s": round(deliveries_per_second),
            "injected_events_per_s": round(achieved_events, 1),
            "events": events,
            "expected": expected,
            "received": received,
            "lost": expected - received,
            "closed_subscribers": closed - closed_before,
            "achieved_deliveries_per_s": round(achieved),
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "p999_ms": percentile(latencies, 0.999),
            "max_ms": round(latencies[-1] / 1000, 2) if latencies else None,
            "api_cpu_us_per_delivery": round(used["apis"] / max(received, 1) * 1e6, 1),
            "client_cpu_us_per_delivery": round(used["clients"] / max(received, 1) * 1e6, 1),
            "api_cpu_share": round(used["apis"] / max(last - started, 1e-6), 2),
            "client_cpu_share": round(used["clients"] / max(last - started, 1e-6), 2),
            "load_average": load_average(),
        }
        # Sustained: everything delivered, at (nearly) the offered rate.
        result["ok"] = (
            result["lost"] == 0
            and result["closed_subscribers"] == 0
            and achieved >= 0.95 * deliveries_per_second
        )
        return result

    def _cpu(self) -> dict[str, float]:
        return {
            "apis": sum(cpu_seconds(api.pid) for api in self.apis),
            "clients": sum(cpu_seconds(c.process.pid) for c in self.clients),
        }


async def wait_subscribed(
    apis: list[ApiProcess], clients: list[ClientProcess], expected: int
) -> None:
    """Until the APIs count every subscription active; fail on the first refused one."""
    deadline = time.monotonic() + 180
    active = 0.0
    while active < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{active:.0f} of {expected} subscriptions active")
        await asyncio.sleep(0.25)
        for stats in await asyncio.gather(*(c.ask({"cmd": "stats"}) for c in clients)):
            if stats["error_count"] or stats["closed"]:
                raise RuntimeError(f"subscriptions failed: {stats['errors']}")
        # Blocking reads, but short and rare; a busy API may take a while to answer.
        active = sum(metric(api, "graphql_subscriptions_active") for api in apis)


def api_module(mode: str) -> tuple[str, ...]:
    """What `python -m` runs for a mode: shared (the API), naive (a Redis connection and
    an execution per subscriber), or without-NAME (the API less one of live.compat's
    overrides: lean-hooks, handshake-release, shared-results)."""
    if mode == "shared":
        return ("api",)
    if mode == "naive":
        return ("bench.baseline_api", "--per-subscriber-bus")
    if mode.startswith("without-"):
        return ("bench.baseline_api", "--without", mode.removeprefix("without-"))
    raise ValueError(f"unknown mode {mode!r}")


async def run_mode(
    stack: Stack,
    plan: Plan,
    *,
    mode: str,
    apis_count: int,
    client_processes: int,
    rates: list[int],
    seconds: float,
) -> dict[str, Any]:
    """One mode end to end: APIs up, subscribers in, rising rates."""
    env = {
        # An API that falls behind shows as latency and a lower rate, not as
        # subscribers closed for being slow (which would change the next steps).
        "SUBSCRIPTION_BUFFER": str(BUFFER),
    }
    module = api_module(mode)
    with (
        private_redis() as redis_url,
        api_processes(stack, redis_url, apis_count, module=module, **env) as apis,
    ):
        await asyncio.sleep(1.0)  # settled
        rss_before = [rss_kib(api.pid) for api in apis]
        clients = [await ClientProcess.start() for _ in range(client_processes)]
        try:
            connecting = time.monotonic()
            shares: list[list[list[Any]]] = [[] for _ in clients]
            for index, (api, token, device) in enumerate(plan.subscriptions):
                shares[index % len(clients)].append([apis[api].url, token, device])
            await asyncio.gather(
                *(c.ask({"subscriptions": s}) for c, s in zip(clients, shares, strict=True))
            )
            connect_seconds = time.monotonic() - connecting
            await asyncio.sleep(2.0)  # idle, connected, not subscribed yet
            rss_connected = [rss_kib(api.pid) for api in apis]
            await asyncio.gather(*(c.ask({"cmd": "subscribe"}) for c in clients))
            await wait_subscribed(apis, clients, len(plan.subscriptions))
            await asyncio.sleep(2.0)  # idle
            rss_after = [rss_kib(api.pid) for api in apis]
            redis_clients = await redis_client_count(redis_url)
            run = Run(plan, redis_url, apis, clients)
            await run.step(1_000, 0.5)  # warm-up: first-use costs out of the way
            steps = []
            for rate in rates:
                result = await run.step(rate, seconds)
                steps.append(result)
                if result["achieved_deliveries_per_s"] < rate / 2:
                    break  # saturated: higher rates would only drain longer
        finally:
            await asyncio.gather(*(c.quit() for c in clients))
    sustained = [s["achieved_deliveries_per_s"] for s in steps if s["ok"]]
    at_latency_rate = [s for s in steps if s["offered_deliveries_per_s"] == LATENCY_RATE]
    subscriptions = len(plan.subscriptions)
    return {
        "mode": mode,
        "connect_seconds": round(connect_seconds, 1),
        "api_rss_kib_before": rss_before,
        "api_rss_kib_connected": rss_connected,
        "api_rss_kib_subscribed": rss_after,
        # One WebSocket per subscription: both together, then the two parts.
        "rss_kib_per_subscription": round((sum(rss_after) - sum(rss_before)) / subscriptions, 1),
        "rss_kib_per_connection_alone": round(
            (sum(rss_connected) - sum(rss_before)) / subscriptions, 1
        ),
        "rss_kib_per_subscription_alone": round(
            (sum(rss_after) - sum(rss_connected)) / subscriptions, 1
        ),
        "rss_mib_per_1000_subscriptions": round(
            (sum(rss_after) - sum(rss_before)) / subscriptions * 1000 / 1024, 1
        ),
        "redis_clients": redis_clients,
        "steps": steps,
        "latency_step": at_latency_rate[0] if at_latency_rate else None,
        "max_sustained_deliveries_per_s": max(sustained, default=0),
        "peak_deliveries_per_s": max(s["achieved_deliveries_per_s"] for s in steps),
    }


async def redis_client_count(url: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        info = await client.info("clients")
        return int(info["connected_clients"])
    finally:
        await client.aclose()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        subscribers, rates, seconds = 100, [LATENCY_RATE, 10_000], 1.0
    else:
        subscribers, rates, seconds = (
            args.subscribers,
            [2_500, LATENCY_RATE, 10_000, 20_000, 40_000],
            5.0,
        )
    load_before = load_average()
    with stack() as running:
        seeding = time.monotonic()
        plan = await seed(running, subscribers, args.apis)
        seeded = time.monotonic() - seeding
        modes = []
        for mode in args.modes.split(","):
            print(f"fanout: {mode} mode, {subscribers} subscribers ...", flush=True)
            modes.append(
                await run_mode(
                    running,
                    plan,
                    mode=mode,
                    apis_count=args.apis,
                    client_processes=args.clients,
                    rates=rates,
                    seconds=seconds,
                )
            )
    shared, naive = modes[0], modes[-1]
    return {
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "seed_seconds": round(seeded, 1),
        "plan": {
            "subscriptions": len(plan.subscriptions),
            "apis": args.apis,
            "client_processes": args.clients,
            "per_event": plan.per_event,
            **plan.counts,
        },
        "injection": "PUBLISH straight into a private Redis, worker format (core.events), "
        "worker channels (device, owner, all), through live.resp.PublishPipe",
        "subscription_buffer": BUFFER,
        "modes": modes,
        "throughput_ratio_shared_to_naive": round(
            shared["peak_deliveries_per_s"] / max(naive["peak_deliveries_per_s"], 1), 2
        ),
        "targets": {
            "deliveries_per_s": 20_000,
            "p99_ms_at_5000_per_s": 50,
            "rss_kib_per_idle_subscription": 50,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 subscribers, short steps")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument("--name", default=None, help="results file name (default fanout)")
    parser.add_argument(
        "--modes",
        default="shared,naive",
        help="comma-separated: shared, naive, without-NAME (NAME: a live.compat override, "
        "lean-hooks, handshake-release or shared-results); the ratio is first to last",
    )
    args = parser.parse_args(argv)
    # Stopped with SIGTERM, still stop the processes started here (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = asyncio.run(main_async(args))
    report(results)
    path = write_results(args.name or ("fanout-quick" if args.quick else "fanout"), results)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
