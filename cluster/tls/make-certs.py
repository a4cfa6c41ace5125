"""Make the certificates of a Dask cluster that talks TLS only.

One certificate authority (CA) for the cluster, and a certificate and key for
the scheduler, the workers and the client, each signed by that CA. Every party
trusts the CA and shows its own certificate (mutual TLS), so only holders of a
certificate from this CA can join the cluster or submit work.

Usage::

    python cluster/tls/make-certs.py cluster/tls/certs
    python cluster/tls/make-certs.py certs --host scheduler.example.org --host 10.0.0.5

Writes into the folder (made if needed):

    ca.pem                           the CA certificate: give it to every party
    ca-key.pem                       the CA's key: keep it private; it signs more
    scheduler.pem, scheduler-key.pem
    worker.pem,    worker-key.pem
    client.pem,    client-key.pem

The certificates name 127.0.0.1, ::1 and localhost and every ``--host`` as
subject alternative names; they are valid for ``--days`` (default 365). Keys are
ECDSA P-256, written readable by their owner only. Needs ``cryptography``
(``pip install 'segpipe[cluster]'``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("scheduler", "worker", "client")
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "segpipe cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_ca(days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("segpipe cluster CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    role: str,
    hosts: list[str],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for ``role``, signed by the CA, usable as TLS server and client
    (Dask schedulers and workers both listen and connect)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"segpipe {role}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes, private: bool) -> None:
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(folder: Path, hosts: list[str], days: int = 365, force: bool = False) -> list[Path]:
    """Write the CA and the scheduler, worker and client certificates into ``folder``."""
    names = ["ca.pem", "ca-key.pem"] + [f"{r}{s}" for r in ROLES for s in (".pem", "-key.pem")]
    existing = [folder / n for n in names if (folder / n).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{existing[0]} already exists; choose an empty folder or pass --force to replace "
            f"the certificates (clients and workers with the old ones can no longer connect)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    all_hosts = list(dict.fromkeys([*LOCAL_HOSTS, *hosts]))
    ca_key, ca_cert = make_ca(days)
    _write(folder / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(folder / "ca-key.pem", _key_pem(ca_key), private=True)
    for role in ROLES:
        key, cert = make_leaf(role, all_hosts, ca_key, ca_cert, days)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        _write(folder / f"{role}.pem", pem, private=False)
        _write(folder / f"{role}-key.pem", _key_pem(key), private=True)
    return [folder / n for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a CA and the scheduler, worker and client certificates of a TLS "
        "Dask cluster."
    )
    parser.add_argument("folder", type=Path, help="where to write the certificates and keys")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="another name or IP address of the scheduler or workers (repeatable)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    parser.add_argument("--force", action="store_true", help="replace certificates that exist")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days must be at least 1; got {args.days}")
    try:
        written = make_certs(args.folder, args.host, args.days, args.force)
    except FileExistsError as error:
        print(f"make-certs: error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
