"""devstack.certs: the development CA and server certificate, checked by a real TLS
handshake in memory (Python's default client context: hostname and X.509 strict checks)."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from devstack.certs import (
    RENEW_BEFORE,
    CertificateFiles,
    default_names,
    ensure_certificates,
    subject_alternative_names,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def contents(files: CertificateFiles) -> dict[str, bytes]:
    paths = (files.ca_cert, files.ca_key, files.server_cert, files.server_key)
    return {path.name: path.read_bytes() for path in paths}


def handshake(files: CertificateFiles, server_hostname: str) -> None:
    """A TLS handshake between the server's files and a client trusting only the CA."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.server_cert, files.server_key)
    client = ssl.create_default_context(cafile=files.ca_cert)
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError(f"handshake did not finish: {done}")


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1"])
def test_ensure_certificates_server_verified_by_ca(tmp_path: Path, name: str) -> None:
    files = ensure_certificates(tmp_path / "certs")
    handshake(files, name)


def test_ensure_certificates_names_loopback_and_host_name(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs")
    names = subject_alternative_names(load(files.server_cert))
    assert {"localhost", "127.0.0.1", "::1"} <= names
    assert set(default_names()) <= names


def test_ensure_certificates_other_name_refused(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", ("localhost",))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(files, "broker.example.com")


def test_ensure_certificates_keys_owner_only(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_cert.stat().st_mode) == 0o644
    assert not list(files.directory.glob(".*partial"))


def test_ensure_certificates_existing_directory_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    directory.mkdir(mode=0o755)
    ensure_certificates(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_ensure_certificates_valid_files_reused(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", now=NOW)
    before = contents(files)
    ensure_certificates(tmp_path / "certs", now=NOW + dt.timedelta(days=300))
    assert contents(files) == before


def test_ensure_certificates_server_near_expiry_reissued_same_ca(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", now=NOW)
    before = contents(files)
    end = load(files.server_cert).not_valid_after_utc
    ensure_certificates(tmp_path / "certs", now=end - RENEW_BEFORE + dt.timedelta(seconds=1))
    after = contents(files)
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    assert after["server.crt"] != before["server.crt"]
    assert after["server.key"] != before["server.key"]
    assert load(files.server_cert).not_valid_after_utc > end


def test_ensure_certificates_expired_ca_reissues_both(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", now=NOW)
    before = contents(files)
    later = load(files.ca_cert).not_valid_after_utc + dt.timedelta(days=1)
    ensure_certificates(tmp_path / "certs", now=later)
    after = contents(files)
    assert all(after[name] != before[name] for name in before)
    load(files.server_cert).verify_directly_issued_by(load(files.ca_cert))


def test_ensure_certificates_server_never_outlives_ca(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", now=NOW)
    ca_end = load(files.ca_cert).not_valid_after_utc
    # Shortly before the CA's renewal window: a new server certificate ends with the CA.
    (files.server_cert).unlink()
    ensure_certificates(tmp_path / "certs", now=ca_end - RENEW_BEFORE - dt.timedelta(days=2))
    assert load(files.server_cert).not_valid_after_utc <= ca_end


def test_ensure_certificates_missing_or_broken_files_reissued(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs")
    files.server_key.unlink()
    ensure_certificates(tmp_path / "certs")
    handshake(files, "localhost")
    files.server_key.write_bytes(b"not a key")
    ensure_certificates(tmp_path / "certs")
    handshake(files, "localhost")
    before = files.server_cert.read_bytes()
    files.ca_key.write_bytes(b"")
    ensure_certificates(tmp_path / "certs")
    # A new CA: the old server certificate is not its own, so it is replaced too.
    assert files.server_cert.read_bytes() != before
    handshake(files, "localhost")


def test_ensure_certificates_new_name_reissues_server_only(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "certs", ("localhost",))
    before = contents(files)
    ensure_certificates(tmp_path / "certs", ("localhost", "broker.example.com"))
    after = contents(files)
    assert after["ca.crt"] == before["ca.crt"]
    assert after["server.crt"] != before["server.crt"]
    handshake(files, "broker.example.com")


def test_devstack_certs_command_writes_named_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.__main__ import main

    argv = ["certs", "--dir", str(tmp_path / "c"), "--name", "mqtt.example.com", "--name", "::1"]
    assert main(argv) == 0
    files = CertificateFiles(tmp_path / "c")
    assert subject_alternative_names(load(files.server_cert)) == {"mqtt.example.com", "::1"}
    assert str(files.ca_cert) in capsys.readouterr().out
    handshake(files, "mqtt.example.com")
