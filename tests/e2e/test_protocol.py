"""Protocol-level behaviour: request ids, malformed bodies, raw aws-chunked
uploads, unsupported operations, the admin endpoint and the AWS CLI."""

import hashlib
import os
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, READER_ACCESS_KEY, READER_SECRET_KEY
from s3util import (
    aws_chunked_body, chunked_put, content_md5, crc32_b64, md5_etag, object_exists, quote_key, random_bytes,
    s3_error, signed_request, signed_streaming_put, unique_bucket,
)

STREAMING_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def raw(server, method, path, body=b"", headers=None, **kw):
    return signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, method, path, body, headers, **kw)


# -- x-amz-request-id --------------------------------------------------------

def _request_id(headers):
    value = headers.get("x-amz-request-id")
    assert value, f"no x-amz-request-id header in {sorted(headers)}"
    return value


@pytest.mark.parametrize("op", ["list_buckets", "put_object", "get_object", "head_object",
                                "list_objects_v2", "delete_object", "head_bucket"])
def test_success_responses_carry_request_id(s3, bucket, op):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    calls = {
        "list_buckets": lambda: s3.list_buckets(),
        "put_object": lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"y"),
        "get_object": lambda: s3.get_object(Bucket=bucket, Key="k"),
        "head_object": lambda: s3.head_object(Bucket=bucket, Key="k"),
        "list_objects_v2": lambda: s3.list_objects_v2(Bucket=bucket),
        "delete_object": lambda: s3.delete_object(Bucket=bucket, Key="k"),
        "head_bucket": lambda: s3.head_bucket(Bucket=bucket),
    }
    _request_id(calls[op]()["ResponseMetadata"]["HTTPHeaders"])


@pytest.mark.parametrize("case", ["no-such-key", "head-404", "no-such-bucket", "access-denied",
                                  "bad-signature", "precondition-failed", "invalid-range"])
def test_error_responses_carry_request_id(clients, s3, bucket, case):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    calls = {
        "no-such-key": lambda: s3.get_object(Bucket=bucket, Key="missing"),
        "head-404": lambda: s3.head_object(Bucket=bucket, Key="missing"),
        "no-such-bucket": lambda: s3.list_objects_v2(Bucket=unique_bucket("missing")),
        "access-denied": lambda: clients.reader().put_object(Bucket=bucket, Key="x", Body=b"x"),
        "bad-signature": lambda: clients.with_keys(ADMIN_ACCESS_KEY, "wrong-secret-value").list_buckets(),
        "precondition-failed": lambda: s3.get_object(Bucket=bucket, Key="k", IfMatch='"nope"'),
        "invalid-range": lambda: s3.get_object(Bucket=bucket, Key="k", Range="bytes=100-"),
    }
    with pytest.raises(ClientError) as exc:
        calls[case]()
    _request_id(exc.value.response["ResponseMetadata"]["HTTPHeaders"])


def test_request_ids_differ_between_requests(s3):
    ids = {_request_id(s3.list_buckets()["ResponseMetadata"]["HTTPHeaders"]) for _ in range(3)}
    assert len(ids) == 3, f"request ids repeat: {ids}"


def test_error_body_request_id_matches_header(server, bucket):
    resp = raw(server, "GET", f"/{bucket}/missing-key")
    assert resp.status == 404
    assert resp.error_code() == "NoSuchKey"
    assert f"<RequestId>{resp.headers['x-amz-request-id']}</RequestId>".encode() in resp.body, resp.body[:500]


# -- malformed XML -----------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"<Delete><Object><Key>a</Key></Object>",  # truncated
    b"this is not xml at all",
    b"<Delete><Object><Key>a</Key></Obj></Delete>",  # mismatched tag
], ids=["truncated", "not-xml", "mismatched"])
def test_malformed_delete_objects_xml_is_400_and_server_survives(server, s3, bucket, body):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    resp = raw(server, "POST", f"/{bucket}?delete", body, {"Content-MD5": content_md5(body),
                                                          "Content-Type": "application/xml"})
    assert resp.status == 400, f"got {resp.status}: {resp.body[:300]!r}"
    assert resp.error_code() == "MalformedXML", resp.body[:300]
    assert server.running, "server died on malformed XML"
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"x", "object was deleted anyway"


# -- raw aws-chunked uploads -------------------------------------------------

def _chunked_put(server, bucket, key, data, trailer_value, algorithm="crc32"):
    name = f"x-amz-checksum-{algorithm}"
    body = aws_chunked_body(data, name, trailer_value, chunk_size=8192)
    return raw(server, "PUT", f"/{bucket}/{quote_key(key)}", body, {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
        "X-Amz-Trailer": name,
        "X-Amz-Sdk-Checksum-Algorithm": algorithm.upper(),
    }, content_sha256=STREAMING_TRAILER)


