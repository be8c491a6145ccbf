"""Multipart uploads: transfer manager round trips, per-part checksums,
completion errors, abort, listing, expiry, UploadPartCopy and conditional
writes (PutObject and CompleteMultipartUpload) under races."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from ferry_server import CONFIG_TOML, Clients, FerryServer
from s3util import (
    CHECKSUM_FUNCS, MiB, http_status, md5_etag, object_exists, random_bytes, s3_error, unique_bucket,
)

MIN_PART = 5 * MiB
CHUNK = 8 * MiB


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def create(s3, bucket, key, **kw) -> str:
    return s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]


def upload_parts(s3, bucket, key, upload_id, parts: list[bytes], first: int = 1) -> list[dict]:
    done = []
    for n, data in enumerate(parts, start=first):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data)["ETag"]
        assert etag == md5_etag(data), f"part {n}: ETag is not the part's md5"
        done.append({"PartNumber": n, "ETag": etag})
    return done


def complete(s3, bucket, key, upload_id, parts, **kw):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts}, **kw)


def read(s3, bucket, key) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def count_requests(client, operation: str, predicate=lambda request: True) -> list:
    """Record every request of `operation` the client sends (that matches)."""
    seen = []

    def hook(request, **_kw):
        if predicate(request):
            seen.append(request)

    client.meta.events.register(f"before-send.s3.{operation}", hook)
    return seen


# -- transfer manager --------------------------------------------------------

def test_transfer_manager_round_trip_is_multipart_both_ways(clients, bucket, tmp_path):
    s3 = clients.admin()  # private: the hooks below stay on this client
    data = random_bytes(40 * MiB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4)
    parts_sent = count_requests(s3, "UploadPart")
    ranged_gets = count_requests(s3, "GetObject", lambda r: "Range" in r.headers)

    s3.upload_file(str(src), bucket, "big.bin", Config=config)
    assert len(parts_sent) == 5

    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(split(data, CHUNK))
    assert head["ETag"].endswith('-5"')

    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "big.bin", str(dst), Config=config)
    assert len(ranged_gets) >= 5, "download was not split into ranged GETs"
    assert dst.read_bytes() == data


def test_multipart_etag_is_md5_of_part_md5s(s3, bucket):
    parts = [random_bytes(MIN_PART), random_bytes(MIN_PART + 3), random_bytes(1000)]
    upload_id = create(s3, bucket, "obj")
    done = upload_parts(s3, bucket, "obj", upload_id, parts)
    resp = complete(s3, bucket, "obj", upload_id, done)
    assert resp["ETag"] == multipart_etag(parts)
    obj = s3.get_object(Bucket=bucket, Key="obj")
    assert obj["ETag"] == multipart_etag(parts)
    assert obj["Body"].read() == b"".join(parts)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [
        ("obj", multipart_etag(parts), sum(map(len, parts)))]


# -- per-part checksums ------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256"])
def test_multipart_with_part_checksums(s3, bucket, algorithm):
    field = f"Checksum{algorithm}"
    func = CHECKSUM_FUNCS[algorithm]
    parts = [random_bytes(MIN_PART), random_bytes(12345)]
    upload_id = create(s3, bucket, "obj", ChecksumAlgorithm=algorithm)
    done = []
    for n, data in enumerate(parts, start=1):
        resp = s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=n, Body=data,
                              **{field: func(data)})
        assert resp[field] == func(data)
        done.append({"PartNumber": n, "ETag": resp["ETag"], field: func(data)})

    listed = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"], p.get(field)) for p in listed["Parts"]] == [
        (d["PartNumber"], d["ETag"], len(data), func(data)) for d, data in zip(done, parts)]

    complete(s3, bucket, "obj", upload_id, done)
    assert read(s3, bucket, "obj") == b"".join(parts)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256"])
def test_complete_with_wrong_part_checksum_fails(s3, bucket, algorithm):
    field = f"Checksum{algorithm}"
    func = CHECKSUM_FUNCS[algorithm]
    parts = [random_bytes(MIN_PART), random_bytes(100)]
    upload_id = create(s3, bucket, "obj", ChecksumAlgorithm=algorithm)
    done = []
    for n, data in enumerate(parts, start=1):
        resp = s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=n, Body=data,
                              **{field: func(data)})
        done.append({"PartNumber": n, "ETag": resp["ETag"], field: func(data)})
    done[0][field] = func(b"not the part")
    with s3_error({"InvalidPart", "BadDigest"}, 400):
        complete(s3, bucket, "obj", upload_id, done)
    assert not object_exists(s3, bucket, "obj")


# -- completion rules --------------------------------------------------------

def test_reuploaded_part_replaces_the_first(s3, bucket):
    first, second, last = random_bytes(MIN_PART), random_bytes(MIN_PART + 1), b"tail"
    upload_id = create(s3, bucket, "obj")
    upload_parts(s3, bucket, "obj", upload_id, [first])
    done = upload_parts(s3, bucket, "obj", upload_id, [second, last])
    listed = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, md5_etag(second), len(second)), (2, md5_etag(last), len(last))]
    complete(s3, bucket, "obj", upload_id, done)
    assert read(s3, bucket, "obj") == second + last


def test_parts_uploaded_out_of_order(s3, bucket):
    parts = [random_bytes(MIN_PART), random_bytes(MIN_PART), random_bytes(777)]
    upload_id = create(s3, bucket, "obj")
    done = {}
    for n in (3, 1, 2):
        done[n] = upload_parts(s3, bucket, "obj", upload_id, [parts[n - 1]], first=n)[0]
    listed = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in listed] == [1, 2, 3]
    complete(s3, bucket, "obj", upload_id, [done[1], done[2], done[3]])
    assert read(s3, bucket, "obj") == b"".join(parts)


def test_small_part_that_is_not_last_is_entity_too_small(s3, bucket):
    upload_id = create(s3, bucket, "obj")
    done = upload_parts(s3, bucket, "obj", upload_id, [random_bytes(MIN_PART - 1), random_bytes(10)])
    with s3_error("EntityTooSmall", 400):
        complete(s3, bucket, "obj", upload_id, done)
    assert not object_exists(s3, bucket, "obj")


def test_parts_out_of_order_in_complete_is_invalid_part_order(s3, bucket):
    upload_id = create(s3, bucket, "obj")
    done = upload_parts(s3, bucket, "obj", upload_id, [random_bytes(MIN_PART), random_bytes(10)])
    with s3_error("InvalidPartOrder", 400):
        complete(s3, bucket, "obj", upload_id, list(reversed(done)))
    assert not object_exists(s3, bucket, "obj")


def test_wrong_part_etag_is_invalid_part(s3, bucket):
    upload_id = create(s3, bucket, "obj")
    done = upload_parts(s3, bucket, "obj", upload_id, [random_bytes(MIN_PART), random_bytes(10)])
    done[1]["ETag"] = md5_etag(b"something else")
    with s3_error("InvalidPart", 400):
        complete(s3, bucket, "obj", upload_id, done)
    assert not object_exists(s3, bucket, "obj")


def test_abort(s3, bucket):
    original = random_bytes(1000)
    s3.put_object(Bucket=bucket, Key="obj", Body=original)
    upload_id = create(s3, bucket, "obj")
    upload_parts(s3, bucket, "obj", upload_id, [random_bytes(MIN_PART)])
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload_id]

    assert http_status(s3.abort_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload_id)) == 204
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with s3_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=2, Body=b"late")
    with s3_error("NoSuchUpload", 404):
        s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    obj = s3.get_object(Bucket=bucket, Key="obj")
    assert obj["ETag"] == md5_etag(original)
    assert obj["Body"].read() == original


# -- ListMultipartUploads ----------------------------------------------------

def test_list_multipart_uploads_prefix_and_pagination(s3, bucket):
    created = []
    for key in ("a/1", "a/1", "a/2", "b/1", "c"):
        created.append((key, create(s3, bucket, key)))

    with_prefix = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert sorted((u["Key"], u["UploadId"]) for u in with_prefix["Uploads"]) == sorted(created[:3])
    assert not with_prefix["IsTruncated"]

    pages, seen = 0, []
    args = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **args)
        pages += 1
        assert pages <= 10, "pagination does not end"
        uploads = page.get("Uploads", [])
        assert len(uploads) <= 1
        seen += [(u["Key"], u["UploadId"]) for u in uploads]
        if not page["IsTruncated"]:
            break
        assert uploads, "a truncated page without uploads"
        assert page["NextKeyMarker"] == uploads[-1]["Key"]
        assert page["NextUploadIdMarker"] == uploads[-1]["UploadId"]
        args = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert len(seen) == len(set(seen)), f"an upload listed twice: {seen}"
    assert sorted(seen) == sorted(created)
    assert [k for k, _ in seen] == sorted(k for k, _ in seen), "uploads not in key order"

    # A key marker alone skips every upload of that key.
    after_a1 = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a/1")["Uploads"]
    assert sorted(u["Key"] for u in after_a1) == ["a/2", "b/1", "c"]

    for key, upload_id in created:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


# -- expiry ------------------------------------------------------------------

def test_abandoned_upload_expires(tmp_path):
    srv = FerryServer(tmp_path / "ferry", config_text=(
        '[volume]\nupload_expiry = "2s"\ngc_interval = "1s"\n\n' + CONFIG_TOML))
    srv.start()
    try:
        s3 = Clients(srv).admin()
        bucket = unique_bucket()
        s3.create_bucket(Bucket=bucket)
        abandoned = create(s3, bucket, "abandoned")
        upload_parts(s3, bucket, "abandoned", abandoned, [random_bytes(1000)])

        data = [random_bytes(MIN_PART), random_bytes(100)]
        upload_id = create(s3, bucket, "done")
        complete(s3, bucket, "done", upload_id, upload_parts(s3, bucket, "done", upload_id, data))
        completed_at = time.monotonic()

        deadline = time.monotonic() + 20
        while s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            assert time.monotonic() < deadline, "abandoned upload still listed after 20 s"
            time.sleep(0.2)
        with s3_error("NoSuchUpload", 404):
            s3.upload_part(Bucket=bucket, Key="abandoned", UploadId=abandoned, PartNumber=2, Body=b"x")
        assert not object_exists(s3, bucket, "abandoned")

        # Let the collector run a few more times past the completed upload's
        # own expiry: the object stays.
        while time.monotonic() < completed_at + 4:
            assert object_exists(s3, bucket, "done")
            time.sleep(0.5)
        assert read(s3, bucket, "done") == b"".join(data)
        # Its completion record has expired with it: a late retry is no
        # longer answered as a success.
        with s3_error("NoSuchUpload", 404):
            complete(s3, bucket, "done", upload_id, [{"PartNumber": 1, "ETag": md5_etag(data[0])},
                                                     {"PartNumber": 2, "ETag": md5_etag(data[1])}])
    finally:
        srv.stop()


# -- UploadPartCopy ----------------------------------------------------------
#
# Ferry does not read the bytes of an UploadPartCopy (the part shares the
# source's blobs), so a copied part's ETag is not the MD5 of its bytes but an
# opaque value derived from the source's ETag and the range (a documented
# difference from AWS). The object's ETag is still built from the part ETags.

def etag_of_part_etags(etags: list[str]) -> str:
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    return f'"{digest}-{len(etags)}"'


def test_transfer_manager_copy_uses_upload_part_copy(clients, bucket):
    s3 = clients.admin()
    data = random_bytes(20 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    etags = []
    s3.meta.events.register("after-call.s3.UploadPartCopy",
                            lambda parsed, **_kw: etags.append(parsed["CopyPartResult"]["ETag"]))
    # One worker, so the parts are copied (and recorded) in order.
    config = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=1)
    s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", Config=config)
    assert len(etags) == 3, "the copy was not done with three UploadPartCopy requests"
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == etag_of_part_etags(etags)
    assert read(s3, bucket, "dst") == data


def test_upload_part_copy_ranges(s3, bucket):
    data = random_bytes(MIN_PART + 1000)
    uploaded = random_bytes(MIN_PART)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    upload_id = create(s3, bucket, "dst")

    def copy_part(n, first, last):
        resp = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=n,
                                   CopySource={"Bucket": bucket, "Key": "src"},
                                   CopySourceRange=f"bytes={first}-{last}")
        etag = resp["CopyPartResult"]["ETag"]
        assert len(etag.strip('"')) == 32 and int(etag.strip('"'), 16) >= 0
        return {"PartNumber": n, "ETag": etag}

    # Parts can mix copied ranges and uploaded data.
    done = [copy_part(1, 1000, len(data) - 1)]
    done += upload_parts(s3, bucket, "dst", upload_id, [uploaded], first=2)
    done.append(copy_part(3, 0, 999))
    assert done[0]["ETag"] != done[2]["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, done[0]["ETag"], MIN_PART), (2, done[1]["ETag"], MIN_PART), (3, done[2]["ETag"], 1000)]
    resp = complete(s3, bucket, "dst", upload_id, done)
    assert resp["ETag"] == etag_of_part_etags([d["ETag"] for d in done])
    assert read(s3, bucket, "dst") == data[1000:] + uploaded + data[:1000]


# -- limits on what copies can build ------------------------------------------
#
# UploadPartCopy shares the source's segments instead of its bytes, so a few
# megabytes could otherwise become an object of unbounded layout and logical
# size. A part is at most 5 GiB, copied or not; an upload's parts span at
# most 10,000 segments together (as many as 10,000 uploaded parts).

GiB = 1024 * MiB


def copy_parts(s3, bucket, key, upload_id, source, numbers, copy_range=None) -> list[dict]:
    extra = {"CopySourceRange": copy_range} if copy_range else {}
    done = []
    for n in numbers:
        resp = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                                   CopySource={"Bucket": bucket, "Key": source}, **extra)
        done.append({"PartNumber": n, "ETag": resp["CopyPartResult"]["ETag"]})
    return done


def test_copies_cannot_grow_a_layout_past_the_limits(s3, bucket):
    s3.put_object(Bucket=bucket, Key="seed", Body=random_bytes(MIN_PART))
    # 100 copies of the seed (100 segments), then 100 copies of that: 10,000
    # segments and 50,000 MiB from 5 MiB of data, exactly at the limit.
    for key, source in (("wide", "seed"), ("huge", "wide")):
        upload_id = create(s3, bucket, key)
        complete(s3, bucket, key, upload_id, copy_parts(s3, bucket, key, upload_id, source, range(1, 101)))
    assert s3.head_object(Bucket=bucket, Key="huge")["ContentLength"] == 10_000 * MIN_PART
    # A copy keeps its source's segments, so it is within the limit too.
    s3.copy_object(Bucket=bucket, Key="huge-copy", CopySource={"Bucket": bucket, "Key": "huge"})

    upload_id = create(s3, bucket, "more")
    with s3_error("EntityTooLarge", 400):
        copy_parts(s3, bucket, "more", upload_id, "huge", [1])
    # 5 GiB ranges of "huge" span 1,024 segments each: nine fit, a tenth not.
    five_gib = f"bytes=0-{5 * GiB - 1}"
    done = copy_parts(s3, bucket, "more", upload_id, "huge", range(1, 10), five_gib)
    with s3_error("InvalidRequest", 400):
        copy_parts(s3, bucket, "more", upload_id, "huge", [10], five_gib)
    # A replaced part's segments no longer count.
    done[-1:] = copy_parts(s3, bucket, "more", upload_id, "huge", [9], five_gib)
    complete(s3, bucket, "more", upload_id, done)
    assert s3.head_object(Bucket=bucket, Key="more")["ContentLength"] == 9 * 5 * GiB


# -- conditional writes ------------------------------------------------------

def race(functions):
    """Run the callables together (released by one barrier); returns each
    one's HTTP status."""
    barrier = threading.Barrier(len(functions))
    statuses = [None] * len(functions)

    def run(i, fn):
        barrier.wait()
        try:
            statuses[i] = http_status(fn())
        except ClientError as e:
            statuses[i] = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@pytest.mark.parametrize("round_", range(5))
