"""Database TLS against a real PostgreSQL that forces it: a throwaway cluster (initdb) with
`ssl = on`, a server certificate for `localhost` signed by a CA made here, and a pg_hba.conf that
accepts only TLS connections (as the RDS parameter group's rds.force_ssl does). The machine's
shared PostgreSQL has TLS off, so it cannot show verification."""

from __future__ import annotations

import asyncio
import datetime
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aipp.core.config import Settings
from aipp.core.db import Database, create_pool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ...conftest import free_port, wait_postgres_accepting

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parents[4]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


@dataclass(frozen=True)
class TlsPostgres:
    port: int
    ca: Path
    wrong_ca: Path

    def dsn(self, host: str = "localhost") -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres"


def _as_postgres(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    work = Path(tempfile.mkdtemp(prefix="aipp-tls-pg-"))
    data, certs = work / "data", work / "certs"
    certs.mkdir()
    ca_key, ca = _ca("aipp test CA")
    _, wrong = _ca("someone else's CA")
    server_cert, server_key = _server(ca_key, ca)
    (certs / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (certs / "wrong-ca.pem").write_bytes(wrong.public_bytes(serialization.Encoding.PEM))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(work, user.pw_uid, user.pw_gid)
    init = _as_postgres(
        [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert init.wait(120) == 0, init.stderr.read() if init.stderr else ""
    (data / "server.crt").write_bytes(server_cert)
    (data / "server.key").write_bytes(server_key)
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    if os.geteuid() == 0:
        for path in (data / "server.crt", data / "server.key", data / "pg_hba.conf"):
            os.chown(path, user.pw_uid, user.pw_gid)
    (data / "server.key").chmod(0o600)
    port = free_port()
    server = _as_postgres(
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={work}",
            "-c",
            "ssl=on",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_postgres_accepting(PG_BIN, port, server)
        yield TlsPostgres(port=port, ca=certs / "ca.pem", wrong_ca=certs / "wrong-ca.pem")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def _settings(pg: TlsPostgres, mode: str, ca: Path | None, host: str = "localhost") -> Settings:
    return Settings(
        database_url=pg.dsn(host),
        db_sslmode=mode,
        db_ssl_root_cert=str(ca) if ca else None,
        dependency_timeout_seconds=5,
    )


async def _ssl_in_use(settings: Settings) -> bool:
    db = Database(await create_pool(settings))
    try:
        return bool(
            await db.pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        )
    finally:
        await db.close()


def test_verify_full_connects_with_the_right_ca_and_host(tls_postgres: TlsPostgres) -> None:
    assert asyncio.run(_ssl_in_use(_settings(tls_postgres, "verify-full", tls_postgres.ca)))


def test_verify_full_refuses_a_certificate_from_another_ca(tls_postgres: TlsPostgres) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        asyncio.run(_ssl_in_use(_settings(tls_postgres, "verify-full", tls_postgres.wrong_ca)))


def test_verify_full_refuses_a_certificate_for_another_host(tls_postgres: TlsPostgres) -> None:
    # The certificate names `localhost`; connecting to 127.0.0.1 must not accept it.
    with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|doesn't match"):
        asyncio.run(
            _ssl_in_use(_settings(tls_postgres, "verify-full", tls_postgres.ca, host="127.0.0.1"))
        )


def test_require_encrypts_without_verifying_and_disable_is_refused(
    tls_postgres: TlsPostgres,
) -> None:
    assert asyncio.run(_ssl_in_use(_settings(tls_postgres, "require", tls_postgres.wrong_ca)))
    with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        asyncio.run(_ssl_in_use(_settings(tls_postgres, "disable", None)))


def test_the_migration_runs_over_verified_tls(tls_postgres: TlsPostgres) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
        "AIPP_DATABASE_URL": tls_postgres.dsn(),
        "AIPP_DB_SSLMODE": "verify-full",
        "AIPP_DB_SSL_ROOT_CERT": str(tls_postgres.ca),
    }
    done = subprocess.run(
        [sys.executable, "-m", "aipp.admin", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    wrong = {**env, "AIPP_DB_SSL_ROOT_CERT": str(tls_postgres.wrong_ca)}
    refused = subprocess.run(
        [sys.executable, "-m", "aipp.admin", "migrate"],
        env=wrong,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1 and "certificate verify failed" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0
