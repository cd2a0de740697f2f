"""`python -m devstack run`: the whole platform on this machine, for development.

Redis is reused when something already answers on its configured address and
started as a child otherwise; Mosquitto is always the project's own (dynamic
security on, anonymous off) on DEVSTACK_MQTT_PORT (1884), data in .data/mosquitto/,
with a TLS listener on DEVSTACK_MQTTS_PORT (8883) and, in front of it, the WebSocket
bridge (devstack.ws_bridge) on DEVSTACK_WS_PORT (8083, ws://) and DEVSTACK_WSS_PORT
(8084, wss://), path /mqtt; their CA and server certificate are kept in .data/certs/;
unless MONGODB_URL is set, the embedded database is started (DEVSTACK_DATABASE:
SecantusDB by default, data in .data/secantus/; `mongoeco`, the MongoDB stand-in over
.data/mongo.sqlite); then the API, the ingest worker and, with --simulate N, a device
simulator. `--api N` starts N APIs on
consecutive ports from API_PORT, `--workers N` N workers (ingest-1 ... ingest-N, metrics
on consecutive ports from INGEST_METRICS_PORT) sharing the broker's `$share` group. The broker
identities' passwords and DEVICE_CREDENTIAL_KEY are generated on first run into
.data/secrets.env (mode 0600). Ctrl-C stops what was started here, newest first,
and nothing else. Settings come from the environment over `.env`, as the API reads them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from core.private_dir import make_private_dir, owner_only_files
from devstack.certs import CertificateFiles, ensure_certificates
from devstack.mosquitto import (
    BrokerLayout,
    BrokerSetupError,
    init_dynsec,
    mosquitto_command,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
MONGO_DATA = ROOT / ".data" / "mongo.sqlite"
SECANTUS_DATA = ROOT / ".data" / "secantus"
# DEVSTACK_DATABASE: what `make run` starts when MONGODB_URL is unset (README, "The
# embedded database"; bench/embedded.py measured them).
EMBEDDED_DATABASES = ("secantus", "mongoeco")
MOSQUITTO_DATA = ROOT / ".data" / "mosquitto"
SECRETS_FILE = ROOT / ".data" / "secrets.env"
CERTS_DIR = ROOT / ".data" / "certs"
# 1883 is usually the machine's own (anonymous) broker.
DEFAULT_MQTT_PORT = 1884
# MQTT over TLS (the contract's port), over WebSockets and over WebSockets with TLS.
DEFAULT_MQTTS_PORT, DEFAULT_WS_PORT, DEFAULT_WSS_PORT = 8883, 8083, 8084
ADMIN_USERNAME = "iot-admin"
INGEST_USERNAME = "iot-ingest"
GENERATED_SECRETS = ("MQTT_ADMIN_PASSWORD", "MQTT_INGEST_PASSWORD", "DEVICE_CREDENTIAL_KEY")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
STOP_TIMEOUT_SECONDS = 10.0
# The API is local: never ask an HTTP(S)_PROXY from the environment for it.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Abort(Exception):
    """The stack goes down: a signal arrived, a child died or a service never came up."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """One line for the user, flushed so it interleaves with the children's output."""
    print(f"devstack: {message}", flush=True)


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def load_config() -> dict[str, str]:
    """Upper-cased settings: the environment over a simple `KEY=value` reading of `.env`."""
    config: dict[str, str] = {}
    dotenv = ROOT / ".env"
    if dotenv.is_file():
        for line in dotenv.read_text().splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key and not key.startswith("#"):
                config[key.strip().upper()] = value.strip().strip("'\"")
    return config | {key.upper(): value for key, value in os.environ.items()}


