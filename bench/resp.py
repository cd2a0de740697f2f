"""RESP benchmark: `python -m bench.resp [--python PATH ...] [--rounds 3]` (issue 13).

The project's own Redis protocol code against redis-py 8.2, with and without
hiredis, on the real Redis at REDIS_URL (default redis://127.0.0.1:6379/9):

* publish: the worker's live path. Real `ReadingEvent` payloads, each on its
  three channels (core.events), in batches as the worker hands them over (1
  event, 20 events): `live.resp.PublishPipe` (CLIENT REPLY OFF, one write per
  batch) vs a redis-py pipeline per batch (`live.publisher` without the pipe) vs one
  awaited `Redis.publish` per message vs redis-py's encoder (`pack_commands`,
  `send_packed_command`) on a connection with CLIENT REPLY OFF, like the pipe.
* receive: the API's shared pub/sub listener. The bench publishes the same events
  (burst, and paced at 6,000 messages/s) to a process subscribed to their
  channels that reads them with `live.redis_bus.PushReplies` over redis-py's
  stream (what `RedisBus._read` does) vs `PubSub.get_message` vs `PubSub.listen`.

Each case runs in its own process (CPU = that process's `time.process_time()`
over the measured loop, Redis's own CPU not included). Several interpreters may
be given with --python (e.g. a venv with hiredis and one without): every case
runs under each, interleaved round by round, so A and B share the machine's
load. Channels are prefixed `bench-resp-` (pub/sub is server-wide). Prints
tables, writes bench/results/resp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.harness import ROOT, print_table, write_results
from core.events import ReadingEvent, channels_for

REDIS_URL = os.environ.get("BENCH_RESP_REDIS_URL", "redis://127.0.0.1:6379/9")
DEVICES = 10
OWNERS = 2
PACED_RATE = 6000  # messages/s in the paced receive case
CHILD_TIMEOUT = 120.0

# (case, variant, batch events or rate, messages); n is events for publish, messages for receive.
PUBLISH_CASES = [
    ("own", 1, 6000),
    ("pipeline", 1, 6000),
    ("publish", 1, 2000),
    ("redis-py-pack", 1, 6000),
    ("own", 20, 20000),
    ("pipeline", 20, 20000),
    ("redis-py-pack", 20, 20000),
]
RECEIVE_CASES = [
    ("own", 0, 30000),
    ("get_message", 0, 30000),
    ("listen", 0, 30000),
    ("own", PACED_RATE, 12000),
    ("get_message", PACED_RATE, 12000),
    ("listen", PACED_RATE, 12000),
]


def events(count: int) -> list[ReadingEvent]:
    """Reading events as the worker publishes them: three metrics, a few devices."""
    now = datetime.now(UTC)
    return [
        ReadingEvent(
            device_id=f"6650f0c2a1b2c3d4e5f6{index % DEVICES:04x}",
            owner_id=f"6650f0c2a1b2c3d4e5f7{index % OWNERS:04x}",
            timestamp=now,
            anomaly=False,
            values=(
                ("temperature", 21.5 + index % 7 / 10, "°C"),
                ("humidity", 48.2, "%"),
                ("battery", 87.31, "%"),
            ),
        )
        for index in range(count)
    ]


def messages(prefix: str, batch: list[ReadingEvent]) -> list[tuple[str, bytes]]:
    """(channel, payload) of each event's three channels, as live.publisher builds them."""
    return [
        (prefix + channel, payload)
        for event in batch
        for payload in (event.encode(),)
        for channel in channels_for("readings", event.device_id, event.owner_id)
    ]


def all_channels(prefix: str) -> list[str]:
    return sorted({channel for channel, _ in messages(prefix, events(DEVICES * OWNERS))})


def parser_name() -> str:
    import redis.utils

    return "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python"


# ------------------------------------------------------------------ publish child


