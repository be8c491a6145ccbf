"""SigV2 (legacy `s3` signer) presigned URLs fetched with plain urllib, and
virtual-host style addressing on a server started with `--domain localhost`."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, CONFIG_TOML, FerryServer
from s3util import list_all_v2, make_client, md5_etag, random_bytes, s3_error, unique_bucket


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    # An explicit empty Content-Type: urllib would otherwise add
    # `application/x-www-form-urlencoded` to a body, and SigV2 signs it.
    headers = {"Content-Type": ""} if data is not None else {}
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def query(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


# -- SigV2 presigned URLs ----------------------------------------------------

@pytest.fixture(scope="module")
def s3v2(clients):
    return clients.admin(signature_version="s3")


@pytest.fixture
def obj(s3, bucket):
    data = random_bytes(70_000)
    s3.put_object(Bucket=bucket, Key="dir/pre signed+obj.bin", Body=data)
    return bucket, "dir/pre signed+obj.bin", data


def test_sigv2_presigned_get(s3v2, obj):
    bucket, key, data = obj
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    params = query(url)
    assert {"AWSAccessKeyId", "Signature", "Expires"} <= params.keys(), url
    assert "X-Amz-Signature" not in params
    assert params["AWSAccessKeyId"] == ADMIN_ACCESS_KEY
    status, body = fetch(url)
    assert status == 200
    assert body == data


def test_sigv2_presigned_head_and_response_overrides(s3v2, obj):
    bucket, key, data = obj
    url = s3v2.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": key, "ResponseContentType": "text/x-override"}, ExpiresIn=300)
    request = urllib.request.Request(url)
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "text/x-override"
        assert resp.headers["ETag"] == md5_etag(data)
        assert resp.read() == data


def test_sigv2_presigned_put(s3, s3v2, bucket):
    url = s3v2.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300)
    assert "Signature" in query(url)
    status, _ = fetch(url, "PUT", b"uploaded with sigv2")
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"uploaded with sigv2"


def test_sigv2_presigned_expired_is_403(s3v2, obj):
    bucket, key, _ = obj
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=-60)
    status, body = fetch(url)
    assert status == 403, body
    assert b"AccessDenied" in body


@pytest.mark.parametrize("tamper", ["signature", "key", "expires", "access-key"])
def test_sigv2_presigned_tampered_is_403(s3v2, obj, tamper):
    bucket, key, _ = obj
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    parts = urllib.parse.urlsplit(url)
    params = query(url)
    path = parts.path
    if tamper == "signature":
        sig = params["Signature"]
        params["Signature"] = ("B" if sig[0] != "B" else "C") + sig[1:]
    elif tamper == "key":
        path = path[:-1] + ("x" if path[-1] != "x" else "y")
    elif tamper == "expires":
        params["Expires"] = str(int(params["Expires"]) + 1)
    else:
        params["AWSAccessKeyId"] = "reader"
    url = urllib.parse.urlunsplit(parts._replace(path=path, query=urllib.parse.urlencode(params)))
    status, body = fetch(url)
    assert status == 403, body
    assert b"SignatureDoesNotMatch" in body or b"AccessDenied" in body


def test_sigv2_presigned_unknown_key_is_403(server, obj):
    bucket, key, _ = obj
    other = make_client(server.s3_url, "nobody", "nobody-secret", signature_version="s3")
    url = other.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    status, body = fetch(url)
    assert status == 403, body


# -- virtual-host style ------------------------------------------------------

@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory):
    srv = FerryServer(tmp_path_factory.mktemp("ferry-vhost"), config_text=CONFIG_TOML,
                      extra_args=["--domain", "localhost"])
    srv.start()
    yield srv
    if srv.running:
        srv.stop()
    else:
        srv.kill()


def localhost_url(srv) -> str:
    port = urllib.parse.urlsplit(srv.s3_url).port
    return f"http://localhost:{port}"


def virtual_client(srv):
    """A boto3 client with virtual-host addressing against `localhost:PORT`.

    `bucket.localhost` does not resolve on every machine, so the requests are
    sent to 127.0.0.1 with the Host header (which is what the signature
    covers) naming `bucket.localhost:PORT`. Returns the client and the list
    of (host, path) pairs it sent."""
    client = make_client(localhost_url(srv), ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY,
                         s3={"addressing_style": "virtual"})
    sent = []

    def redirect(request, **_kw):
        parts = urllib.parse.urlsplit(request.url)
        sent.append((parts.netloc, parts.path))
        request.headers["Host"] = parts.netloc
        request.url = urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))

    client.meta.events.register("before-send.s3", redirect)
    return client, sent


def test_virtual_host_style(vhost_server):
    s3, sent = virtual_client(vhost_server)
    port = urllib.parse.urlsplit(vhost_server.s3_url).port
    bucket = unique_bucket("vh")
    host = f"{bucket}.localhost:{port}"

    s3.create_bucket(Bucket=bucket)
    assert sent[-1] == (host, "/"), "CreateBucket was not sent virtual-host style"
    data = random_bytes(10_000)
    assert s3.put_object(Bucket=bucket, Key="a/b.bin", Body=data)["ETag"] == md5_etag(data)
    assert sent[-1] == (host, "/a/b.bin")
    s3.put_object(Bucket=bucket, Key="c.txt", Body=b"c")
    assert s3.get_object(Bucket=bucket, Key="a/b.bin")["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key="c.txt")["ContentLength"] == 1

    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["a/b.bin", "c.txt"]
    assert listed["Name"] == bucket
    by_prefix = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in by_prefix["CommonPrefixes"]] == ["a/"]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert sent[-1] == (f"localhost:{port}", "/")

    with s3_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="missing")
    with s3_error("NoSuchBucket", 404):
        s3.list_objects_v2(Bucket=unique_bucket("vh"))

    s3.delete_object(Bucket=bucket, Key="c.txt")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b.bin"]
    assert all(h.endswith(f".localhost:{port}") or h == f"localhost:{port}" for h, _ in sent), sent


def test_path_style_still_works_on_a_domain_server(vhost_server):
    virtual, _ = virtual_client(vhost_server)
    bucket = unique_bucket("vh")
    virtual.create_bucket(Bucket=bucket)
    virtual.put_object(Bucket=bucket, Key="k", Body=b"from virtual")

    for endpoint in (vhost_server.s3_url, localhost_url(vhost_server)):
        path = make_client(endpoint, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
        assert path.get_object(Bucket=bucket, Key="k")["Body"].read() == b"from virtual"
        path.put_object(Bucket=bucket, Key="p", Body=endpoint.encode())
        assert virtual.get_object(Bucket=bucket, Key="p")["Body"].read() == endpoint.encode()
        keys, _ = list_all_v2(path, bucket)
        assert keys == ["k", "p"]

    other = unique_bucket("ps")
    path = make_client(vhost_server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    path.create_bucket(Bucket=other)
    path.put_object(Bucket=other, Key="x", Body=b"x")
    assert virtual.get_object(Bucket=other, Key="x")["Body"].read() == b"x"
