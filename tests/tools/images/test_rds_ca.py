"""The RDS CA bundle check: what passes is a bundle shaped like AWS's; anything else is refused
with one line, and nothing is written."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.images import rds_ca

NOW = datetime(2026, 10, 1, tzinfo=UTC)


def _name(cn: str, org: str = rds_ca.ORGANIZATION, unit: str = rds_ca.UNIT) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    ca: bool = True,
    days: tuple[int, int] = (-365, 3650),
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA384())
    )


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def hierarchy() -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert(_name("Amazon RDS us-east-1 Root CA ECC384 G1"), root_key)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = _cert(
        _name("Amazon RDS us-east-1 Subordinate CA ECC384 G1"), inter_key, root.subject, root_key
    )
    return root, inter, root_key


def test_a_bundle_of_rds_roots_and_intermediates_passes(hierarchy: tuple) -> None:
    root, inter, _ = hierarchy
    data = _pem(root, inter)
    bundle = rds_ca.verify(data, now=NOW)
    assert (bundle.certificates, bundle.roots, bundle.valid_now) == (2, 1, 2)
    assert bundle.sha256 == hashlib.sha256(data).hexdigest()
    assert rds_ca.verify(data, sha256=bundle.sha256.upper(), now=NOW) == bundle


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root, inter, key: b"", "the file is empty"),
        (lambda root, inter, key: b"<html>Access Denied</html>", "more than PEM certificates"),
        (lambda root, inter, key: _pem(root) + b"junk\n", "more than PEM certificates"),
        (
            lambda root, inter, key: _pem(root, inter).replace(b"MII", b"MIJ", 1),
            "does not parse",
        ),
        (lambda root, inter, key: _pem(inter), "not signed by any certificate of the bundle"),
        (
            lambda root, inter, key: _pem(
                root, _cert(_name("Amazon RDS leaf"), key, root.subject, key, ca=False)
            ),
            "is not a CA certificate",
        ),
        (
            lambda root, inter, key: _pem(
                root,
                _cert(_name("Amazon RDS evil", org="Evil Corp"), key, root.subject, key),
            ),
            "is not an Amazon RDS certificate",
        ),
        (
            # Claims the root as issuer, but is signed by a key of its own.
            lambda root, inter, key: _pem(
                root,
                _cert(
                    _name("Amazon RDS forged"),
                    key,
                    root.subject,
                    ec.generate_private_key(ec.SECP384R1()),
                ),
            ),
            "not signed by any certificate of the bundle",
        ),
        (
            lambda root, inter, key: _pem(
                _cert(_name("Amazon RDS old Root"), key, days=(-3650, -1))
            ),
            "no certificate of the bundle is valid today",
        ),
    ],
)
def test_anything_else_is_refused_with_the_reason(hierarchy: tuple, build, message: str) -> None:
    with pytest.raises(rds_ca.BundleError, match=message):
        rds_ca.verify(build(*hierarchy), now=NOW)


def test_a_pinned_checksum_must_match(hierarchy: tuple) -> None:
    root, inter, _ = hierarchy
    with pytest.raises(rds_ca.BundleError, match="expected 00"):
        rds_ca.verify(_pem(root, inter), sha256="00" * 32, now=NOW)


@pytest.fixture
def server(hierarchy: tuple) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP server whose answer the test chooses (the fetch logic, not TLS, under test)."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/global-bundle.pem", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_writes_only_a_verified_bundle(
    hierarchy: tuple, server: tuple[str, dict[str, bytes]], tmp_path: Path, capsys
) -> None:
    url, served = server
    root, inter, _ = hierarchy
    dest = tmp_path / "certs" / "rds-global-bundle.pem"

    served["body"] = b"<html>captive portal</html>"
    assert rds_ca.main(["fetch", "--url", url, "--dest", str(dest)]) == 1
    assert "more than PEM certificates" in capsys.readouterr().err
    assert not dest.exists()

    served["body"] = _pem(root, inter)
    assert rds_ca.main(["fetch", "--url", url, "--dest", str(dest)]) == 0
    assert dest.read_bytes() == served["body"]
    assert "2 CA certificates" in capsys.readouterr().out
    assert rds_ca.main(["verify", str(dest)]) == 0

    # A bad download later never replaces the good file.
    served["body"] = _pem(inter)
    assert rds_ca.main(["fetch", "--url", url, "--dest", str(dest)]) == 1
    assert dest.read_bytes() == _pem(root, inter)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rds-global-bundle.pem"]


def test_an_unreachable_host_is_one_line(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "bundle.pem"
    assert rds_ca.main(["fetch", "--url", "http://127.0.0.1:9/none.pem", "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot download http://127.0.0.1:9/none.pem")
        and err.count("\n") == 1
    )
    assert not dest.exists()