def test_raw_aws_chunked_upload_with_good_trailer(server, s3, bucket):
    data = random_bytes(100_000)
    resp = _chunked_put(server, bucket, "k", data, crc32_b64(data))
    assert resp.status == 200, f"{resp.status}: {resp.body[:300]!r}"
    assert resp.headers.get("etag") == md5_etag(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_raw_aws_chunked_upload_with_wrong_trailer_is_rejected(server, s3, bucket):
    data = random_bytes(100_000)
    resp = _chunked_put(server, bucket, "k", data, crc32_b64(b"not the data"))
    assert resp.status == 400, f"wrong trailing checksum answered {resp.status}"
    assert resp.error_code() in {"BadDigest", "InvalidRequest", "XAmzContentChecksumMismatch"}, resp.body[:300]
    assert not object_exists(s3, bucket, "k"), "object created despite a wrong trailing checksum"


def test_raw_aws_chunked_upload_with_wrong_decoded_length_is_rejected(server, s3, bucket):
    data = random_bytes(10_000)
    name = "x-amz-checksum-crc32"
    body = aws_chunked_body(data, name, crc32_b64(data))
    resp = raw(server, "PUT", f"/{bucket}/k", body, {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data) + 5),
        "X-Amz-Trailer": name,
    }, content_sha256=STREAMING_TRAILER)
    assert 400 <= resp.status < 500, f"a lying decoded length answered {resp.status}"
    assert not object_exists(s3, bucket, "k")


def test_raw_put_with_wrong_payload_hash_is_rejected(server, s3, bucket):
    body = b"payload whose hash we lie about"
    resp = raw(server, "PUT", f"/{bucket}/k", body, content_sha256=hashlib.sha256(b"other").hexdigest())
    assert resp.status in (400, 403), f"{resp.status}: {resp.body[:300]!r}"
    assert resp.error_code() in {"XAmzContentSHA256Mismatch", "BadDigest", "SignatureDoesNotMatch"}, resp.body[:300]
    assert not object_exists(s3, bucket, "k")


def test_raw_unsigned_payload_put(server, s3, bucket):
    body = b"unsigned payload body"
    resp = raw(server, "PUT", f"/{bucket}/k", body, content_sha256="UNSIGNED-PAYLOAD")
    assert resp.status == 200, f"{resp.status}: {resp.body[:300]!r}"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body


# -- bodies without a Content-Length ------------------------------------------

@pytest.mark.parametrize("size", [0, 1000, 20 * 1024 * 1024], ids=["empty", "small", "20MiB"])
@pytest.mark.parametrize("payload", ["unsigned", "signed"])
def test_chunked_put_without_content_length(server, s3, bucket, size, payload):
    data = random_bytes(size)
    chunks = [data[i:i + 300_000] for i in range(0, len(data), 300_000)]
    sha = "UNSIGNED-PAYLOAD" if payload == "unsigned" else hashlib.sha256(data).hexdigest()
    resp = chunked_put(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, f"/{bucket}/k", chunks,
                       content_sha256=sha)
    assert resp.status == 200, f"{resp.status}: {resp.body[:300]!r}"
    assert resp.headers["etag"] == md5_etag(data)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["ContentLength"] == size
    assert got["Body"].read() == data


def test_chunked_put_whose_signed_hash_is_wrong_is_refused(server, s3, bucket):
    resp = chunked_put(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, f"/{bucket}/k", [b"real body"],
                       content_sha256=hashlib.sha256(b"another body").hexdigest())
    assert resp.status in (400, 403), resp.body[:300]
    assert not object_exists(s3, bucket, "k")


def test_curl_streams_stdin_without_content_length(server, s3, bucket):
    data = random_bytes(3 * 1024 * 1024)
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", "-",
         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
         "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ADMIN_ACCESS_KEY}:{ADMIN_SECRET_KEY}",
         f"{server.s3_url}/{bucket}/from-stdin"],
        input=data, capture_output=True, timeout=60, check=True)
    assert result.stdout == b"200", result.stderr
    assert s3.get_object(Bucket=bucket, Key="from-stdin")["Body"].read() == data


# -- unsupported operations --------------------------------------------------

def test_unsupported_operation_is_not_implemented(s3, bucket):
    with s3_error("NotImplemented", 501):
        s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})


# -- admin -------------------------------------------------------------------

