"""A local certificate authority for `torua up --tls` (with `cryptography`).

On the first `torua up --tls` a data dir gets, in `secrets/tls/`:

    ca.pem          the CA certificate: what clients trust (--nats-tls-ca, curl --cacert)
    ca-key.pem      its key (0600); kept so a later start can issue a new server certificate
    server.pem      the certificate of the nats-server and the gateway, signed by the CA,
                    for localhost, 127.0.0.1, ::1, this host's name and --host
    server-key.pem  its key (0600)

Files are kept across restarts; the server certificate is issued again when it
does not name a host asked for, or has less than a day left.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from torua.secret_files import private_dir, write_file

TLS_DIR = "tls"  # under <data dir>/secrets/
CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class LocalTls:
    ca: Path
    cert: Path
    key: Path


def tls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / TLS_DIR


def ca_file(data_dir: Path) -> Path:
    """The CA certificate clients of a `torua up --tls` trust."""
    return tls_dir(data_dir) / "ca.pem"


def host_names(hosts: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names for `hosts` (IP addresses as such); 0.0.0.0 and :: name no host.

    >>> [type(n).__name__ for n in host_names(["localhost", "127.0.0.1", "0.0.0.0"])]
    ['DNSName', 'IPAddress']
    """
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h for h in hosts if h):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            continue
        if not ip.is_unspecified:
            names.append(x509.IPAddress(ip))
    return names


def ensure_local_tls(data_dir: Path, hosts: list[str], now: datetime.datetime | None = None) -> LocalTls:
    """The data dir's CA and server certificate for `hosts`, made or renewed as needed."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    private_dir(tls_dir(data_dir).parent)
    directory = private_dir(tls_dir(data_dir))
    found = LocalTls(ca_file(data_dir), directory / "server.pem", directory / "server-key.pem")
    ca_key_path = directory / "ca-key.pem"
    if not (found.ca.exists() and ca_key_path.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Torua local CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_file(ca_key_path, _key_pem(ca_key))
        write_file(found.ca, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        found.cert.unlink(missing_ok=True)
    ca_cert = x509.load_pem_x509_certificate(found.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    wanted = host_names(["localhost", "127.0.0.1", "::1", *hosts])
    if not _covers(found.cert, wanted, now):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Torua")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        write_file(found.key, _key_pem(key))
        write_file(found.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return found


def _covers(path: Path, wanted: list[x509.GeneralName], now: datetime.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return set(wanted) <= set(names) and cert.not_valid_after_utc - now > datetime.timedelta(days=1)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