def test_racing_create_only_puts(clients, s3, bucket, round_):
    bodies = [random_bytes(64 * 1024), random_bytes(64 * 1024)]
    clients_ = [clients.admin(), clients.admin()]
    statuses = race([
        (lambda c=c, b=b: c.put_object(Bucket=bucket, Key="k", Body=b, IfNoneMatch="*"))
        for c, b in zip(clients_, bodies)
    ])
    assert sorted(statuses, key=str) == sorted([200, (412, "PreconditionFailed")], key=str), statuses
    winner = bodies[statuses.index(200)]
    assert read(s3, bucket, "k") == winner


@pytest.mark.parametrize("round_", range(3))
def test_racing_create_only_completes(clients, s3, bucket, round_):
    bodies = [random_bytes(1000), random_bytes(2000)]
    prepared = []
    for body in bodies:
        c = clients.admin()
        upload_id = create(c, bucket, "k")
        prepared.append((c, upload_id, upload_parts(c, bucket, "k", upload_id, [body])))
    statuses = race([
        (lambda c=c, u=u, d=d: complete(c, bucket, "k", u, d, IfNoneMatch="*"))
        for c, u, d in prepared
    ])
    assert sorted(statuses, key=str) == sorted([200, (412, "PreconditionFailed")], key=str), statuses
    assert read(s3, bucket, "k") == bodies[statuses.index(200)]


