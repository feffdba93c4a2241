"""The local CA of `torua up --tls` (torua.local_tls) and the gateway's TLS settings."""

from __future__ import annotations

import datetime
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from torua.config import ConfigError, GatewayConfig
from torua.local_tls import ensure_local_tls


def names(path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in san}


def test_a_ca_and_a_server_certificate_it_signed_for_every_host(tmp_path):
    tls = ensure_local_tls(tmp_path, ["0.0.0.0", "box.example"])
    assert names(tls.cert) == {"localhost", "127.0.0.1", "::1", "box.example"}  # 0.0.0.0 names no host
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.issuer == ca.subject
    for private in (tls.key, tls.ca.parent / "ca-key.pem"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.ca.parent.stat().st_mode) == 0o700
    # a TLS server with it is trusted by a client that trusts the CA, by name and by address
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls.cert, tls.key)
    client = ssl.create_default_context(cafile=str(tls.ca))
    for host in ("127.0.0.1", "localhost", "box.example"):
        handshake(server, client, host)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(server, client, "other.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, ssl.create_default_context(), "127.0.0.1")  # without the CA


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A TLS handshake in memory; raises what the client's verification raises."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname=host)
    done = {"cli": False, "srv": False}
    for _ in range(10):
        for name, side in (("cli", cli), ("srv", srv)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    if name == "cli":
                        raise
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_the_files_are_kept_and_the_server_certificate_issued_again_only_when_it_must(tmp_path):
    first = ensure_local_tls(tmp_path, ["127.0.0.1"])
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    again = ensure_local_tls(tmp_path, ["127.0.0.1"])
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == (ca, cert)
    other_host = ensure_local_tls(tmp_path, ["10.1.2.3"])
    assert other_host.ca.read_bytes() == ca and other_host.cert.read_bytes() != cert
    assert "10.1.2.3" in names(other_host.cert)
    issued = other_host.cert.read_bytes()
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=900)  # past its end
    renewed = ensure_local_tls(tmp_path, ["10.1.2.3"], now=later)
    assert renewed.ca.read_bytes() == ca and renewed.cert.read_bytes() != issued


def test_the_gateway_takes_a_certificate_and_its_key_together(tmp_path):
    tls = ensure_local_tls(tmp_path, [])
    GatewayConfig(tls_cert=str(tls.cert), tls_key=str(tls.key)).validate()
    assert GatewayConfig(tls_cert=str(tls.cert), tls_key=str(tls.key)).scheme == "https"
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        GatewayConfig(tls_cert=str(tls.cert)).validate()
    with pytest.raises(ConfigError, match="cannot be used"):
        GatewayConfig(tls_cert=str(tls.cert), tls_key=str(tls.ca)).validate()  # not its key
