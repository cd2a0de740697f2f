"""`python -m firmware.keygen [FILE]`: a new Ed25519 firmware signing key.

With FILE, the PEM key is written there (mode 0600, an existing file is never
overwritten) for FIRMWARE_SIGNING_KEY_FILE; without, the base64 raw key is printed
for FIRMWARE_SIGNING_KEY. The public key (what devices verify with) goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.signing import Signer, private_key_pem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m firmware.keygen", description="Create an Ed25519 firmware signing key."
    )
    parser.add_argument(
        "file", nargs="?", help="write the PEM key here (0600, never overwritten); else print it"
    )
    args = parser.parse_args(argv)
    key = Ed25519PrivateKey.generate()
    if args.file:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key_pem(key))
    else:
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        print(base64.b64encode(raw).decode())
    print(f"public key: {Signer(key).public_key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