def test_admin_health_is_200(server):
    with urllib.request.urlopen(server.admin_url + "/health", timeout=10) as resp:
        assert resp.status == 200


# -- AWS CLI -----------------------------------------------------------------

def _aws(server, tmp_path, *args):
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY,
               AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    aws = Path(sys.executable).parent / "aws"
    cmd = [str(aws), "--endpoint-url", server.s3_url, *args]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=120)


def test_aws_cli_cp_and_ls(server, s3, bucket, tmp_path):
    if not (Path(sys.executable).parent / "aws").exists():
        pytest.skip("awscli is not installed next to this Python")
    data = random_bytes(200_000)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    up = _aws(server, tmp_path, "s3", "cp", str(src), f"s3://{bucket}/cli/upload.bin")
    assert up.returncode == 0, up.stderr.decode()
    ls = _aws(server, tmp_path, "s3", "ls", f"s3://{bucket}/cli/")
    assert ls.returncode == 0, ls.stderr.decode()
    assert b"upload.bin" in ls.stdout
    dst = tmp_path / "download.bin"
    down = _aws(server, tmp_path, "s3", "cp", f"s3://{bucket}/cli/upload.bin", str(dst))
    assert down.returncode == 0, down.stderr.decode()
    assert dst.read_bytes() == data


# -- signed aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) -----------------

@pytest.mark.parametrize("size", [0, 1, 200_000], ids=["empty", "one-byte", "200KB"])
def test_signed_streaming_upload(server, s3, bucket, size):
    data = random_bytes(size)
    resp = signed_streaming_put(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, f"/{bucket}/k", data,
                                chunk_size=64 * 1024)
    assert resp.status == 200, f"{resp.status}: {resp.body[:300]!r}"
    assert resp.headers.get("etag") == md5_etag(data)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_signed_streaming_upload_with_tampered_chunk_is_rejected(server, s3, bucket):
    data = random_bytes(200_000)
    resp = signed_streaming_put(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, f"/{bucket}/k", data,
                                chunk_size=64 * 1024, corrupt_chunk=1)
    assert resp.status in (400, 403), f"a tampered signed chunk answered {resp.status}"
    assert resp.error_code() in {"SignatureDoesNotMatch", "IncompleteBody", "InvalidRequest"}, resp.body[:300]
    assert not object_exists(s3, bucket, "k"), "object created from a tampered signed chunk"


# -- connection handling after early errors ----------------------------------

def _raw_put_headers_only(server, path, access_key, secret_key, extra_headers):
    """Send only the headers of a signed PUT with `Expect: 100-continue`
    (as boto3 does) and read whatever the server sends within 2 s.
    Returns (response bytes, whether the server closed the connection)."""
    url = server.s3_url + path
    headers = {"Content-Length": "10", "Expect": "100-continue", **extra_headers}
    request = AWSRequest(method="PUT", url=url, data=b"x" * 10, headers=headers)
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(request)
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    head = f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(head.encode())
        data, closed = b"", False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
    return data, closed


@pytest.mark.parametrize("case", ["no-such-bucket", "access-denied", "metadata-too-large"])
def test_early_error_that_closes_connection_says_connection_close(server, bucket, case):
    # When the server answers before reading the body it may drop the
    # connection, but then it must say `Connection: close`; otherwise a
    # client puts the connection back in its pool and its next request fails.
    path, ak, sk, extra = {
        "no-such-bucket": (f"/{unique_bucket('missing')}/k", ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, {}),
        "access-denied": (f"/{bucket}/k", READER_ACCESS_KEY, READER_SECRET_KEY, {}),
        "metadata-too-large": (f"/{bucket}/k", ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, {"x-amz-meta-big": "v" * 2100}),
    }[case]
    data, closed = _raw_put_headers_only(server, path, ak, sk, extra)
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.split()[1:2] != [b"100"], "expected an early final response"
    if closed:
        assert b"\r\nconnection: close\r\n" in data.lower().split(b"\r\n\r\n", 1)[0] + b"\r\n", \
            f"server closed the connection after {status_line!r} without `Connection: close`"


def test_client_survives_early_rejected_puts(clients, bucket):
    # Alternating an early-rejected PUT with a normal one on one boto3 client
    # (pooled keep-alive connections) must never hit a dropped connection.
    s3 = clients.admin()
    for _ in range(100):
        with s3_error("MetadataTooLarge", 400):
            s3.put_object(Bucket=bucket, Key="rejected", Body=b"x", Metadata={"big": "v" * 2100})
        s3.put_object(Bucket=bucket, Key="ok", Body=b"ok")
