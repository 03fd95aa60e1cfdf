"""The RPC client skips TLS set-up for plain-HTTP URLs (loading the CA bundle cost ~0.1 s of CPU per client,
node/client.py) but still verifies an https node: a server whose certificate no CA signed is refused."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.client import Client, NodeUnreachable

pytestmark = pytest.mark.node


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """A TLS listener on a free port that records how each handshake ended (bounded: stops with the test)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    outcomes: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True):
                    outcomes.append("handshake completed")
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(f"handshake failed: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_an_https_node_with_an_unverifiable_certificate_is_refused(tls_server: tuple[int, list[str]]) -> None:
    port, outcomes = tls_server
    with Client(f"https://127.0.0.1:{port}", timeout=5) as client, \
            pytest.raises(NodeUnreachable, match=r"(?i)certificate"):
        client.status()
    # The server thread records the handshake's end after the client gave up on it: wait for it, bounded.
    deadline = time.monotonic() + 10
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcomes and outcomes[0].startswith("handshake failed"), outcomes
