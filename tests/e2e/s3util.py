"""Small helpers shared by the end-to-end tests: clients, error checks,
checksums and raw SigV4-signed requests."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import http.client
import os
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import botocore.auth
import botocore.handlers
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
MiB = 1024 * 1024


# -- clients -----------------------------------------------------------------

def make_client(endpoint: str, access_key: str | None, secret_key: str | None, *,
                signature_version=None, validate_bucket_names: bool = True,
                aws_chunked: bool = False, region: str = REGION, **config_kwargs):
    """A boto3 S3 client with default checksum settings, path-style, no retries.

    aws_chunked=True makes PutObject send its body the way boto3 does over
    HTTPS: `Content-Encoding: aws-chunked`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
    and the checksum in a trailer. (Over plain http boto3 puts the checksum
    in a header and signs the payload, so without this the trailer path of
    the server would never be exercised.)
    """
    cfg = dict(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=120,
        max_pool_connections=16,
    )
    if signature_version is not None:
        cfg["signature_version"] = signature_version
    cfg.update(config_kwargs)
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(**cfg),
    )
    if not validate_bucket_names:
        client.meta.events.unregister("before-parameter-build.s3", botocore.handlers.validate_bucket_name)
    if aws_chunked:
        client.meta.events.register("before-call.s3.PutObject", _checksum_in_trailer)
    return client


def _checksum_in_trailer(params, **_kwargs):
    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict) and algorithm.get("in") == "header":
        algorithm["in"] = "trailer"


def unique_bucket(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# -- errors ------------------------------------------------------------------

@dataclass
class Raised:
    error: ClientError | None = None

    @property
    def code(self) -> str:
        return self.error.response["Error"]["Code"]

    @property
    def status(self) -> int:
        return self.error.response["ResponseMetadata"]["HTTPStatusCode"]

    @property
    def headers(self) -> dict:
        return self.error.response["ResponseMetadata"]["HTTPHeaders"]


@contextlib.contextmanager
def s3_error(codes, status: int | None = None):
    """Expect a ClientError whose code is `codes` (a str or a set of accepted
    codes) and, if given, whose HTTP status is `status`."""
    accepted = {codes} if isinstance(codes, str) else set(codes)
    raised = Raised()
    try:
        yield raised
    except ClientError as e:
        raised.error = e
    else:
        raise AssertionError(f"expected S3 error {sorted(accepted)}, but the call succeeded")
    assert raised.code in accepted, (
        f"expected error code in {sorted(accepted)}, got {raised.code!r} "
        f"(HTTP {raised.status}): {raised.error.response.get('Error')}"
    )
    if status is not None:
        assert raised.status == status, f"{raised.code}: expected HTTP {status}, got {raised.status}"


def http_status(response) -> int:
    return response["ResponseMetadata"]["HTTPStatusCode"]


def object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise


# -- data & checksums --------------------------------------------------------

def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def content_md5(data: bytes) -> str:
    return b64(hashlib.md5(data).digest())


def crc32_b64(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def _make_crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_b64(data: bytes) -> str:
    return b64(crc32c(data).to_bytes(4, "big"))


def sha256_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


def sha1_b64(data: bytes) -> str:
    return b64(hashlib.sha1(data).digest())


CHECKSUM_FUNCS = {
    "CRC32": crc32_b64,
    "CRC32C": crc32c_b64,
    "SHA1": sha1_b64,
    "SHA256": sha256_b64,
}


# -- bulk helpers ------------------------------------------------------------

def put_keys(s3, bucket: str, keys, body_for=lambda key: key.encode(), workers: int = 8) -> None:
    keys = list(keys)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body_for(k)), keys))


def list_all_v2(s3, bucket: str, **kwargs) -> tuple[list[str], list[str]]:
    """Every key and common prefix, following continuation tokens."""
    keys, prefixes = [], []
    token = None
    for _ in range(10_000):
        args = dict(kwargs)
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(Bucket=bucket, **args)
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            return keys, prefixes
        token = page["NextContinuationToken"]
    raise AssertionError("listing never ended")


# -- raw signed requests -----------------------------------------------------

class _PresetPayloadSigner(S3SigV4Auth):
    """S3 SigV4 signer; `content_sha256`, when given, is used as the payload
    hash (e.g. STREAMING-UNSIGNED-PAYLOAD-TRAILER) instead of hashing the body."""

    def __init__(self, credentials, service, region, content_sha256: str | None):
        super().__init__(credentials, service, region)
        self._content_sha256 = content_sha256

    skew_seconds = 0

    def add_auth(self, request):
        if not self.skew_seconds:
            return super().add_auth(request)
        # Sign as if the clock were off by skew_seconds (botocore reads the
        # time through this module-level function).
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: real() + datetime.timedelta(seconds=self.skew_seconds)
        try:
            return super().add_auth(request)
        finally:
            botocore.auth.get_current_datetime = real

    def payload(self, request):
        if self._content_sha256 is not None:
            return self._content_sha256
        return super().payload(request)


@dataclass
class RawResponse:
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def error_code(self) -> str | None:
        if not self.body:
            return None
        root = ET.fromstring(self.body)
        code = root.find("Code")
        return code.text if code is not None else None


def signed_request(endpoint: str, access_key: str, secret_key: str, method: str, path: str,
                   body: bytes = b"", headers: dict | None = None, *,
                   content_sha256: str | None = None, clock_skew: int = 0,
                   send_path: str | None = None) -> RawResponse:
    """Send one SigV4-signed request with http.client; `path` is already
    URL-encoded and may carry a query string. Returns status, headers, body.

    clock_skew signs with a clock that many seconds off; send_path sends the
    request to another path than the one signed (tampering)."""
    url = endpoint.rstrip("/") + path
    hdrs = dict(headers or {})
    request = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    signer = _PresetPayloadSigner(Credentials(access_key, secret_key), "s3", REGION, content_sha256)
    signer.skew_seconds = clock_skew
    signer.add_auth(request)
    parsed = urllib.parse.urlsplit(url)
    if send_path is not None:
        parsed = urllib.parse.urlsplit(endpoint.rstrip("/") + send_path)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        target = parsed.path + ("?" + parsed.query if parsed.query else "")
        send_headers = dict(request.headers.items())
        send_headers["Content-Length"] = str(len(body))
        try:
            conn.request(method, target, body=body, headers=send_headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading the whole body: read that answer
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def aws_chunked_body(data: bytes, trailer_name: str, trailer_value: str, chunk_size: int = 64 * 1024) -> bytes:
    """Encode `data` as an unsigned aws-chunked body with one trailing checksum."""
    out = bytearray()
    for start in range(0, len(data), chunk_size):
        chunk = data[start:start + chunk_size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n"
    out += f"{trailer_name}:{trailer_value}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def quote_key(key: str) -> str:
    return urllib.parse.quote(key, safe="/~")


def begin_unsigned_payload_put(endpoint: str, access_key: str, secret_key: str, path: str,
                               length: int) -> http.client.HTTPConnection:
    """Send the signed headers of a PUT with `UNSIGNED-PAYLOAD` and return the
    open connection: the caller sends the `length` body bytes with
    `conn.send()` at its own pace, then reads `conn.getresponse()`."""
    url = endpoint.rstrip("/") + path
    request = AWSRequest(method="PUT", url=url, data=b"", headers={})
    _PresetPayloadSigner(Credentials(access_key, secret_key), "s3", REGION, "UNSIGNED-PAYLOAD").add_auth(request)
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    conn.putrequest("PUT", parsed.path, skip_accept_encoding=True)
    for name, value in request.headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    return conn


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_streaming_put(endpoint: str, access_key: str, secret_key: str, path: str, data: bytes, *,
                         chunk_size: int = 64 * 1024, corrupt_chunk: int | None = None) -> RawResponse:
    """PUT `data` as `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked where
    every chunk carries a signature chained from the header signature.
    corrupt_chunk=N flips one byte of chunk N after signing it."""
    url = endpoint.rstrip("/") + path
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    request = AWSRequest(method="PUT", url=url, data=b"", headers=headers)
    _PresetPayloadSigner(Credentials(access_key, secret_key), "s3", REGION,
                         "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").add_auth(request)
    timestamp = request.headers["X-Amz-Date"]
    scope = f"{timestamp[:8]}/{REGION}/s3/aws4_request"
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), timestamp[:8]), REGION), "s3"), "aws4_request")
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    empty_hash = hashlib.sha256(b"").hexdigest()

    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    body = bytearray()
    for index, chunk in enumerate(chunks):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, empty_hash,
                             hashlib.sha256(chunk).hexdigest()])
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        previous = signature
        if index == corrupt_chunk and chunk:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"

    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        send_headers = dict(request.headers.items())
        send_headers["Content-Length"] = str(len(body))
        conn.request("PUT", parsed.path, body=bytes(body), headers=send_headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def chunked_put(endpoint: str, access_key: str, secret_key: str, path: str, chunks, *,
                content_sha256: str = "UNSIGNED-PAYLOAD") -> RawResponse:
    """PUT a body with `Transfer-Encoding: chunked` and no Content-Length,
    as streaming clients send a body of unknown size. `content_sha256` is
    UNSIGNED-PAYLOAD or the body's SHA-256 (a signed payload)."""
    url = endpoint.rstrip("/") + path
    request = AWSRequest(method="PUT", url=url, data=b"", headers={})
    _PresetPayloadSigner(Credentials(access_key, secret_key), "s3", REGION, content_sha256).add_auth(request)
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    try:
        headers = dict(request.headers.items())
        headers["Transfer-Encoding"] = "chunked"
        conn.request("PUT", parsed.path, body=iter(chunks), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
