"""A project-managed Mosquitto for tests: generated config, dynsec, its own port."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from devstack.certs import CertificateFiles, ensure_certificates
from devstack.mosquitto import (
    BrokerLayout,
    init_dynsec,
    mosquitto_command,
    wait_for_port,
    write_config,
)
from tests.net import free_port

ADMIN_USERNAME = "iot-admin"


class ManagedBroker:
    """Mosquitto with dynamic security on a free port; stop/start keeps the port. With
    `tls`, also a TLS listener on another free port, its certificates in `certs/`."""

    def __init__(self, directory: Path, *, tls: bool = False) -> None:
        certificates = CertificateFiles(directory / "certs") if tls else None
        tls_port = free_port() if tls else None
        self.layout = BrokerLayout(directory, free_port(), tls_port, certificates)
        self.admin_username = ADMIN_USERNAME
        self.admin_password = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.layout.port

    @property
    def tls_port(self) -> int:
        assert self.layout.tls_port is not None, "this broker has no TLS listener"
        return self.layout.tls_port

    @property
    def certificates(self) -> CertificateFiles:
        assert self.layout.certificates is not None, "this broker has no TLS listener"
        return self.layout.certificates

    def start(self) -> None:
        if self.layout.certificates is not None:
            ensure_certificates(self.layout.certificates.directory)
        write_config(self.layout)
        init_dynsec(self.layout, self.admin_username, self.admin_password)
        self.process = subprocess.Popen(
            mosquitto_command(self.layout), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.host, self.port)
        if self.layout.tls_port is not None:
            wait_for_port(self.host, self.layout.tls_port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, *, forget_dynsec: bool = False) -> None:
        """Stop and start again; with forget_dynsec, as if its dynsec state was lost."""
        self.stop()
        if forget_dynsec:
            self.layout.dynsec.unlink()
        self.start()
