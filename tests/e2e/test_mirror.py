"""A mirror region seen through boto3 and aws-cli: objects written in the
source region (its blobs in another Ferry acting as its S3 bucket) are
listed and read byte-identically in the mirror, multipart ones included;
writes to the mirror are refused with an error naming the source region."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, CONFIG_TOML, FerryServer
from s3util import make_client

SECRET = "e2e-feed-secret-0123456789"


def store_of(origin: FerryServer) -> str:
    return f"""url = "s3://central/ferry"
endpoint = "{origin.s3_url}"
region = "us-east-1"
access_key_id = "{ADMIN_ACCESS_KEY}"
secret_access_key = "{ADMIN_SECRET_KEY}"
allow_http = true
"""


def until(what, check, timeout=60.0):
    """Polls `check` (every 20 ms) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.02)


@pytest.fixture
def regions(tmp_path):
    origin = FerryServer(tmp_path / "origin").start()
    make_client(origin.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY).create_bucket(Bucket="central")
    source = FerryServer(
        tmp_path / "source",
        config_text=f"[stores.data]\n{store_of(origin)}\n[region]\nname = \"central\"\n"
        f"feed_secret = \"{SECRET}\"\n\n" + CONFIG_TOML,
    ).start()
    mirror = FerryServer(
        tmp_path / "mirror",
        config_text=f"[stores.data]\nurl = \"file://{tmp_path / 'edge-blobs'}\"\nfallback = [\"central\"]\n\n"
        f"[stores.central]\n{store_of(origin)}owned = false\n\n"
        f"[region]\nname = \"edge-1\"\nfollow = \"{source.admin_url}\"\nfeed_secret = \"{SECRET}\"\n\n"
        + CONFIG_TOML,
    ).start()
    yield source, mirror
    for server in (mirror, source, origin):
        server.kill()


def present(client, bucket, key):
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket"):
            return None
        raise


def test_objects_written_in_the_source_are_read_in_the_mirror(regions, tmp_path):
    source, mirror = regions
    src = make_client(source.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    dst = make_client(mirror.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    src.create_bucket(Bucket="models")
    small = os.urandom(300_000)
    src.put_object(Bucket="models", Key="llama/config.json", Body=small)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 << 20))
    src.upload_file(str(big), "models", "llama/weights.safetensors",
                    Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20))

    head = until("the multipart object in the mirror",
                 lambda: present(dst, "models", "llama/weights.safetensors"))
    assert head["ContentLength"] == 24 << 20
    assert head["ETag"] == src.head_object(Bucket="models", Key="llama/weights.safetensors")["ETag"]
    assert dst.get_object(Bucket="models", Key="llama/config.json")["Body"].read() == small
    got = dst.get_object(Bucket="models", Key="llama/weights.safetensors", Range="bytes=1000-1999")
    assert got["Body"].read() == big.read_bytes()[1000:2000]
    listed = [o["Key"] for o in dst.list_objects_v2(Bucket="models", Prefix="llama/")["Contents"]]
    assert listed == ["llama/config.json", "llama/weights.safetensors"]

    # aws-cli reads from the mirror like from any S3 endpoint.
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1")
    aws = Path(sys.executable).with_name("aws")
    out = tmp_path / "copy.bin"
    subprocess.run([str(aws), "--endpoint-url", mirror.s3_url, "s3", "cp",
                    "s3://models/llama/weights.safetensors", str(out)], check=True, env=env,
                   capture_output=True)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    # Deletes follow.
    src.delete_object(Bucket="models", Key="llama/config.json")
    until("the delete in the mirror", lambda: present(dst, "models", "llama/config.json") is None)


def test_writes_to_the_mirror_are_refused_naming_the_source(regions):
    source, mirror = regions
    make_client(source.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY).create_bucket(Bucket="models")
    dst = make_client(mirror.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    until("the bucket in the mirror", lambda: "models" in [b["Name"] for b in dst.list_buckets()["Buckets"]])
    for call in (
        lambda: dst.put_object(Bucket="models", Key="k", Body=b"x"),
        lambda: dst.delete_object(Bucket="models", Key="k"),
        lambda: dst.create_bucket(Bucket="another"),
        lambda: dst.create_multipart_upload(Bucket="models", Key="k"),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        error = exc.value.response["Error"]
        assert error["Code"] == "MethodNotAllowed", error
        assert "read-only mirror of the source region central" in error["Message"], error
