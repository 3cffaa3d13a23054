"""Encryption of the secrets the project keeps in the CRM database, with one key management.

The key is ``HOTCRM_TOKEN_KEY`` (read by :func:`hotcrm.settings.secret`: an Airflow Variable /
secrets backend where Airflow runs, else the environment): one Fernet key, or several
comma-separated, where the **first encrypts and all decrypt**, so a key is rotated by putting
a new one in front, running ``python -m hotcrm secrets rotate`` (re-encrypts every stored
secret under the new key) and then dropping the old one.

Without ``HOTCRM_TOKEN_KEY`` an embedded default is used: a key generated once into
``<HOTCRM_DATA_DIR>/token.key`` (mode 0600), like the embedded SQLite database. It is for one
machine (the demo, a laptop); set ``HOTCRM_TOKEN_KEY`` on every host in production.

:class:`EncryptedText` is the column type of stored secrets: values are written as
``enc:v1:<Fernet token>`` and read back decrypted, so the model attribute stays plain text.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from hotcrm.settings import data_dir, secret

log = logging.getLogger(__name__)

KEY_SETTING = "HOTCRM_TOKEN_KEY"
PREFIX = "enc:v1:"
KEY_FILE_NAME = "token.key"

_ciphers: dict[str, MultiFernet] = {}
_lock = threading.Lock()
_warned: set[str] = set()


class SecretKeyError(ValueError):
    """The key cannot decrypt a stored secret, or no usable key is configured."""


def make_fernet(key: str | None) -> MultiFernet:
    """A cipher from one Fernet key or several comma-separated (the first encrypts, all
    decrypt, so keys can be rotated). The key never appears in an error."""
    if not key:
        raise ValueError(
            f"{KEY_SETTING} is not set: it encrypts stored OAuth tokens. Generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    ciphers = []
    for position, part in enumerate(p.strip() for p in key.split(",") if p.strip()):
        try:
            ciphers.append(Fernet(part.encode()))
        except (ValueError, TypeError):
            raise ValueError(
                f"{KEY_SETTING}: key #{position + 1} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(ciphers)


def key_file() -> Path:
    """Where the embedded default key lives (used only when ``HOTCRM_TOKEN_KEY`` is not set)."""
    return data_dir() / KEY_FILE_NAME


def _embedded_key() -> str:
    path = key_file()
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a unique name and linked into place: concurrent first users agree on one key.
    temporary = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.{threading.get_ident()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(Fernet.generate_key().decode() + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text(encoding="ascii").strip()


def current_key() -> str:
    """``HOTCRM_TOKEN_KEY`` (secret source, then environment), else the embedded key file."""
    key = secret(KEY_SETTING)
    if key:
        return key
    path = str(key_file())
    if path not in _warned:
        _warned.add(path)
        log.warning(
            "%s is not set: stored secrets are encrypted with the embedded key file %s (one machine only); "
            "set %s on every host in production",
            KEY_SETTING,
            path,
            KEY_SETTING,
        )
    return _embedded_key()


def cipher(key: str | None = None) -> MultiFernet:
    """The cipher of ``key`` (default: :func:`current_key`), built once per key."""
    key = key or current_key()
    found = _ciphers.get(key)
    if found is None:
        found = make_fernet(key)
        with _lock:
            _ciphers[key] = found
    return found


def is_encrypted(value: str) -> bool:
    """True for a value written by :func:`encrypt`."""
    return value.startswith(PREFIX)


def encrypt(value: str, key: str | None = None) -> str:
    """``value`` encrypted under the first key, as ``enc:v1:<token>``."""
    return PREFIX + cipher(key).encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(value: str, key: str | None = None, *, what: str = "a stored secret") -> str:
    """The plain text of an :func:`encrypt` value; SecretKeyError naming ``what`` and the fix."""
    if not is_encrypted(value):
        raise SecretKeyError(
            f"{what} is stored unencrypted: run `python -m hotcrm db upgrade` (migration 0019a encrypts it)"
        )
    try:
        return cipher(key).decrypt(value[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretKeyError(
            f"{what} cannot be decrypted with the configured {KEY_SETTING}: list the key it was stored with "
            f"after the current one ({KEY_SETTING}=new,old) and run `python -m hotcrm secrets rotate`"
        ) from None


def rotate(value: str, key: str | None = None) -> str:
    """``value`` re-encrypted under the first key (any listed key may have encrypted it)."""
    return PREFIX + cipher(key).rotate(value[len(PREFIX) :].encode("ascii")).decode("ascii")


class EncryptedText(TypeDecorator):
    """A text column holding a secret encrypted at rest (``enc:v1:<Fernet token>``)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Encrypt on the way in."""
        if value is None or is_encrypted(value):
            return value
        return encrypt(value)

    def process_result_value(self, value, dialect):
        """Decrypt on the way out."""
        if value is None:
            return None
        return decrypt(value)
