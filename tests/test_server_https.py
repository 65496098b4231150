"""``reftrack server --ssl-certfile/--ssl-keyfile``: HTTPS end to end, with a private CA.

A throwaway CA (made here with ``cryptography``, no network) signs a certificate for
127.0.0.1 and ``localhost``; a real ``python -m reftrack server`` process serves it. The
Python client and the CLI work over HTTPS when they trust that CA (``REFTRACK_CA_BUNDLE`` or
``SSL_CERT_FILE``); a client that does not trust it stops at once with a reftrack error that
says what to set; plain ``http://`` to the HTTPS port gets nothing; a CA bundle that cannot be
loaded is a usage error naming the variable and the path."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509  # a [test] dependency: missing, the module fails, never skips
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from server_fixtures import ServerTLS, TeamServer, start_server
from typer.testing import CliRunner

import reftrack
from reftrack.cli import app
from reftrack.errors import BackendError, UsageError
from reftrack.registry import remote_http
from reftrack.registry.remote import RemoteRegistry

TLS_ENV = ("REFTRACK_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


# -- certificates -------------------------------------------------------------------------------


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(directory: Path, common: str) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common)).issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{common}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(key, cert, path)


def make_server_tls(directory: Path, ca: CA) -> ServerTLS:
    """A certificate for 127.0.0.1 (IP SAN) and ``localhost``, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("reftrack test server")).issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    certfile, keyfile = directory / "server.pem", directory / "server-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return ServerTLS(certfile, keyfile, ca.path)


# -- fixtures -------------------------------------------------------------------------------------


@dataclass
class Secure:
    server: TeamServer
    tls: ServerTLS
    other_ca: Path  # a CA that did not sign the server's certificate
    token: str
    port: int


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    directory = tmp_path_factory.mktemp("https-server")
    tls = make_server_tls(directory, make_ca(directory, "reftrack-test-ca"))
    other = make_ca(directory, "some-other-ca")
    server = start_server(directory / "server", tls=tls)
    try:
        team = server.team()
        team.add_user("alice", is_admin=True)
        token = team.create_token("alice", "tests")[1]
        port = int(server.url.rsplit(":", 1)[1])
        yield Secure(server, tls, other.path, token, port)
    finally:
        server.stop()


