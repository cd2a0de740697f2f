"""`python -m devstack run`: bring the platform up for development (see devstack.run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.certs import default_names, ensure_certificates
from devstack.run import CERTS_DIR, run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="start (or reuse) Redis, Mosquitto, the MongoDB stand-in, the API and the ingest "
        "worker; Ctrl-C stops",
    )
    run_parser.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="also run N simulated devices (python -m simulator), one reading/s each",
    )
    run_parser.add_argument(
        "--api",
        type=int,
        default=1,
        metavar="N",
        help="run N API processes on consecutive ports from API_PORT (any serves any subscription)",
    )
    run_parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N ingest workers in one MQTT share group (ingest-1 ... ingest-N)",
    )
    certs_parser = commands.add_parser(
        "certs",
        help="write a CA and a server certificate (ca.crt, ca.key, server.crt, server.key) "
        "into a directory, or keep them while valid and naming every host name",
    )
    certs_parser.add_argument("--dir", type=Path, default=CERTS_DIR, help="(default .data/certs)")
    certs_parser.add_argument(
        "--name",
        action="append",
        metavar="HOST",
        help="a host name or address the server certificate is for (repeat it; default: "
        "localhost, 127.0.0.1, ::1 and this machine's host name)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(simulate=args.simulate, apis=args.api, workers=args.workers)
    if args.command == "certs":
        files = ensure_certificates(args.dir, tuple(args.name) if args.name else default_names())
        print(f"CA (clients trust it): {files.ca_cert}")
        print(f"server certificate and key: {files.server_cert} {files.server_key}")
        return 0
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
