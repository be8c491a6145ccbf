"""Versioning views of an unversioned bucket: GetBucketVersioning has no
status and ListObjectVersions shows every live object as its one `null`
version, which is what SDK test suites rely on to empty a bucket."""

import boto3
import pytest

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from s3util import md5_etag, put_keys, random_bytes, unique_bucket


def all_versions(s3, bucket, **kwargs):
    versions, markers, pages = [], [], 0
    args = dict(kwargs)
    while True:
        page = s3.list_object_versions(Bucket=bucket, **args)
        pages += 1
        assert pages < 1000
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
        if not page["IsTruncated"]:
            return versions, markers
        args = dict(kwargs, KeyMarker=page["NextKeyMarker"])
        if page.get("NextVersionIdMarker"):
            args["VersionIdMarker"] = page["NextVersionIdMarker"]


def test_get_bucket_versioning_has_no_status(s3, bucket):
    resp = s3.get_bucket_versioning(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "Status" not in resp
    assert "MFADelete" not in resp


def test_list_object_versions_after_overwrites_and_deletes(s3, bucket):
    final = {}
    for key, body in [("a", b"a1"), ("b", b"b1"), ("dir/c", b"c1"), ("a", b"a2"), ("d", b"d1"),
                      ("a", b"a3-final"), ("dir/e", b"")]:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        final[key] = body
    for key in ("b", "d"):
        s3.delete_object(Bucket=bucket, Key=key)
        del final[key]
    s3.delete_object(Bucket=bucket, Key="never-existed")

    versions, markers = all_versions(s3, bucket)
    assert markers == []
    assert [v["Key"] for v in versions] == sorted(final)
    for v in versions:
        assert v["VersionId"] == "null"
        assert v["IsLatest"] is True
        assert v["ETag"] == md5_etag(final[v["Key"]])
        assert v["Size"] == len(final[v["Key"]])
        assert v["LastModified"]

    resp = s3.list_object_versions(Bucket=bucket, Prefix="dir/")
    assert [v["Key"] for v in resp["Versions"]] == ["dir/c", "dir/e"]
    resp = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in resp.get("Versions", [])] == ["a"]
    assert [p["Prefix"] for p in resp.get("CommonPrefixes", [])] == ["dir/"]


def test_list_object_versions_pagination(s3, bucket):
    keys = [f"k{i:02d}" for i in range(7)]
    put_keys(s3, bucket, keys)
    seen, args, pages = [], {}, 0
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=3, **args)
        pages += 1
        assert pages < 10
        seen += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        args = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            args["VersionIdMarker"] = page["NextVersionIdMarker"]
    assert seen == keys
    assert pages == 3


def test_sdk_style_empty_and_delete_bucket(s3):
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    keys = [f"obj/{i}" for i in range(25)] + ["top", "with space", "ü"]
    put_keys(s3, bucket, keys, body_for=lambda k: random_bytes(100))
    s3.put_object(Bucket=bucket, Key="top", Body=b"overwritten")

    # The cleanup loop of SDK test suites: list every version and delete
    # marker, delete them by version id, repeat until empty.
    for _ in range(10):
        versions, markers = all_versions(s3, bucket)
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions + markers]
        if not objects:
            break
        for i in range(0, len(objects), 10):
            resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + 10]})
            assert resp.get("Errors", []) == []
            assert sorted(d["Key"] for d in resp["Deleted"]) == sorted(o["Key"] for o in objects[i:i + 10])
    else:
        pytest.fail("bucket never became empty")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_delete_object_with_null_version_id(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    versions, markers = all_versions(s3, bucket)
    assert versions == [] and markers == []


def test_boto3_resource_object_versions_delete(server, s3):
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    put_keys(s3, bucket, [f"r/{i}" for i in range(12)])
    resource = boto3.session.Session().resource(
        "s3", endpoint_url=server.s3_url, region_name="us-east-1",
        aws_access_key_id=ADMIN_ACCESS_KEY, aws_secret_access_key=ADMIN_SECRET_KEY,
        config=s3.meta.config)
    resource.Bucket(bucket).object_versions.delete()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    resource.Bucket(bucket).delete()
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