@pytest.fixture
def env(secure: Secure, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The client's environment: the HTTPS server, alice's token, and no CA setting yet."""
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)
    values = {"REFTRACK_REGISTRY": secure.server.url, "REFTRACK_TOKEN": secure.token}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The client's waits before a retry (none are actually waited)."""
    seen: list[int] = []
    monkeypatch.setattr(remote_http.Transport, "_pause", staticmethod(seen.append))
    return seen


def _cli(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


# -- a client that trusts the CA ----------------------------------------------------------------


@pytest.mark.parametrize("variable", ["REFTRACK_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_python_api_works_over_https_trusting_the_private_ca(
        secure: Secure, env: dict[str, str], variable: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, str(secure.tls.cafile))
    data = tmp_path / "data.txt"
    data.write_text("over tls\n")
    project = f"tls-{variable.lower().replace('_', '-')}"
    with reftrack.init(project=project, id="r0") as run:
        art = reftrack.Artifact("ds", type="dataset")
        art.add_reference(str(data))
        run.log_artifact(art, aliases=["best"])
        run.log({"acc": 0.5})
    api = reftrack.Api()
    registry = api._ctx.registry
    assert isinstance(registry, RemoteRegistry) and registry.url == secure.server.url
    got = api.artifact(f"{project}/ds:best")
    assert got.version == "v0" and list(got.manifest.entries) == ["data.txt"]
    assert got.manifest.entries["data.txt"].size == len("over tls\n")
    report = got.verify()
    assert report.passed and report.results_stored
    # what the server stored, read straight from its database
    stored = secure.server.registry().run(project, "r0")
    assert stored.summary == {"acc": 0.5} and stored.user == "alice"
    # the certificate also names localhost
    by_name = RemoteRegistry(f"https://localhost:{secure.port}", secure.token)
    try:
        assert project in by_name.projects()
    finally:
        by_name.close()


def test_the_cli_works_over_https(secure: Secure, env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("a")
    env = {**env, "REFTRACK_CA_BUNDLE": str(secure.tls.cafile)}
    logged = _cli(env, "log", str(tmp_path / "dir"), "-p", "tls-cli", "-n", "files", "-a",
                  "gold")
    assert logged.exit_code == 0, logged.output
    assert "logged tls-cli/files:v0" in logged.output
    listing = _cli(env, "ls", "tls-cli", "--json")
    assert listing.exit_code == 0, listing.output
    assert [a["name"] for a in json.loads(listing.output)] == ["files"]
    shown = _cli(env, "show", "tls-cli/files:gold")
    assert shown.exit_code == 0 and "a.txt" in shown.output
    assert secure.server.registry().resolve("tls-cli", "files", "gold").index == 0


# -- a client that does not ---------------------------------------------------------------------


@pytest.mark.parametrize("trust", ["default", "other-ca"])
def test_a_client_that_does_not_trust_the_ca_stops_with_a_clear_error(
        secure: Secure, env: dict[str, str], trust: str, pauses: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if trust == "other-ca":
        monkeypatch.setenv("REFTRACK_CA_BUNDLE", str(secure.other_ca))
    registry = RemoteRegistry(secure.server.url, secure.token)
    try:
        with pytest.raises(BackendError) as caught:
            registry.projects()
        with pytest.raises(BackendError, match="could not be verified"):
            registry.resolve("p", "a")
    finally:
        registry.close()
    message = str(caught.value)
    assert f"the registry server {secure.server.url} presented a TLS certificate" in message
    assert "could not be verified" in message
    assert "set REFTRACK_CA_BUNDLE to the path of that authority's certificate" in message
    expected_trust = (f"REFTRACK_CA_BUNDLE={secure.other_ca}" if trust == "other-ca"
                      else "the default CA certificates")
    assert f"trusting {expected_trust}" in message
    assert secure.token not in message
    assert caught.value.exit_code == 3
    assert pauses == []  # not retried: repeating cannot help


def test_the_cli_without_the_ca_exits_3_saying_what_to_set(secure: Secure,
                                                            env: dict[str, str],
                                                            pauses: list[int]) -> None:
    result = _cli(env, "ls", "anything")
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "TLS certificate" in text and "REFTRACK_CA_BUNDLE" in text
    assert "Traceback" not in result.output and pauses == []


def test_the_download_path_also_stops_at_an_untrusted_certificate(
        secure: Secure, env: dict[str, str], pauses: list[int], tmp_path: Path) -> None:
    transport = remote_http.Transport(secure.server.url, secure.token,
                                      location=secure.server.url)
    try:
        with (tmp_path / "sink.bin").open("w+b") as sink, \
                pytest.raises(BackendError, match="could not be verified"):
            transport.download("/projects/p/versions/1/manifest", sink)
    finally:
        transport.close()
    assert pauses == []


# -- plain HTTP to the HTTPS port ----------------------------------------------------------------


def test_plain_http_to_the_https_port_gets_nothing(secure: Secure, env: dict[str, str],
                                                   pauses: list[int]) -> None:
    plain = f"http://127.0.0.1:{secure.port}"
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/healthz", timeout=5)
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/api/v1/whoami", headers={"Authorization": f"Bearer {secure.token}"},
                  timeout=5)
    registry = RemoteRegistry(plain, secure.token)
    try:
        with pytest.raises(BackendError, match="cannot reach the registry server") as caught:
            registry.projects()
    finally:
        registry.close()
    assert secure.token not in str(caught.value)
    # ... and the server still serves HTTPS
    with secure.server.client(secure.token) as client:
        assert client.get("/api/v1/whoami").json()["user"] == "alice"


# -- the CA bundle setting ------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["REFTRACK_CA_BUNDLE", "SSL_CERT_FILE"])
@pytest.mark.parametrize("kind", ["missing", "directory", "not-pem"])
def test_a_ca_bundle_that_cannot_be_loaded_is_a_usage_error(
        variable: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)
    path = {"missing": tmp_path / "nowhere.pem", "directory": tmp_path,
            "not-pem": tmp_path / "garbage.pem"}[kind]
    if kind == "not-pem":
        path.write_text("this is not a certificate\n")
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(UsageError) as caught:
        RemoteRegistry("https://reftrack.example")
    message = str(caught.value)
    assert message.startswith(f"{variable}={path}: cannot load CA certificates from it")
    assert "PEM file" in message
    result = _cli({variable: str(path), "REFTRACK_REGISTRY": "https://reftrack.example"},
                  "ls")
    assert result.exit_code == 2 and f"{variable}=" in result.output
    assert "Traceback" not in result.output


def test_reftrack_ca_bundle_wins_over_ssl_cert_file(secure: Secure, env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(secure.other_ca))
    monkeypatch.setenv("REFTRACK_CA_BUNDLE", str(secure.tls.cafile))
    registry = RemoteRegistry(secure.server.url, secure.token)
    try:
        assert isinstance(registry.projects(), list)
    finally:
        registry.close()
    monkeypatch.delenv("REFTRACK_CA_BUNDLE")
    registry = RemoteRegistry(secure.server.url, secure.token)
    try:
        with pytest.raises(BackendError, match=f"trusting SSL_CERT_FILE={secure.other_ca}"):
            registry.projects()
    finally:
        registry.close()


# -- the server's own TLS options ------------------------------------------------------------------


def test_the_server_needs_both_tls_files(tmp_path: Path) -> None:
    for args in (("--ssl-keyfile", "k.pem"), ("--ssl-certfile", "c.pem")):
        result = _cli({}, "server", "--registry", str(tmp_path / "r.db"), "--host",
                      "127.0.0.1", "--port", "1", *args)
        assert result.exit_code == 2, result.output
        assert "give both --ssl-certfile and --ssl-keyfile" in " ".join(result.output.split())


def test_unusable_tls_files_are_a_usage_error_before_serving(tmp_path: Path) -> None:
    for sub in ("good", "other"):
        (tmp_path / sub).mkdir()
    tls = make_server_tls(tmp_path / "good", make_ca(tmp_path / "good", "test-ca"))
    other = make_server_tls(tmp_path / "other", make_ca(tmp_path / "other", "other-ca"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    for cert, key, needle in (
            (str(tmp_path / "missing.pem"), tls.keyfile, "No such file"),
            (str(tmp_path / "junk.pem"), tls.keyfile, "cannot serve HTTPS"),
            (tls.certfile, other.keyfile, "cannot serve HTTPS")):  # a key of another cert
        result = _cli({}, "server", "--registry", str(tmp_path / "r.db"), "--host",
                      "127.0.0.1", "--port", "1", "--ssl-certfile", str(cert),
                      "--ssl-keyfile", str(key))
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and needle in text and "private key" in text, text
        assert result.exception is None or isinstance(result.exception, SystemExit)
