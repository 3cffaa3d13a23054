"""Write a ``.env`` for docker-compose.yaml: every empty value of ``.env.example`` filled with a new
random secret (Fernet keys where a Fernet key is needed), the file created 0600.

    python3 scripts/generate_env.py .env

It refuses to overwrite an existing file (rotating a key is a procedure, not a new file: see the
README). Nothing is printed but the path: the secrets stay in the file. Standard library only,
so it runs before any virtualenv exists.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
# Settings that must be Fernet keys (32 url-safe base64-encoded bytes).
FERNET_KEYS = {"AIRFLOW_FERNET_KEY", "HOTCRM_TOKEN_KEY"}


def new_value(name: str) -> str:
    """A fresh secret for ``name``: URL-safe, so it can sit in a connection URI unquoted."""
    if name in FERNET_KEYS:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_hex(32)


def filled(example: str) -> str:
    """``example`` with every ``NAME=`` line (no value) given a new secret; the rest kept as it is."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not value and name.isidentifier() and not line.startswith("#"):
            line = f"{name}={new_value(name)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the filled file to the path given; exit 1 if it exists."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 scripts/generate_env.py PATH   (e.g. .env)", file=sys.stderr)
        return 2
    target = Path(argv[0])
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{target} exists: not overwritten (remove it first, or edit it)", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as out:
        out.write(filled(EXAMPLE.read_text()))
    print(f"wrote {target} (mode 0600): keep it out of version control and back it up with the databases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
