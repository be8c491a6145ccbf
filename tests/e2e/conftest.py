"""Fixtures for Ferry's end-to-end tests.

Each test module gets its own `ferry serve` process on a fresh data dir
(`server`); tests that stop or restart the server use `fresh_server`, which
is private to the test. Clients are plain boto3 with default checksum
settings, path-style addressing and no retries.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ferry_server import Clients, FerryServer  # noqa: E402
from s3util import unique_bucket  # noqa: E402


def pytest_configure(config):
    # Keep the developer's ~/.aws and AWS_* variables out of the clients, so
    # every client runs with boto3's defaults.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = FerryServer(tmp_path_factory.mktemp("ferry"))
    srv.start()
    yield srv
    if srv.running:
        srv.stop()
    else:
        srv.kill()


@pytest.fixture
def fresh_server(tmp_path):
    """A server of this test's own, for tests that stop or restart it."""
    srv = FerryServer(tmp_path / "ferry")
    srv.start()
    yield srv
    if srv.running:
        srv.stop()
    else:
        srv.kill()


@pytest.fixture(scope="module")
def clients(server):
    return Clients(server)


@pytest.fixture(scope="module")
def s3(clients):
    """Admin client, boto3 defaults (over http: checksum header, signed payload)."""
    return clients.admin()


@pytest.fixture(scope="module")
def s3_chunked(clients):
    """Admin client whose PutObject uses aws-chunked with a trailing checksum,
    as boto3 does over HTTPS."""
    return clients.admin(aws_chunked=True)


@pytest.fixture(params=["header", "aws-chunked"])
def put_client(request, s3, s3_chunked):
    """Parametrises a test over both ways boto3 uploads a body."""
    return s3 if request.param == "header" else s3_chunked


@pytest.fixture
def bucket(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # On a failure, attach the tail of the server's stderr to the report.
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("server", "fresh_server"):
            srv = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(srv, FerryServer):
                report.sections.append((f"ferry stderr ({name})", srv.stderr_tail(2000)))
