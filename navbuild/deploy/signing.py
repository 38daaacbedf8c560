"""Signed packages: an Ed25519 signature over ``status.json`` and the SHA-256 of every entry.

``navbuild package --sign KEYFILE`` adds ``signature.json`` to the package::

    {"payload": {"format": "navbuild-signature/1", "key": "ed25519:<base64 public key>",
                 "sha256": {"status.json": "<hex>", "cnn/onnx/model.onnx": "<hex>", ...}},
     "signature": "<base64 Ed25519 signature of the payload as canonical JSON>"}

The entries' xxh3 digests in ``status.json`` find corruption but are not a cryptographic hash; the
signed SHA-256 of each entry is. A project trusts a signer by listing its public key in
``[trust] keys`` of navbuild.toml (the line ``navbuild package --sign`` prints). ``check`` returns
the signer when a trusted key signed the package and its status; a package signed by a trusted key
whose signature or status does not verify is refused; one signed by another key, or not at all,
is an unsigned package. The ``cryptography`` library (extra ``sign``) does the Ed25519 work, and is
imported only here, only when a package is signed or checked against a trusted key.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from navbuild import validate
from navbuild.deploy.package_checks import SIGNATURE_ENTRY, PackageError

SIGNATURE_FORMAT = "navbuild-signature/1"
KEY_PREFIX = validate.ED25519_PREFIX


@dataclass(frozen=True)
class Signer:
    key: str  # "ed25519:<base64>"
    sha256: Mapping[str, str]  # entry name -> hex digest, as signed

    @property
    def short(self) -> str:
        return self.key[:len(KEY_PREFIX) + 12] + "..."


def public_key_problem(text: Any) -> str | None:
    """Why ``text`` is not a public key as ``[trust] keys`` lists them (None when it is)."""
    try:
        validate.ed25519_public_key(text)
    except validate.Invalid as exc:
        return exc.problem
    return None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _crypto():
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise PackageError("signed packages need the cryptography library: pip install 'navbuild[sign]'") from None
    return exceptions, serialization, ed25519


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from a PEM (PKCS#8, ``openssl genpkey -algorithm ed25519``) or OpenSSH file."""
    exceptions, serialization, ed25519 = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PackageError(f"--sign {path}: cannot read it ({exc.strerror or exc})") from None
    for load in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = load(data, password=None)
        except (ValueError, TypeError, exceptions.UnsupportedAlgorithm):
            continue
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        raise PackageError(f"--sign {path}: not an Ed25519 key (a {type(key).__name__})")
    raise PackageError(f"--sign {path}: not an unencrypted PEM or OpenSSH private key "
                       "(make one with: openssl genpkey -algorithm ed25519 -out navbuild-signing.pem)")


def public_key_text(private_key: Any) -> str:
    _, serialization, _ = _crypto()
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def signature_entry(entries: Iterable[tuple[str, bytes]], private_key: Any) -> tuple[str, bytes]:
    """``(SIGNATURE_ENTRY, bytes)`` signing every entry (status.json among them). Ed25519 signatures
    are deterministic: the same package signed twice gives the same bytes."""
    payload = {"format": SIGNATURE_FORMAT, "key": public_key_text(private_key),
               "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in entries}}
    signature = base64.b64encode(private_key.sign(canonical(payload))).decode()
    return SIGNATURE_ENTRY, json.dumps({"payload": payload, "signature": signature}, sort_keys=True,
                                       indent=2).encode() + b"\n"


def check(label: Path | str, document: Any, status_bytes: bytes, trusted: Iterable[str]) -> Signer | None:
    """The signer of a package whose ``signature.json`` is ``document`` (None: unsigned, or signed by
    a key the project does not trust). Raises PackageError for a trusted key's signature that does not
    verify, or a status.json that is not the one signed."""
    if document is None:
        return None
    payload = document.get("payload") if isinstance(document, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != SIGNATURE_FORMAT or \
            not isinstance(document.get("signature"), str) or not isinstance(payload.get("sha256"), dict):
        raise PackageError(f"{label}: {SIGNATURE_ENTRY} is not a {SIGNATURE_FORMAT} signature")
    key = payload.get("key")
    if key not in set(trusted) or public_key_problem(key):
        return None
    exceptions, _, ed25519 = _crypto()
    public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key[len(KEY_PREFIX):]))
    try:
        public.verify(base64.b64decode(document["signature"], validate=True), canonical(payload))
    except (exceptions.InvalidSignature, binascii.Error, ValueError):
        raise PackageError(f"{label}: its signature by {key[:24]}... (a trusted key) does not verify: the "
                           f"package was altered after it was signed") from None
    signer = Signer(key, {str(k): str(v) for k, v in payload["sha256"].items()})
    expect(label, signer, "status.json", hashlib.sha256(status_bytes).hexdigest())
    return signer


def expect(label: Path | str, signer: Signer, entry: str, sha256: str) -> None:
    """An entry's bytes are the ones signed."""
    if signer.sha256.get(entry) != sha256:
        raise PackageError(f"{label}: entry {entry} is not what {signer.short} signed (SHA-256 {sha256[:16]}...); "
                           f"the package was altered after it was signed")


class Sha256Reader:
    """A stream that hashes what is read through it (an entry streamed into the store)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.hasher = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.hasher.update(data)
        return data

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()
