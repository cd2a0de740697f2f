"""Private RabbitMQ nodes for tests: MQTT on, every login and check asked of the API.

Beside the machine's own node: its own node name, ports (AMQP, MQTT, distribution,
management), data, logs, config and Erlang cookie in a temporary directory. Started
through /usr/lib/rabbitmq/bin/rabbitmq-server as the current user (Debian's
/usr/sbin/rabbitmq-server would switch to the `rabbitmq` user). `RabbitCluster`: three
such nodes sharing a cookie, joined with `rabbitmqctl join_cluster`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.net import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_TIMEOUT = 90.0
AUTH_USER = "rabbitmq"


def available() -> bool:
    return SERVER.exists()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise TimeoutError(f"RabbitMQ's MQTT listener on {port} did not open in {timeout} s")


def config_text(
    *, amqp_port: int, mqtt_port: int, auth_base: str, management: tuple[int, str, str]
) -> str:
    """rabbitmq.conf: the HTTP backend first (POST, the secret as the URLs' user info);
    then the internal one, for the management administrator (the default user)."""
    management_port, admin, admin_password = management
    paths = {
        "user_path": "user",
        "vhost_path": "vhost",
        "resource_path": "resource",
        "topic_path": "topic",
    }
    lines = [
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}",
        f"mqtt.listeners.tcp.1 = 127.0.0.1:{mqtt_port}",
        "mqtt.allow_anonymous = false",
        "auth_backends.1 = http",
        "auth_backends.2 = internal",
        f"default_user = {admin}",
        f"default_pass = {admin_password}",
        f"management.tcp.port = {management_port}",
        "management.tcp.ip = 127.0.0.1",
        "auth_http.http_method = post",
        *(f"auth_http.{key} = {auth_base}/{name}" for key, name in paths.items()),
        "log.console = false",
        "log.file.level = info",
    ]
    return "\n".join(lines) + "\n"


class RabbitNode:
    """One node; `start` returns when its MQTT listener accepts connections."""

    def __init__(
        self,
        directory: Path,
        *,
        api_url: str,
        secret: str,
        management: tuple[int, str, str],
        cookie: str | None = None,
    ) -> None:
        self.directory = directory
        # Nodes of one cluster share theirs; a lone node makes its own.
        self.cookie = cookie or secrets.token_hex(16)
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.name = f"iot-test-{secrets.token_hex(4)}@localhost"
        parts = urlsplit(api_url)
        self.auth_base = (
            f"{parts.scheme}://{AUTH_USER}:{secret}@{parts.netloc}/broker/auth/rabbitmq"
        )
        # Port, administrator and password of its management API.
        self.management = management
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def environment(self) -> dict[str, str]:
        base = self.directory
        return {
            **os.environ,
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the server process; `wait_ready` waits for its listeners."""
        base = self.directory
        for name in ("home", "mnesia", "log"):
            (base / name).mkdir(parents=True, exist_ok=True)
        cookie = base / "home" / ".erlang.cookie"
        if cookie.exists():
            cookie.chmod(0o600)
        cookie.write_text(self.cookie)
        # Erlang refuses a cookie anyone but its owner can read.
        cookie.chmod(0o400)
        (base / "rabbitmq.conf").write_text(
            config_text(
                amqp_port=self.amqp_port,
                mqtt_port=self.mqtt_port,
                auth_base=self.auth_base,
                management=self.management,
            )
        )
        (base / "enabled_plugins").write_text(
            "[rabbitmq_mqtt,rabbitmq_auth_backend_http,rabbitmq_management].\n"
        )
        with (base / "server.out").open("wb") as out:
            self.process = subprocess.Popen(
                [str(SERVER)],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        _wait_for_port(self.mqtt_port, self.process, START_TIMEOUT)
        _wait_for_port(self.management[0], self.process, START_TIMEOUT)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl` against this node (its name and cookie); its output."""
        result = subprocess.run(
            [str(CTL), "-n", self.name, *args],
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)}: {result.stdout.decode()}{result.stderr.decode()}"
            )
        return result.stdout.decode()

    def kill(self) -> None:
        """SIGKILL to its process group: the node dies without a word to anyone."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # Its own process group: the Erlang VM and its port programs (epmd stays).
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class RabbitCluster:
    """`size` nodes on loopback sharing an Erlang cookie, joined into one cluster."""

    def __init__(
        self,
        directory: Path,
        *,
        api_url: str,
        secret: str,
        management_user: str,
        management_password: str,
        size: int = 3,
    ) -> None:
        cookie = secrets.token_hex(16)
        self.nodes = [
            RabbitNode(
                directory / f"node{n}",
                api_url=api_url,
                secret=secret,
                management=(free_port(), management_user, management_password),
                cookie=cookie,
            )
            for n in range(1, size + 1)
        ]

    def start(self) -> None:
        """Start every node at once, then join the others to the first one's cluster."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.wait_ready()
        running = json.loads(first.ctl("cluster_status", "--formatter", "json"))
        if sorted(running["running_nodes"]) != sorted(node.name for node in self.nodes):
            raise RuntimeError(f"cluster not formed: {running['running_nodes']}")

    def stop(self) -> None:
        """SIGKILL every node: a test cluster's data is thrown away anyway (a clean
        stop of three nodes takes some 12 s)."""
        for node in self.nodes:
            node.kill()
            node.process = None

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