class Supervisor:
    """The children started here; signals only set a flag that the wait loops check."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.signal: int | None = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: ask the main loop to shut down."""
        self.signal = signum

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start a child in its own process group, so Ctrl-C reaches only this supervisor."""
        try:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, process_group=0)
        except FileNotFoundError as err:
            raise Abort(f"cannot start {name}: {err} (run scripts/ensure-services)", 1) from err
        self.children.append((name, process))

    def check(self) -> None:
        """Raise Abort when a stop signal arrived or a child has exited."""
        if self.signal is not None:
            raise Abort(f"{signal.Signals(self.signal).name} received", 0)
        for name, process in self.children:
            if (code := process.poll()) is not None:
                raise Abort(f"{name} exited unexpectedly (code {code})", 1)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until it holds, checking signals and children in between."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise Abort(f"{what} not ready after {timeout:.0f} s", 1)
            time.sleep(0.1)

    def stop_all(self) -> None:
        """Terminate the children newest first; kill any that outlives the timeout."""
        for name, process in reversed(self.children):
            if process.poll() is None:
                say(f"stopping {name} (pid {process.pid})")
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    say(f"{name} did not stop in {STOP_TIMEOUT_SECONDS:.0f} s, killing it")
                    process.kill()
                    process.wait()


def ensure_service(
    stack: Supervisor, name: str, host: str, port: int, argv: list[str], timeout: float = 10.0
) -> str:
    """Reuse what answers on host:port, or start `argv` as a child; describe which."""
    if answers(host, port):
        return f"{name}: {host}:{port} (reused, left running on exit)"
    if host not in LOCAL_HOSTS:
        raise Abort(f"nothing answers for {name} on {host}:{port}, and it is not local", 1)
    stack.start(name, argv)
    stack.wait_for(f"{name} on {host}:{port}", lambda: answers(host, port), timeout)
    return f"{name}: {host}:{port} (started by devstack)"


def start_mongo_standin(stack: Supervisor, directory: Path) -> str:
    """Start the MongoDB stand-in on 27017, or a free port if taken; return its URI."""
    port = 0 if answers("127.0.0.1", 27017) else 27017
    ready = directory / "mongo.uri"
    argv = [sys.executable, "-m", "devstack.mongo_standin", "--port", str(port)]
    stack.start("mongo stand-in", [*argv, "--data", str(MONGO_DATA), "--ready-file", str(ready)])
    stack.wait_for("mongo stand-in", lambda: ready.is_file() and bool(ready.read_text()), 30)
    return ready.read_text().strip()


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pings(uri: str) -> bool:
    """Whether a MongoDB server at `uri` answers `ping`."""
    client: MongoClient[dict[str, Any]]
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
            return True
    except PyMongoError:
        return False


def embedded_database(config: dict[str, str]) -> str:
    """DEVSTACK_DATABASE: `secantus` (the default) or `mongoeco`."""
    name = config.get("DEVSTACK_DATABASE", "secantus") or "secantus"
    if name not in EMBEDDED_DATABASES:
        raise Abort(f"DEVSTACK_DATABASE must be one of {', '.join(EMBEDDED_DATABASES)}", 1)
    return name


def start_secantus(stack: Supervisor, data: Path = SECANTUS_DATA) -> str:
    """SecantusDB (a MongoDB-wire server on WiredTiger, its own process, GPL-2.0) on
    27017, or a free port if taken, its data in `data`, durable per commit; its URI."""
    binary = Path(sys.executable).with_name("secantusd-py")
    if not binary.is_file():
        raise Abort(
            f"{binary} is missing: run `make install`, or set DEVSTACK_DATABASE=mongoeco", 1
        )
    port = free_port() if answers("127.0.0.1", 27017) else 27017
    make_private_dir(data.parent)
    data.mkdir(mode=0o700, exist_ok=True)
    argv = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(data)]
    # Every commit fsyncs WiredTiger's journal: what it acknowledged survives a crash,
    # and the worker's batches make that cheap (bench/embedded.py: the same 2,000 msg/s).
    argv += ["--sync-on-commit", "--log-level", "WARNING"]
    stack.start("secantusdb", argv)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    stack.wait_for(f"secantusdb on 127.0.0.1:{port}", partial(pings, uri), 60)
    return uri


def index_readings(uri: str, database: str) -> None:
    """The (device, time) index real MongoDB gives a time-series collection by itself;
    SecantusDB does not, and without it a history page or an aggregate scans every
    reading (bench/embedded.py: 470 ms at 20,000 readings, 14 ms with it)."""
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri) as client:
        client[database]["readings"].create_index(
            [("device_id", 1), ("timestamp", -1)], name="device_id_1_timestamp_-1"
        )


def load_secrets(path: Path = SECRETS_FILE) -> dict[str, str]:
    """The development secrets, generated (mode 0600) the first time; their directory
    (.data) made owner-only (0700) every time, as an older version left it 0755."""
    make_private_dir(path.parent)
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    missing = [name for name in GENERATED_SECRETS if not values.get(name)]
    if missing:
        values |= {name: secrets.token_urlsafe(32) for name in missing}
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return values


def start_mosquitto(
    stack: Supervisor,
    port: int,
    admin_password: str,
    *,
    tls_port: int | None = None,
    certificates: CertificateFiles | None = None,
) -> str:
    """The project's broker (dynsec, no anonymous access) as a child, with a TLS listener
    on `tls_port`; its banner line."""
    for taken in (port, tls_port):
        if taken is not None and answers("127.0.0.1", taken):
            raise Abort(
                f"something already listens on 127.0.0.1:{taken}; "
                "set DEVSTACK_MQTT_PORT / DEVSTACK_MQTTS_PORT",
                1,
            )
    layout = BrokerLayout(MOSQUITTO_DATA, port, tls_port, certificates)
    try:
        write_config(layout)
        init_dynsec(layout, ADMIN_USERNAME, admin_password)
        argv = mosquitto_command(layout)
    except (BrokerSetupError, subprocess.CalledProcessError) as err:
        raise Abort(f"cannot prepare mosquitto: {err}", 1) from err
    stack.start("mosquitto", argv)
    for listening in (port, tls_port):
        if listening is not None:
            stack.wait_for(
                f"mosquitto on 127.0.0.1:{listening}",
                partial(answers, "127.0.0.1", listening),
                10,
            )
    return f"mosquitto: 127.0.0.1:{port} (dynsec, started by devstack, data in .data/mosquitto/)"


def start_ws_bridge(
    stack: Supervisor, broker_port: int, ports: tuple[int, int], certificates: CertificateFiles
) -> None:
    """MQTT over WebSockets (plain and TLS) in front of the broker: Debian's Mosquitto
    has no websockets of its own (devstack/ws_bridge.py)."""
    for port in ports:
        if answers("127.0.0.1", port):
            raise Abort(
                f"something already listens on 127.0.0.1:{port}; "
                "set DEVSTACK_WS_PORT / DEVSTACK_WSS_PORT",
                1,
            )
    argv = [sys.executable, "-m", "devstack.ws_bridge", "--broker-port", str(broker_port)]
    argv += ["--port", str(ports[0]), "--tls-port", str(ports[1])]
    argv += ["--certfile", str(certificates.server_cert)]
    argv += ["--keyfile", str(certificates.server_key), "--log-level", "WARNING"]
    stack.start("ws bridge", argv)
    for port in ports:
        stack.wait_for(f"ws bridge on 127.0.0.1:{port}", partial(answers, "127.0.0.1", port), 10)


def transport_lines(ports: tuple[int, int, int, int], ca: Path) -> list[str]:
    """The banner's lines for the broker's transports: MQTT, TLS, WebSockets plain and TLS."""
    shown = ca.relative_to(ROOT) if ca.is_relative_to(ROOT) else ca
    mqtt, tls, ws, wss = ports
    return [
        f"MQTT: mqtt://localhost:{mqtt}, mqtts://localhost:{tls} (TLS: --cafile {shown})",
        f"MQTT over WebSockets: ws://localhost:{ws}/mqtt, wss://localhost:{wss}/mqtt "
        "(subprotocol mqtt; devstack.ws_bridge in front of the broker)",
    ]


def transport_ports(config: dict[str, str]) -> tuple[int, int, int]:
    """The TLS, WebSocket and WebSocket-over-TLS ports (DEVSTACK_*_PORT or defaults)."""
    return (
        int(config.get("DEVSTACK_MQTTS_PORT", str(DEFAULT_MQTTS_PORT))),
        int(config.get("DEVSTACK_WS_PORT", str(DEFAULT_WS_PORT))),
        int(config.get("DEVSTACK_WSS_PORT", str(DEFAULT_WSS_PORT))),
    )


def mqtt_environment(
    port: int, username: str, password: str, secret_values: dict[str, str]
) -> dict[str, str]:
    """One platform process's broker settings: its own identity, the shared key."""
    return {
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(port),
        "MQTT_USERNAME": username,
        "MQTT_PASSWORD": password,
        "MQTT_INGEST_USERNAME": INGEST_USERNAME,
        "DEVICE_CREDENTIAL_KEY": secret_values["DEVICE_CREDENTIAL_KEY"],
    }