def test_if_none_match_star_on_existing_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    with s3_error("PreconditionFailed", 412):
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"third"])
    with s3_error("PreconditionFailed", 412):
        complete(s3, bucket, "k", upload_id, done, IfNoneMatch="*")
    assert read(s3, bucket, "k") == b"first"


def test_if_match_put(s3, bucket):
    e1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    e2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=e1)["ETag"]
    assert e2 == md5_etag(b"v2")
    with s3_error("PreconditionFailed", 412):
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=e1)
    assert read(s3, bucket, "k") == b"v2"
    with s3_error("NoSuchKey", 404):
        s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=e1)
    assert not object_exists(s3, bucket, "missing")


def test_if_match_complete(s3, bucket):
    current = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]

    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"v2"])
    new = complete(s3, bucket, "k", upload_id, done, IfMatch=current)["ETag"]
    assert read(s3, bucket, "k") == b"v2"

    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"v3"])
    with s3_error("PreconditionFailed", 412):
        complete(s3, bucket, "k", upload_id, done, IfMatch=current)  # stale
    assert read(s3, bucket, "k") == b"v2"

    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"v3"])
    complete(s3, bucket, "k", upload_id, done, IfMatch=new)
    assert read(s3, bucket, "k") == b"v3"


# -- GET and HEAD by part number ---------------------------------------------