async def child_publish(variant: str, batch_size: int, count: int, prefix: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    from live.resp import PublishPipe

    batches = [messages(prefix, events(batch_size)) for _ in range(max(1, count // batch_size))]
    done_channel = prefix + "done"
    redis = Redis.from_url(REDIS_URL)
    pool: Any = redis.connection_pool  # redis-py's async pool methods are untyped
    # Completion marker: Redis runs one connection's commands in order, so the marker
    # arriving means every PUBLISH before it has been executed (the pipe sends no replies).
    watcher = redis.pubsub()
    await watcher.subscribe(done_channel)
    await watcher.get_message(timeout=5.0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if variant == "own":
        async with PublishPipe(REDIS_URL) as pipe:
            for batch in batches:
                pipe.publish_many(batch)
                await pipe.drain()
            pipe.publish_many([(done_channel, b"done")])
            await _until_marker(watcher)
    elif variant == "redis-py-pack":
        # redis-py's own encoder on a connection with replies off, as the pipe does:
        # separates the encoding cost from the round trips a pipeline waits for.
        connection = await pool.get_connection()
        await connection.send_command("CLIENT", "REPLY", "OFF", check_health=False)
        for batch in batches:
            commands = [("PUBLISH", channel, payload) for channel, payload in batch]
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
        await connection.send_command("PUBLISH", done_channel, b"done", check_health=False)
        await _until_marker(watcher)
        await connection.disconnect()
    elif variant == "pipeline":
        for batch in batches:
            async with redis.pipeline(transaction=False) as pipeline:
                for channel, payload in batch:
                    pipeline.publish(channel, payload)
                await pipeline.execute()
        await redis.publish(done_channel, b"done")
        await _until_marker(watcher)
    else:
        for batch in batches:
            for channel, payload in batch:
                await redis.publish(channel, payload)
        await redis.publish(done_channel, b"done")
        await _until_marker(watcher)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await watcher.aclose()
    await redis.aclose()
    published = sum(len(batch) for batch in batches)
    return {"publishes": published, "cpu_s": cpu, "wall_s": wall}


async def _until_marker(watcher: Any) -> None:
    async with asyncio.timeout(60):
        while True:
            message = await watcher.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is not None:
                return


# ------------------------------------------------------------------ receive child


async def child_receive(variant: str, count: int, prefix: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    channels = all_channels(prefix)
    redis = Redis.from_url(REDIS_URL)
    if variant == "own":
        result = await _receive_own(redis, channels, count)
    else:
        result = await _receive_redis_py(redis, channels, count, listen=variant == "listen")
    await redis.aclose()
    return result


async def _receive_own(redis: Any, channels: list[str], count: int) -> dict[str, Any]:
    """RedisBus._read's loop: chunks from redis-py's stream, parsed by PushReplies."""
    from live.redis_bus import _CHUNK, PushReplies

    pool = redis.connection_pool
    connection = pool.connection_class(
        **{**pool.connection_kwargs, "decode_responses": False, "health_check_interval": 0}
    )
    await connection.connect_check_health(check_health=False)
    await connection.send_command("SUBSCRIBE", *channels, check_health=False)
    stream = connection._reader
    replies = PushReplies()
    confirmed = 0
    async with asyncio.timeout(30):
        while confirmed < len(channels):
            for reply in replies.feed(await stream.read(_CHUNK)):
                confirmed += reply[0] == b"subscribe"
    ready()
    received = 0
    first = 0.0
    cpu0 = time.process_time()
    async with asyncio.timeout(CHILD_TIMEOUT):
        while received < count:
            data = await stream.read(_CHUNK)
            if not data:
                raise ConnectionError("Redis closed the connection")
            for response in replies.feed(data):
                # What RedisBus._handle does before the fan-out.
                if isinstance(response, list) and response[0] == b"message":
                    _channel = response[1].decode()
                    _payload = bytes(response[2])
                    if not received:
                        first = time.perf_counter()
                    received += 1
    cpu, last = time.process_time() - cpu0, time.perf_counter()
    await connection.disconnect(nowait=True)
    return {"messages": received, "cpu_s": cpu, "wall_s": last - first}


async def _receive_redis_py(
    redis: Any, channels: list[str], count: int, *, listen: bool
) -> dict[str, Any]:
    pubsub = redis.pubsub()
    await pubsub.subscribe(*channels)
    confirmed = 0
    async with asyncio.timeout(30):
        while confirmed < len(channels):
            message = await pubsub.get_message(timeout=5.0)
            # redis-py hands the message type over as str, even without decode_responses.
            confirmed += message is not None and message["type"] == "subscribe"
    ready()
    received = 0
    first = 0.0
    cpu0 = time.process_time()
    async with asyncio.timeout(CHILD_TIMEOUT):
        if listen:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    _channel = message["channel"].decode()
                    if not received:
                        first = time.perf_counter()
                    received += 1
                    if received >= count:
                        break
        else:
            while received < count:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    _channel = message["channel"].decode()
                    if not received:
                        first = time.perf_counter()
                    received += 1
    cpu, last = time.process_time() - cpu0, time.perf_counter()
    await pubsub.aclose()
    return {"messages": received, "cpu_s": cpu, "wall_s": last - first}


def ready() -> None:
    print("ready", flush=True)


# ------------------------------------------------------------------ parent


async def feed(prefix: str, count: int, rate: int) -> None:
    """Publish `count` messages (events on their three channels); rate 0: at once."""
    from live.resp import PublishPipe

    per_event = messages(prefix, events(DEVICES * OWNERS))
    todo = [per_event[i % len(per_event)] for i in range(count)]
    async with PublishPipe(REDIS_URL) as pipe:
        if not rate:
            for start in range(0, count, 300):
                pipe.publish_many(todo[start : start + 300])
                await pipe.drain()
            return
        start_time, sent = time.perf_counter(), 0
        while sent < count:
            due = min(count, int((time.perf_counter() - start_time) * rate) + 1)
            if due > sent:
                pipe.publish_many(todo[sent:due])
                await pipe.drain()
                sent = due
            await asyncio.sleep(0.002)


def run_child(python: str, args: list[str], *, feed_with: tuple[int, int] | None = None) -> Any:
    """Run one case in its own process; returns its JSON line."""
    command = [python, "-m", "bench.resp", "--child", *args]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        if feed_with is not None:
            line = process.stdout.readline()
            if line.strip() != "ready":
                process.kill()
                raise RuntimeError(f"child not ready: {line!r}")
            asyncio.run(feed(args[args.index("--prefix") + 1], *feed_with))
        out, _ = process.communicate(timeout=CHILD_TIMEOUT + 30)
    if process.returncode:
        raise RuntimeError(f"{command} failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter(s) to run cases under")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    pythons: list[str] = args.python or [sys.executable]
    load_before = list(os.getloadavg())
    samples: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    for python in pythons:
        out = subprocess.run(
            [python, "-c", "import bench.resp as r; print(r.parser_name())"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        labels[python] = out.stdout.strip()
    for round_index in range(args.rounds):
        # Rotate the order each round so no case always runs first or last.
        jobs: list[tuple[str, str, str, int, int]] = [
            (python, "publish", variant, batch, n)
            for python in pythons
            for variant, batch, n in PUBLISH_CASES
        ] + [
            (python, "receive", variant, rate, n)
            for python in pythons
            for variant, rate, n in RECEIVE_CASES
        ]
        shift = round_index * 3 % len(jobs)
        for python, kind, variant, param, n in jobs[shift:] + jobs[:shift]:
            prefix = f"bench-resp-{uuid.uuid4().hex[:8]}-"
            child_args = [kind, variant, str(param), str(n), "--prefix", prefix]
            feed_with = (n, param) if kind == "receive" else None
            result = run_child(python, child_args, feed_with=feed_with)
            key = (kind, variant, str(param), labels[python])
            samples.setdefault(key, []).append(result)
            print(f"round {round_index + 1}: {key} {result}", flush=True)
    report(samples, load_before, pythons, labels)


def report(
    samples: dict[tuple[str, ...], list[dict[str, Any]]],
    load_before: list[float],
    pythons: list[str],
    labels: dict[str, str],
) -> None:
    rows: list[dict[str, Any]] = []
    for (kind, variant, param, parser_label), runs in samples.items():
        unit = "publishes" if kind == "publish" else "messages"
        cpu_us = [run["cpu_s"] / run[unit] * 1e6 for run in runs]
        rate = [run[unit] / run["wall_s"] for run in runs]
        rows.append(
            {
                "path": kind,
                "variant": variant,
                "batch_events" if kind == "publish" else "offered_rate": int(param),
                "redis_py_parser": parser_label,
                "runs": len(runs),
                "cpu_us_per_message": dict(
                    zip(("median", "min", "max"), spread(cpu_us), strict=True)
                ),
                "per_second": dict(zip(("median", "min", "max"), spread(rate), strict=True)),
            }
        )
    load_after = list(os.getloadavg())
    for kind in ("publish", "receive"):
        table = [
            [
                row["variant"],
                row.get("batch_events", row.get("offered_rate") or "burst"),
                row["redis_py_parser"],
                "{median:.1f} ({min:.1f}-{max:.1f})".format(**row["cpu_us_per_message"]),
                "{median:,.0f} ({min:,.0f}-{max:,.0f})".format(**row["per_second"]),
            ]
            for row in sorted(
                (r for r in rows if r["path"] == kind),
                key=lambda r: (str(r.get("batch_events", r.get("offered_rate"))), r["variant"]),
            )
        ]
        header = [
            "variant",
            "batch (events)" if kind == "publish" else "offered msg/s",
            "redis-py parser",
            "CPU µs/msg median (min-max)",
            ("PUBLISH" if kind == "publish" else "messages") + "/s median (min-max)",
        ]
        print_table(f"RESP {kind} path", header, table)
    print(f"\nload average before {load_before}, after {load_after}")
    path = write_results(
        "resp",
        {
            "redis_url": REDIS_URL,
            "interpreters": {python: labels[python] for python in pythons},
            "load_average_before": load_before,
            "load_average_after": load_after,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


def child(argv: list[str]) -> None:
    kind, variant, param, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    prefix = argv[argv.index("--prefix") + 1]
    if kind == "publish":
        result = asyncio.run(child_publish(variant, param, count, prefix))
    else:
        result = asyncio.run(child_receive(variant, count, prefix))
    print(json.dumps({**result, "parser": parser_name()}), flush=True)


if __name__ == "__main__":
    main()
