"""Key files: one JSON document per key, mode 0600, optionally sealed with a passphrase.

Sealing uses scrypt (n=2^15, r=8, p=1) to derive a 256-bit key and AES-256-GCM over the seed, with the
public key as associated data, so a wrong passphrase and a tampered file are both detected. Loading refuses
scrypt parameters below a floor (n >= 2^15, r >= 8, p >= 1) or above a ceiling, so a file cannot be weakened
to a cheap KDF behind its owner's back; tests that need a fast KDF lower the floor explicitly (`min_kdf_n`). Files are
written atomically (temporary file, fsync, rename) and refused on load when group or others can read them,
as ssh does with private keys.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.address import encode_address
from core.errors import KeyFileError
from core.fsio import write_atomic
from core.keys import PrivateKey

FORMAT_VERSION = 1
SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1
# The weakest scrypt cost a key file may name (load and save); the ceilings bound the work a file can demand.
MIN_SCRYPT_N = SCRYPT_N
MIN_SCRYPT_R = SCRYPT_R
MAX_SCRYPT_N = 1 << 20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def save_key(path: str | os.PathLike[str], key: PrivateKey, passphrase: str | None = None,
             *, overwrite: bool = False, kdf_n: int = SCRYPT_N, min_kdf_n: int = MIN_SCRYPT_N) -> None:
    """Write `key` to `path` (mode 0600); with a passphrase the seed is encrypted.

    `kdf_n` below `min_kdf_n` is refused: a test that wants a fast KDF lowers both explicitly.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    doc: dict[str, Any] = {
        "inferchain_key": FORMAT_VERSION,
        "type": "ed25519",
        "public_key": key.public_key.hex(),
        "address": encode_address(key.address),
    }
    if passphrase is None:
        doc["encryption"] = "none"
        doc["seed"] = key.seed.hex()
    else:
        if not passphrase:
            raise KeyFileError("an empty passphrase is not allowed; omit it for an unencrypted key")
        validate_kdf_params(kdf_n, SCRYPT_R, SCRYPT_P, min_kdf_n, what=str(path))
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_kdf(passphrase, salt, kdf_n, SCRYPT_R, SCRYPT_P)).encrypt(
            nonce, key.seed, bytes(key.public_key))
        doc["encryption"] = "scrypt-aes256gcm"
        doc["kdf"] = {"n": kdf_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()}
        doc["nonce"] = nonce.hex()
        doc["ciphertext"] = sealed.hex()
    write_private_file(path, (json.dumps(doc, indent=2) + "\n").encode())


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write `data` to `path` with mode 0600, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    return _read_doc(Path(path)).get("encryption") != "none"


def validate_kdf_params(n: int, r: int, p: int, min_n: int = MIN_SCRYPT_N, *, what: str = "key file") -> None:
    """Raise KeyFileError unless scrypt (n, r, p) is at least the floor and at most the ceiling."""
    if n < 2 or n & (n - 1):
        raise KeyFileError(f"{what}: scrypt n={n} is not a power of two")
    if n < min_n or r < MIN_SCRYPT_R or p < 1:
        raise KeyFileError(f"{what}: scrypt parameters n={n}, r={r}, p={p} are below the floor "
                           f"n={min_n}, r={MIN_SCRYPT_R}, p=1 (a weakened key file)")
    if n > MAX_SCRYPT_N or r > MAX_SCRYPT_R or p > MAX_SCRYPT_P:
        raise KeyFileError(f"{what}: scrypt parameters n={n}, r={r}, p={p} are above the ceiling "
                           f"n={MAX_SCRYPT_N}, r={MAX_SCRYPT_R}, p={MAX_SCRYPT_P}")


def load_key(path: str | os.PathLike[str], passphrase: str | None = None, *,
             min_kdf_n: int = MIN_SCRYPT_N) -> PrivateKey:
    """Read a key file; every failure is a KeyFileError with a one-line reason.

    A sealed file whose scrypt cost is below the floor (`min_kdf_n`, r >= 8, p >= 1) is refused before the
    passphrase is tried.
    """
    path = Path(path)
    doc = _read_doc(path)
    encryption = doc.get("encryption")
    try:
        if encryption == "none":
            seed = bytes.fromhex(doc["seed"])
        elif encryption == "scrypt-aes256gcm":
            if passphrase is None:
                raise KeyFileError(f"{path}: key is encrypted; a passphrase is required")
            kdf = doc["kdf"]
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            validate_kdf_params(n, r, p, min_kdf_n, what=str(path))
            public = bytes.fromhex(doc["public_key"])
            try:
                seed = AESGCM(_kdf(passphrase, bytes.fromhex(kdf["salt"]), n, r, p)).decrypt(
                    bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["ciphertext"]), public)
            except InvalidTag:
                raise KeyFileError(f"{path}: wrong passphrase (or the file was altered)") from None
        else:
            raise KeyFileError(f"{path}: unknown encryption {encryption!r}")
        key = PrivateKey(seed)
    except KeyFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyFileError(f"{path}: malformed key file ({type(exc).__name__}: {exc})") from None
    if key.public_key.hex() != doc.get("public_key"):
        raise KeyFileError(f"{path}: seed does not match the recorded public key")
    return key


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; run: chmod 600 {path}")
    try:
        raw = path.read_bytes()
        if len(raw) > 64 * 1024:
            raise KeyFileError(f"{path}: file too large to be a key file")
        doc = json.loads(raw)
    except KeyFileError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"{path}: not a valid key file (truncated or corrupt: {type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("inferchain_key") != FORMAT_VERSION or doc.get("type") != "ed25519":
        raise KeyFileError(f"{path}: not an Inferchain ed25519 key file")
    return doc
