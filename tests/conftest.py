"""Fixtures that start real parts: upstream services, TLS material, baton processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract_services import orders_cassettes  # noqa: F401  (session fixture)
from tests.processes import BatonProcess, TLSFiles, Upstream, start_baton, start_upstream

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    # Keep tests away from the user's own redaction key and mitmproxy CA:
    # every process the tests start inherits these.
    base = Path(config.rootpath) / ".pytest_cache" / "baton-home"
    base.mkdir(parents=True, exist_ok=True)
    os.environ["BATON_REDACTION_KEY_FILE"] = str(base / "redaction.key")
    os.environ.pop("BATON_REDACTION_KEY", None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mitmproxy configuration directory (and CA) of the test session's own."""
    return tmp_path_factory.mktemp("mitmproxy-conf")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, made with trustme."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture(scope="module")
def httpbin() -> Iterator[Upstream]:
    """httpbin (the real Flask app) under hypercorn, plain HTTP."""
    upstream = start_upstream("httpbin")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def httpbin_tls(tls_files: TLSFiles) -> Iterator[Upstream]:
    """httpbin over TLS, speaking HTTP/2 to clients that offer it."""
    upstream = start_upstream("httpbin", tls_files)
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def echo() -> Iterator[Upstream]:
    """The tests' own echo service (sequence numbers, slow and large answers)."""
    upstream = start_upstream("echo")
    yield upstream
    upstream.stop()


@pytest.fixture
def baton(mitm_confdir: Path) -> Iterator[Callable[..., BatonProcess]]:
    """Start ``baton`` subprocesses; each is stopped when the test ends."""
    started: list[BatonProcess] = []

    def start(*args: str, **kwargs: object) -> BatonProcess:
        process = start_baton(
            [*args, "--set", f"confdir={mitm_confdir}"]
            if args and args[0] == "record"
            else list(args),
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()
