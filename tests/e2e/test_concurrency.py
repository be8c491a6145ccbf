"""Concurrent clients: racing overwrites, readers during overwrites and
deletes, racing bucket creation."""

import hashlib
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError

from s3util import MiB, list_all_v2, md5_etag, random_bytes, unique_bucket


def test_racing_overwrites_never_tear(s3, bucket):
    versions = [random_bytes(256 * 1024) for _ in range(6)]
    by_etag = {md5_etag(v): v for v in versions}
    s3.put_object(Bucket=bucket, Key="hot", Body=versions[0])

    def writer(i):
        for _ in range(3):
            s3.put_object(Bucket=bucket, Key="hot", Body=versions[i])

    def reader(_):
        seen = []
        for _ in range(6):
            got = s3.get_object(Bucket=bucket, Key="hot")
            body = got["Body"].read()
            assert got["ETag"] in by_etag, f"ETag {got['ETag']} is not one of the written versions"
            assert body == by_etag[got["ETag"]], "body does not match the ETag it came with (torn read)"
            seen.append(got["ETag"])
        return seen

    with ThreadPoolExecutor(max_workers=10) as pool:
        writes = [pool.submit(writer, i) for i in range(len(versions))]
        reads = [pool.submit(reader, i) for i in range(4)]
        for f in writes + reads:
            f.result()

    final = s3.get_object(Bucket=bucket, Key="hot")
    assert final["Body"].read() == by_etag[final["ETag"]]
    assert list_all_v2(s3, bucket)[0] == ["hot"], "racing overwrites left more than one key"


def test_reader_started_before_overwrite_gets_old_bytes(s3, bucket):
    old, new = random_bytes(20 * MiB), random_bytes(20 * MiB)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    got = s3.get_object(Bucket=bucket, Key="k")
    first = got["Body"].read(64 * 1024)
    s3.put_object(Bucket=bucket, Key="k", Body=new)
    rest = got["Body"].read()
    assert hashlib.sha256(first + rest).digest() == hashlib.sha256(old).digest(), \
        "a GET that started before an overwrite did not finish with the old bytes"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == new


def test_reader_started_before_delete_gets_all_bytes(s3, bucket):
    data = random_bytes(20 * MiB)
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    got = s3.get_object(Bucket=bucket, Key="k")
    first = got["Body"].read(64 * 1024)
    s3.delete_object(Bucket=bucket, Key="k")
    rest = got["Body"].read()
    assert hashlib.sha256(first + rest).digest() == hashlib.sha256(data).digest(), \
        "a GET that started before a delete did not finish with the object's bytes"


def test_racing_create_bucket_makes_one_bucket(s3):
    # In us-east-1 creating a bucket you own again succeeds (S3's legacy
    # answer), so every racer gets 200; there must still be exactly one
    # bucket, created once (the metadata conformance suite checks that one
    # create wins).
    name = unique_bucket("race")

    def create(_):
        try:
            s3.create_bucket(Bucket=name)
            return "created"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(create, range(6)))
    assert outcomes == ["created"] * 6, outcomes
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(name) == 1


def test_parallel_puts_to_distinct_keys_all_land(s3, bucket):
    bodies = {f"p/{i:03d}": random_bytes(1000 + i) for i in range(64)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), bodies.items()))
    assert list_all_v2(s3, bucket)[0] == sorted(bodies)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = dict(pool.map(lambda k: (k, s3.get_object(Bucket=bucket, Key=k)["Body"].read()), bodies))
    assert got == bodies