def test_get_and_head_by_part_number(s3, bucket):
    """SDKs that download in parts (the Java transfer manager, s5cmd) ask for
    part 1, read x-amz-mp-parts-count, then fetch each part by number."""
    parts = [random_bytes(MIN_PART), random_bytes(MIN_PART + 3), random_bytes(1234)]
    upload_id = create(s3, bucket, "parts")
    complete(s3, bucket, "parts", upload_id, upload_parts(s3, bucket, "parts", upload_id, parts))
    total = sum(len(p) for p in parts)
    start = 0
    for n, data in enumerate(parts, start=1):
        head = s3.head_object(Bucket=bucket, Key="parts", PartNumber=n)
        assert head["ContentLength"] == len(data)
        assert head["PartsCount"] == 3
        got = s3.get_object(Bucket=bucket, Key="parts", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {start}-{start + len(data) - 1}/{total}"
        assert got["ETag"] == multipart_etag(parts), "the ETag is the object's"
        assert got["Body"].read() == data
        start += len(data)
    # The transfer manager's way: the parts, fetched in parallel, rebuild the object.
    assert b"".join(
        s3.get_object(Bucket=bucket, Key="parts", PartNumber=n)["Body"].read() for n in (1, 2, 3)
    ) == b"".join(parts)


def test_part_number_errors(s3, bucket):
    parts = [random_bytes(MIN_PART), random_bytes(10)]
    upload_id = create(s3, bucket, "two")
    complete(s3, bucket, "two", upload_id, upload_parts(s3, bucket, "two", upload_id, parts))
    with s3_error("InvalidPartNumber", 416):
        s3.get_object(Bucket=bucket, Key="two", PartNumber=3)
    with s3_error("InvalidRequest", 400):
        s3.get_object(Bucket=bucket, Key="two", PartNumber=1, Range="bytes=0-9")
    with s3_error("InvalidArgument", 400):
        s3.get_object(Bucket=bucket, Key="two", PartNumber=0)
    # HEAD answers have no body: botocore reports the status as the code.
    with s3_error("416", 416):
        s3.head_object(Bucket=bucket, Key="two", PartNumber=3)


def test_an_object_put_in_one_piece_is_its_only_part(s3, bucket):
    body = random_bytes(100_000)
    s3.put_object(Bucket=bucket, Key="single", Body=body)
    got = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert "PartsCount" not in got
    with s3_error("InvalidPartNumber", 416):
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    empty = s3.get_object(Bucket=bucket, Key="empty", PartNumber=1)
    assert empty["Body"].read() == b""


def test_a_copy_keeps_the_parts_of_its_source(s3, bucket):
    parts = [random_bytes(MIN_PART), random_bytes(777)]
    upload_id = create(s3, bucket, "src")
    complete(s3, bucket, "src", upload_id, upload_parts(s3, bucket, "src", upload_id, parts))
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    head = s3.head_object(Bucket=bucket, Key="dst", PartNumber=2)
    assert (head["ContentLength"], head["PartsCount"]) == (777, 2)
    assert s3.get_object(Bucket=bucket, Key="dst", PartNumber=2)["Body"].read() == parts[1]


# -- a repeated CompleteMultipartUpload ----------------------------------------
#
# SDKs retry Complete after a timeout or a 5xx, when the first attempt may
# have committed; S3 answers the repeat with 200 and the same ETag.

def test_repeated_complete_gets_the_first_answer(s3, bucket):
    data = [random_bytes(MIN_PART), random_bytes(1000)]
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, data)
    first = complete(s3, bucket, "k", upload_id, done)
    head = s3.head_object(Bucket=bucket, Key="k")
    again = complete(s3, bucket, "k", upload_id, done)
    assert http_status(again) == 200
    assert again["ETag"] == first["ETag"] == multipart_etag(data)
    assert (again["Bucket"], again["Key"]) == (bucket, "k")
    # Nothing was committed again.
    assert s3.head_object(Bucket=bucket, Key="k")["LastModified"] == head["LastModified"]
    assert read(s3, bucket, "k") == b"".join(data)
    # The part list may omit ETags, as S3 allows.
    bare = complete(s3, bucket, "k", upload_id, [{"PartNumber": p["PartNumber"]} for p in done])
    assert bare["ETag"] == first["ETag"]


