"""Authentication and authorisation: presigned URLs, bad credentials,
anonymous requests, the read-only key and the bucket-limited key."""

import base64
import hashlib
import hmac
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate

import pytest
from botocore import UNSIGNED

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, LIMITED_BUCKET
from s3util import RawResponse, make_client, s3_error, signed_request, unique_bucket

OTHER_BUCKET = "other-bucket"


def fetch(url: str) -> RawResponse:
    """Plain urllib GET (no boto3 in the way); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return RawResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@pytest.fixture(scope="module")
def shared(s3):
    """Buckets for the limited-key tests, each with one object."""
    for name in (LIMITED_BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="hello.txt", Body=b"hello from " + name.encode())
    return {"allowed": LIMITED_BUCKET, "other": OTHER_BUCKET}


@pytest.fixture(scope="module")
def presigner(clients):
    return clients.admin(signature_version="s3v4")


# -- presigned URLs ----------------------------------------------------------

@pytest.mark.parametrize("key", ["plain.txt", "ünï/sp ace+plus.bin"])
def test_presigned_get_url_works_with_plain_http(s3, presigner, bucket, key):
    data = b"presigned payload \x00\xff"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url, "not a SigV4 presigned URL"
    resp = fetch(url)
    assert resp.status == 200, f"presigned GET failed: {resp.status} {resp.body[:300]!r}"
    assert resp.body == data


def test_presigned_url_with_tampered_signature_is_403(s3, presigner, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    sig = query["X-Amz-Signature"][0]
    query["X-Amz-Signature"] = [("0" if sig[0] != "0" else "1") + sig[1:]]
    bad = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))
    resp = fetch(bad)
    assert resp.status == 403
    assert resp.error_code() == "SignatureDoesNotMatch"


def test_presigned_url_for_other_key_does_not_work(s3, presigner, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"secret")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "public"}, ExpiresIn=300)
    assert fetch(url.replace("/public?", "/secret?")).status == 403


def test_expired_presigned_url_is_403(s3, presigner, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    signed_at = time.time()
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    # Expiry is time-based, so waiting is the behaviour under test: poll the
    # clock until the URL is surely past its one second.
    while time.time() < signed_at + 3:
        time.sleep(0.1)
    resp = fetch(url)
    assert resp.status == 403, f"expired presigned URL answered {resp.status}"
    assert resp.error_code() == "AccessDenied", resp.body[:300]


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD"])
def test_presigned_url_that_expired_before_it_was_made_is_403(clients, s3, bucket, signature_version, method):
    # A negative lifetime: the URL is expired already (SigV4 carries
    # X-Amz-Expires=-1000, SigV2 an Expires in the past).
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    signer = clients.admin(signature_version=signature_version)
    operation = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}[method]
    url = signer.generate_presigned_url(operation, Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=-1000)
    data = b"should not land" if method == "PUT" else None
    headers = {"Content-Type": ""} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, data=data, headers=headers),
                                    timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    assert status == 403, body[:300]
    if method != "HEAD":
        assert RawResponse(status, {}, body).error_code() == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_presigned_url_valid_for_more_than_a_week_is_403(s3, presigner, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"},
                                           ExpiresIn=7 * 24 * 3600 + 1)
    resp = fetch(url)
    assert resp.status == 403 and resp.error_code() == "AccessDenied", resp.body[:300]
    week = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"},
                                            ExpiresIn=7 * 24 * 3600)
    assert fetch(week).status == 200


# -- bad credentials ---------------------------------------------------------

def test_wrong_secret_is_signature_does_not_match(clients):
    bad = clients.with_keys(ADMIN_ACCESS_KEY, "definitely-not-the-secret")
    with s3_error("SignatureDoesNotMatch", 403):
        bad.list_buckets()


def test_wrong_secret_on_put_is_rejected_and_writes_nothing(clients, s3, bucket):
    bad = clients.with_keys(ADMIN_ACCESS_KEY, "definitely-not-the-secret")
    with s3_error("SignatureDoesNotMatch", 403):
        bad.put_object(Bucket=bucket, Key="k", Body=b"x" * 10_000)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_access_key_is_invalid_access_key_id(clients):
    with s3_error("InvalidAccessKeyId", 403):
        clients.with_keys("no-such-key", "whatever-secret").list_buckets()


@pytest.mark.parametrize("op", ["list_buckets", "list_objects", "get_object", "put_object"])
def test_anonymous_request_is_access_denied(clients, s3, bucket, op):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    anon = clients.with_keys(None, None, signature_version=UNSIGNED)
    calls = {
        "list_buckets": lambda: anon.list_buckets(),
        "list_objects": lambda: anon.list_objects_v2(Bucket=bucket),
        "get_object": lambda: anon.get_object(Bucket=bucket, Key="k"),
        "put_object": lambda: anon.put_object(Bucket=bucket, Key="anon", Body=b"x"),
    }
    with s3_error("AccessDenied", 403):
        calls[op]()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


# -- read-only key -----------------------------------------------------------

def test_read_only_key_can_get_and_list(clients, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"readable")
    reader = clients.reader()
    assert reader.get_object(Bucket=bucket, Key="k")["Body"].read() == b"readable"
    assert reader.head_object(Bucket=bucket, Key="k")["ContentLength"] == 8
    assert [o["Key"] for o in reader.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert bucket in [b["Name"] for b in reader.list_buckets()["Buckets"]]


def test_read_only_key_cannot_put(clients, s3, bucket):
    with s3_error("AccessDenied", 403):
        clients.reader().put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_read_only_key_cannot_delete_object(clients, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with s3_error("AccessDenied", 403):
        clients.reader().delete_object(Bucket=bucket, Key="k")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_read_only_key_cannot_delete_objects(clients, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    reader = clients.reader()
    try:
        resp = reader.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    except Exception as e:  # a whole-request AccessDenied is fine
        assert getattr(e, "response", {}).get("Error", {}).get("Code") == "AccessDenied", e
    else:  # or S3-style per-key errors
        assert [err["Code"] for err in resp.get("Errors", [])] == ["AccessDenied"], resp
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_read_only_key_cannot_create_bucket(clients, s3):
    name = unique_bucket("ro")
    with s3_error("AccessDenied", 403):
        clients.reader().create_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_read_only_key_cannot_delete_bucket(clients, s3, bucket):
    with s3_error("AccessDenied", 403):
        clients.reader().delete_bucket(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)


# -- bucket-limited key ------------------------------------------------------

def test_limited_key_sees_only_its_bucket(clients, shared, bucket):
    names = [b["Name"] for b in clients.limited().list_buckets()["Buckets"]]
    assert names == [shared["allowed"]]


def test_limited_key_can_use_its_bucket(clients, shared):
    limited = clients.limited()
    limited.put_object(Bucket=shared["allowed"], Key="mine", Body=b"mine")
    assert limited.get_object(Bucket=shared["allowed"], Key="mine")["Body"].read() == b"mine"
    keys = [o["Key"] for o in limited.list_objects_v2(Bucket=shared["allowed"])["Contents"]]
    assert "mine" in keys and "hello.txt" in keys
    limited.delete_object(Bucket=shared["allowed"], Key="mine")


def test_limited_key_cannot_list_other_bucket(clients, shared):
    with s3_error("AccessDenied", 403):
        clients.limited().list_objects_v2(Bucket=shared["other"])


def test_limited_key_cannot_get_from_other_bucket(clients, shared):
    with s3_error("AccessDenied", 403):
        clients.limited().get_object(Bucket=shared["other"], Key="hello.txt")


def test_limited_key_cannot_put_into_other_bucket(clients, s3, shared):
    with s3_error("AccessDenied", 403):
        clients.limited().put_object(Bucket=shared["other"], Key="intruder", Body=b"x")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=shared["other"])["Contents"]]
    assert "intruder" not in keys


def test_limited_key_gets_access_denied_for_missing_other_bucket(clients):
    # Must not reveal whether a bucket it may not see exists.
    with s3_error("AccessDenied", 403):
        clients.limited().list_objects_v2(Bucket=unique_bucket("nope"))


# -- signature details -------------------------------------------------------

@pytest.mark.parametrize("skew", [-20 * 60, 20 * 60], ids=["20min-slow", "20min-fast"])
def test_request_time_too_skewed(server, skew):
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "GET", "/", clock_skew=skew)
    assert resp.status == 403, f"a request signed {skew}s off answered {resp.status}"
    assert resp.error_code() == "RequestTimeTooSkewed", resp.body[:300]


def test_small_clock_skew_is_accepted(server):
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "GET", "/", clock_skew=-60)
    assert resp.status == 200, resp.body[:300]


def test_request_sent_to_other_path_than_signed_is_rejected(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="public", Body=b"p")
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "GET", f"/{bucket}/public",
                          send_path=f"/{bucket}/secret")
    assert resp.status == 403
    assert resp.error_code() == "SignatureDoesNotMatch", resp.body[:300]


def test_signature_for_wrong_region_is_rejected(server, s3):
    wrong = make_client(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, region="eu-west-1")
    with s3_error({"AuthorizationHeaderMalformed", "SignatureDoesNotMatch"}) as err:
        wrong.list_buckets()
    assert err.status in (400, 403)
    s3.list_buckets()


def test_presigned_put_url_uploads(s3, presigner, bucket):
    data = b"uploaded through a presigned URL"
    url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300)
    req = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == data


def _sigv2_get(server, bucket, key, date):
    """A GET signed with SigV2 header authentication, dated `date`."""
    to_sign = f"GET\n\n\n{date}\n/{bucket}/{key}"
    signature = base64.b64encode(
        hmac.new(ADMIN_SECRET_KEY.encode(), to_sign.encode(), hashlib.sha1).digest()
    ).decode()
    request = urllib.request.Request(
        f"{server.s3_url}/{bucket}/{key}",
        headers={"Date": date, "Authorization": f"AWS {ADMIN_ACCESS_KEY}:{signature}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_sigv2_request_cannot_be_replayed_after_fifteen_minutes(server, s3, bucket):
    # SigV2 signs the Date header; a captured request must not work forever.
    s3.put_object(Bucket=bucket, Key="v2.txt", Body=b"signed with v2")
    status, body = _sigv2_get(server, bucket, "v2.txt", formatdate(usegmt=True))
    assert status == 200, body
    assert body == b"signed with v2"
    old = formatdate(time.time() - 20 * 60, usegmt=True)
    status, body = _sigv2_get(server, bucket, "v2.txt", old)
    assert status == 403, body
    assert b"RequestTimeTooSkewed" in body