def api_mqtt_environment(port: int, secret_values: dict[str, str]) -> dict[str, str]:
    """The API administers dynsec and provisions the ingest identity."""
    env = mqtt_environment(
        port, ADMIN_USERNAME, secret_values["MQTT_ADMIN_PASSWORD"], secret_values
    )
    return env | {"MQTT_INGEST_PASSWORD": secret_values["MQTT_INGEST_PASSWORD"]}


def ingest_mqtt_environment(port: int, secret_values: dict[str, str]) -> dict[str, str]:
    """The ingest worker speaks as its own, subscribe-only identity."""
    return mqtt_environment(
        port, INGEST_USERNAME, secret_values["MQTT_INGEST_PASSWORD"], secret_values
    )


def health_status(url: str) -> int | None:
    """The HTTP status of GET url (any status means the API answers); None if no answer."""
    try:
        with HTTP.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def worker_environments(config: dict[str, str], workers: int) -> list[dict[str, str]]:
    """Per worker: its own broker identity and the client id bound to it, and its metrics
    port; one share group for all."""
    if workers == 1:
        return [{"MQTT_USERNAME": f"{INGEST_USERNAME}-1", "INGEST_CLIENT_ID": "ingest-1"}]
    if config.get("INGEST_SHARE_GROUP", "ingest") == "":
        raise Abort("several workers need a share group; unset INGEST_SHARE_GROUP", 1)
    metrics_port = int(config.get("INGEST_METRICS_PORT", "9101"))
    return [
        {
            # Stable ids: the broker keeps each worker's session (and its share) by id.
            "MQTT_USERNAME": f"{INGEST_USERNAME}-{number}",
            "INGEST_CLIENT_ID": f"ingest-{number}",
            "INGEST_METRICS_PORT": str(metrics_port + number - 1 if metrics_port else 0),
        }
        for number in range(1, workers + 1)
    ]


