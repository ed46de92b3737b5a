"""Fetch and verify the RDS CA bundle the images ship at /opt/aipp/certs/rds-global-bundle.pem.

    python -m tools.images.rds_ca fetch  [--sha256 HEX] [--dest PATH]   # download, verify, write
    python -m tools.images.rds_ca verify PATH [--sha256 HEX]            # verify a file you have

AWS publishes the bundle at `URL` (HTTPS; the server's certificate is checked against the
machine's trust store). What is written must also look like that bundle, certificate by
certificate: PEM certificates only, every one a CA of "Amazon Web Services, Inc." / "Amazon RDS",
every one signed by a certificate of the bundle (roots by themselves), at least one valid today.
`--sha256` (or RDS_CA_BUNDLE_SHA256) additionally pins the exact file. Nothing is written unless
all of that holds, and the destination is replaced atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
DEST = Path(__file__).resolve().parents[2] / "worker_images" / "certs" / "rds-global-bundle.pem"
ORGANIZATION = "Amazon Web Services, Inc."
UNIT = "Amazon RDS"
MAX_BYTES = 2 * 1024 * 1024
PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?"
)


class BundleError(Exception):
    """The bundle is not what AWS publishes; the message says why, in one line."""


@dataclass(frozen=True)
class Bundle:
    sha256: str
    certificates: int
    roots: int
    valid_now: int


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def verify(data: bytes, *, sha256: str | None = None, now: datetime | None = None) -> Bundle:
    """Check `data` is an RDS CA bundle; raise BundleError naming the first thing that is not."""
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256.lower():
        raise BundleError(f"sha256 is {digest}, expected {sha256.lower()}")
    if not data.strip():
        raise BundleError("the file is empty")
    leftover = PEM_BLOCK.sub(b"", data).strip()
    if leftover:
        raise BundleError(f"the file holds more than PEM certificates: {leftover[:40]!r}...")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise BundleError(f"a certificate does not parse: {exc}") from exc
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for cert in certs:
        by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)

    now = now or datetime.now(UTC)
    roots = valid = 0
    for cert in certs:
        cn = _attribute(cert.subject, NameOID.COMMON_NAME)
        org = _attribute(cert.subject, NameOID.ORGANIZATION_NAME)
        unit = _attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if org != ORGANIZATION or unit != UNIT:
            raise BundleError(f"{cn!r} is not an {UNIT} certificate (O={org!r}, OU={unit!r})")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise BundleError(f"{cn!r} is not a CA certificate")
        issuers = by_subject.get(cert.issuer.public_bytes(), [])
        if not any(_signed_by(cert, issuer) for issuer in issuers):
            raise BundleError(f"{cn!r} is not signed by any certificate of the bundle")
        roots += cert.issuer == cert.subject
        valid += cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    if roots == 0:
        raise BundleError("the bundle has no root certificate")
    if valid == 0:
        raise BundleError("no certificate of the bundle is valid today")
    return Bundle(sha256=digest, certificates=len(certs), roots=roots, valid_now=valid)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def download(url: str = URL, timeout: float = 20) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "aipp-images"})  # noqa: S310 - a fixed https URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data: bytes = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BundleError(f"cannot download {url}: {reason}") from exc
    if len(data) > MAX_BYTES:
        raise BundleError(f"{url} sent more than {MAX_BYTES} bytes")
    return data


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe(bundle: Bundle, where: object) -> str:
    return (
        f"{where}: RDS CA bundle OK: {bundle.certificates} CA certificates "
        f"({bundle.roots} roots, {bundle.valid_now} valid today), sha256 {bundle.sha256}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images.rds_ca", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download, verify and write the bundle")
    fetch.add_argument("--url", default=URL)
    fetch.add_argument("--dest", type=Path, default=DEST)
    check = sub.add_parser("verify", help="verify a bundle file")
    check.add_argument("path", type=Path)
    for p in (fetch, check):
        p.add_argument("--sha256", default=os.environ.get("RDS_CA_BUNDLE_SHA256") or None)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            data = download(args.url)
            bundle = verify(data, sha256=args.sha256)
            write_atomically(args.dest, data)
            print(_describe(bundle, args.dest))
        else:
            try:
                data = args.path.read_bytes()
            except OSError as exc:
                raise BundleError(f"cannot read {args.path}: {exc.strerror}") from exc
            print(_describe(verify(data, sha256=args.sha256), args.path))
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