def test_repeated_complete_is_answered_before_its_condition(s3, bucket):
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"only"])
    first = complete(s3, bucket, "k", upload_id, done, IfNoneMatch="*")
    # The key exists now, so the condition would fail; the repeat must
    # still get the first answer.
    assert complete(s3, bucket, "k", upload_id, done, IfNoneMatch="*")["ETag"] == first["ETag"]


def test_repeated_complete_never_commits_over_a_later_write(s3, bucket):
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, [b"uploaded"])
    first = complete(s3, bucket, "k", upload_id, done)
    s3.put_object(Bucket=bucket, Key="k", Body=b"written later")
    assert complete(s3, bucket, "k", upload_id, done)["ETag"] == first["ETag"]
    assert read(s3, bucket, "k") == b"written later"


def test_repeated_complete_with_other_parts_is_no_such_upload(s3, bucket):
    data = [random_bytes(MIN_PART), random_bytes(1000)]
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, data)
    complete(s3, bucket, "k", upload_id, done)
    with s3_error("NoSuchUpload", 404):
        complete(s3, bucket, "k", upload_id, done[:1])
    with s3_error("NoSuchUpload", 404):
        complete(s3, bucket, "k", upload_id, [done[0], {"PartNumber": 2, "ETag": md5_etag(b"other")}])
    with s3_error("NoSuchUpload", 404):
        complete(s3, bucket, "other-key", upload_id, done)
    # An aborted upload is not a completed one.
    aborted = create(s3, bucket, "a")
    parts = upload_parts(s3, bucket, "a", aborted, [b"x"])
    s3.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=aborted)
    with s3_error("NoSuchUpload", 404):
        complete(s3, bucket, "a", aborted, parts)


def test_concurrent_completes_of_one_upload_all_succeed(clients, s3, bucket):
    data = [random_bytes(MIN_PART), random_bytes(1000)]
    upload_id = create(s3, bucket, "k")
    done = upload_parts(s3, bucket, "k", upload_id, data)
    callers = [clients.admin() for _ in range(4)]
    statuses = race([(lambda c=c: complete(c, bucket, "k", upload_id, done)) for c in callers])
    assert statuses == [200] * 4, statuses
    assert read(s3, bucket, "k") == b"".join(data)
