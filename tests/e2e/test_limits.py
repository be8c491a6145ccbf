"""Size limits, with a server whose `server.max_put_size` is 1 MiB."""

import pytest

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, CONFIG_TOML, FerryServer
from s3util import (
    MiB, aws_chunked_body, chunked_put, crc32_b64, md5_etag, object_exists, random_bytes, s3_error, signed_request,
)

LIMIT = MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Overrides conftest's `server` for this module only.
    srv = FerryServer(tmp_path_factory.mktemp("ferry-limits"),
                      config_text='[server]\nmax_put_size = "1MiB"\n\n' + CONFIG_TOML)
    srv.start()
    yield srv
    if srv.running:
        srv.stop()
    else:
        srv.kill()


def test_put_at_the_limit_is_accepted(put_client, s3, bucket):
    data = random_bytes(LIMIT)
    assert put_client.put_object(Bucket=bucket, Key="k", Body=data)["ETag"] == md5_etag(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize("chunked", [False, True], ids=["header", "aws-chunked"])
def test_put_over_the_limit_is_entity_too_large(clients, s3, bucket, chunked):
    # A private client: an early rejection may leave a dead pooled connection.
    with s3_error("EntityTooLarge", 400):
        clients.admin(aws_chunked=chunked).put_object(Bucket=bucket, Key="k", Body=random_bytes(LIMIT + 1))
    assert not object_exists(s3, bucket, "k")


def test_aws_chunked_put_declaring_too_much_is_entity_too_large(server, s3, bucket):
    # The declared decoded length alone is over the limit; the body sent is
    # small, so the answer cannot depend on when the server stops reading.
    data = b"tiny"
    name = "x-amz-checksum-crc32"
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "PUT", f"/{bucket}/k",
                          aws_chunked_body(data, name, crc32_b64(data)), {
                              "Content-Encoding": "aws-chunked",
                              "X-Amz-Decoded-Content-Length": str(LIMIT + 1),
                              "X-Amz-Trailer": name,
                          }, content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert resp.status == 400, f"{resp.status}: {resp.body[:300]!r}"
    assert resp.error_code() == "EntityTooLarge", resp.body[:300]
    assert not object_exists(s3, bucket, "k")


def test_chunked_put_without_length_over_the_limit_is_entity_too_large(server, s3, bucket):
    chunks = [random_bytes(256 * 1024) for _ in range(5)]
    resp = chunked_put(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, f"/{bucket}/k", chunks)
    assert resp.status == 400 and resp.error_code() == "EntityTooLarge", resp.body[:300]
    assert not object_exists(s3, bucket, "k")