def bring_up(
    stack: Supervisor,
    config: dict[str, str],
    directory: Path,
    *,
    simulate: int = 0,
    apis: int = 1,
    workers: int = 1,
) -> list[str]:
    """Start or reuse every service, then `apis` APIs on consecutive ports, `workers`
    ingest workers in one share group (and a simulator)."""
    if apis < 1 or workers < 1:
        raise Abort("run at least one API and one worker", 1)
    api_host, api_port = config.get("API_HOST", "127.0.0.1"), int(config.get("API_PORT", "8000"))
    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(api_host, api_host)  # noqa: S104
    for port in range(api_port, api_port + apis):
        if answers(local, port):
            raise Abort(f"something already listens on {local}:{port}; set API_PORT", 1)
    worker_envs = worker_environments(config, workers)

    redis = urlsplit(config.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis_host, redis_port = redis.hostname or "127.0.0.1", redis.port or 6379
    redis_argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"]
    redis_argv += ["--save", "", "--appendonly", "no"]
    lines = [ensure_service(stack, "redis", redis_host, redis_port, redis_argv)]

    secret_values = load_secrets()
    # Reused while valid; a new server certificate (and CA) when expired or renamed.
    certificates = ensure_certificates(CERTS_DIR)
    mqtt_port = int(config.get("DEVSTACK_MQTT_PORT", str(DEFAULT_MQTT_PORT)))
    tls_port, ws_port, wss_port = transport_ports(config)
    lines.append(
        start_mosquitto(
            stack,
            mqtt_port,
            secret_values["MQTT_ADMIN_PASSWORD"],
            tls_port=tls_port,
            certificates=certificates,
        )
    )
    start_ws_bridge(stack, mqtt_port, (ws_port, wss_port), certificates)
    ports = (mqtt_port, tls_port, ws_port, wss_port)
    lines.extend(transport_lines(ports, certificates.ca_cert))
    lines.append(f"credentials in {SECRETS_FILE.relative_to(ROOT)}")

    secantus = False
    if mongodb_url := config.get("MONGODB_URL", ""):
        lines.append(f"mongodb: {mongodb_url} (MONGODB_URL, reused)")
    elif embedded_database(config) == "secantus":
        mongodb_url, secantus = start_secantus(stack), True
        lines.append(
            f"mongodb: {mongodb_url} (SecantusDB started by devstack, data in .data/secantus/)"
        )
    else:
        mongodb_url = start_mongo_standin(stack, directory)
        lines.append(f"mongodb: {mongodb_url} (stand-in started by devstack, data in .data/)")

    env = os.environ | {
        "ENVIRONMENT": config.get("ENVIRONMENT", "development"),
        "MONGODB_URL": mongodb_url,
        "REDIS_URL": redis.geturl(),
        "API_HOST": api_host,
        "API_PORT": str(api_port),
        # A day of raw readings keeps the stand-in quick, and small deletion batches keep
        # each one short there (docs/data.md); .env may say otherwise.
        "READING_RETENTION_DAYS": config.get("READING_RETENTION_DAYS", "1"),
        "RETENTION_BATCH_SIZE": config.get("RETENTION_BATCH_SIZE", "200"),
    }
    env |= api_mqtt_environment(mqtt_port, secret_values)
    # The API provisions one bound broker identity per worker (iot-ingest-1 ... -N).
    env["INGEST_WORKERS"] = str(max(workers, 1))
    host = f"[{local}]" if ":" in local else local
    base = f"http://{host}:{api_port}"
    urls = []
    # One at a time: the first one's reconcile provisions the broker before the others.
    for number, port in enumerate(range(api_port, api_port + apis), start=1):
        name = "api" if apis == 1 else f"api-{number}"
        url = f"http://{host}:{port}"
        # API_INSTANCE: each API's broker client ids are its own (they are bound).
        own = {"API_PORT": str(port), "API_INSTANCE": f"dev-{number}"}
        stack.start(name, [sys.executable, "-m", "api"], env=env | own)
        answered: dict[str, int] = {}

        def api_answers(url: str = url, answered: dict[str, int] = answered) -> bool:
            if (code := health_status(f"{url}/health")) is not None:
                answered["health"] = code
            return code is not None

        stack.wait_for(f"{name} on {url}/health", api_answers, 30)
        if secantus and number == 1:  # the API has created the collections by now
            index_readings(mongodb_url, config.get("MONGODB_DATABASE", "iot"))
        lines.append(f"{name}: {url} (started by devstack; /health answered {answered['health']})")
        urls.append(url)
    # After the API: its reconcile has provisioned the worker's broker identity by now.
    ingest_env = {key: value for key, value in env.items() if not key.startswith("MQTT_")}
    ingest_env |= ingest_mqtt_environment(mqtt_port, secret_values)
    for number, worker_env in enumerate(worker_envs, start=1):
        name = "ingest" if workers == 1 else f"ingest-{number}"
        stack.start(name, [sys.executable, "-m", "ingest"], env=ingest_env | worker_env)
        detail = ", ".join(f"{key}={value}" for key, value in worker_env.items())
        lines.append(
            f"{name}: python -m ingest (started by devstack{'; ' + detail if detail else ''})"
        )
    if simulate:
        simulator = [
            sys.executable,
            "-m",
            "simulator",
            "--devices",
            str(simulate),
            "--rate",
            str(simulate),
            "--api",
            base,
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(mqtt_port),
            "--report-every",
            "60",
            # They take firmware updates, as real devices would (README "Firmware and OTA").
            "--ota",
        ]
        stack.start("simulator", simulator, env=env)
        lines.append(
            f"simulator: {simulate} devices, 1 reading/s each, taking OTA updates; see them as "
            "simulator@example.com / simulator-password"
        )
    # The console first: what a person opens (api/console.py, docs/console.md).
    return [
        *(f"Console: {url}/console/" for url in urls),
        *(f"GraphiQL: {url}/graphql" for url in urls),
        *lines,
    ]


def run(*, simulate: int = 0, apis: int = 1, workers: int = 1) -> int:
    """Bring the platform up and supervise it until a signal or a failure; the exit code."""
    owner_only_files()
    stack = Supervisor()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stack.on_signal)
    with tempfile.TemporaryDirectory(prefix="devstack-") as directory:
        try:
            lines = bring_up(
                stack,
                load_config(),
                Path(directory),
                simulate=simulate,
                apis=apis,
                workers=workers,
            )
            print("\n".join(["", *lines, "Ctrl-C stops what devstack started.", ""]), flush=True)
            while True:
                stack.check()
                time.sleep(0.2)
        except Abort as stop:
            say(f"{stop}; shutting down")
            return stop.code
        finally:
            stack.stop_all()
