"""A private rsyslogd for the tests: its own configuration, ports and output file (no system daemon).

It listens on UDP and TCP (octet counting) on one port, and on TLS (RFC 5425) on another, with a
certificate made here for 127.0.0.1, and writes each message as received (``%rawmsg%``) on a line.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def rsyslogd() -> str:
    found = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
    if found is None:
        reason = "rsyslogd is not installed (./dev test installs Debian's rsyslog)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _free_port() -> int:
    for _ in range(50):  # one port free for both TCP and UDP
        port = _port(socket.SOCK_STREAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graven test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


@dataclass
class Rsyslog:
    port: int
    tls_port: int
    output: Path
    ca: Path

    def lines(self, app_name: str, count: int, timeout: float = 20) -> list[bytes]:
        """The messages of one app name received so far, waiting until there are ``count``."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.output.read_bytes() if self.output.exists() else b""
            found = [line for line in data.splitlines() if f" {app_name} ".encode() in line[:120]]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def start_rsyslog(folder: Path) -> Iterator[Rsyslog]:
    binary = rsyslogd()
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_certificates(folder)
    port, tls_port = _free_port(), _free_port()
    output = folder / "received.log"
    conf = folder / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{folder}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="100")
input(type="imudp" address="127.0.0.1" port="{port}")
input(type="imtcp" address="127.0.0.1" port="{port}")
input(type="imtcp" address="127.0.0.1" port="{tls_port}" streamDriver.name="gtls" streamDriver.mode="1"
      streamDriver.authMode="anon")
template(name="raw" type="string" string="%rawmsg%\\n")
*.* action(type="omfile" file="{output}" template="raw" flushOnTXEnd="on" asyncWriting="off")
""")
    process = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(folder / "rsyslogd.pid")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 20
    try:
        for p in (port, tls_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        out = process.stdout.read().decode() if process.stdout else ""
                        raise RuntimeError(f"rsyslogd did not start: {out}") from None
                    time.sleep(0.05)
        yield Rsyslog(port, tls_port, output, ca)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
