"""CopyObject: metadata directives, copying onto itself, copy-source
conditionals, missing sources and independence from the source."""

from datetime import datetime, timedelta, timezone

import pytest

from s3util import md5_etag, random_bytes, s3_error, unique_bucket

HEADERS = dict(
    ContentType="application/x-original",
    CacheControl="max-age=60",
    ContentDisposition='attachment; filename="orig.bin"',
    ContentEncoding="identity",
    ContentLanguage="fr",
    Metadata={"color": "blue", "origin": "source"},
)


@pytest.fixture
def src(s3, bucket):
    data = random_bytes(4096)
    etag = s3.put_object(Bucket=bucket, Key="src", Body=data, **HEADERS)["ETag"]
    return bucket, "src", data, etag


def described(head):
    return {name: head.get(name) for name in HEADERS}


def test_copy_keeps_metadata_by_default(s3, src):
    bucket, key, data, etag = src
    other = unique_bucket()
    s3.create_bucket(Bucket=other)
    for dst_bucket, dst_key in ((bucket, "copy"), (other, "elsewhere/copy")):
        resp = s3.copy_object(Bucket=dst_bucket, Key=dst_key, CopySource={"Bucket": bucket, "Key": key})
        assert resp["CopyObjectResult"]["ETag"] == etag
        head = s3.head_object(Bucket=dst_bucket, Key=dst_key)
        assert described(head) == HEADERS
        assert head["ETag"] == etag
        assert s3.get_object(Bucket=dst_bucket, Key=dst_key)["Body"].read() == data


def test_explicit_copy_directive_ignores_new_metadata(s3, src):
    bucket, key, data, _ = src
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key},
                   MetadataDirective="COPY")
    assert described(s3.head_object(Bucket=bucket, Key="copy")) == HEADERS


def test_replace_directive_replaces_metadata(s3, src):
    bucket, key, data, etag = src
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key},
                   MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"shape": "square"})
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"shape": "square"}
    for name in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage"):
        assert head.get(name) is None, f"{name} was copied despite REPLACE"
    assert head["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == data
    # The source is untouched.
    assert described(s3.head_object(Bucket=bucket, Key=key)) == HEADERS


def test_copy_onto_itself_needs_replace(s3, src):
    bucket, key, data, etag = src
    with s3_error("InvalidRequest", 400):
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert described(s3.head_object(Bucket=bucket, Key=key)) == HEADERS

    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                   MetadataDirective="REPLACE", ContentType="text/csv", Metadata={"rev": "2"})
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {"rev": "2"}
    assert head["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


@pytest.mark.parametrize("condition", [
    "if-match-wrong", "if-none-match-matching", "if-modified-since-future", "if-unmodified-since-past",
])
def test_copy_source_conditionals_fail(s3, src, condition):
    bucket, key, _, etag = src
    args = {
        "if-match-wrong": {"CopySourceIfMatch": md5_etag(b"other")},
        "if-none-match-matching": {"CopySourceIfNoneMatch": etag},
        "if-modified-since-future": {"CopySourceIfModifiedSince": datetime.now(timezone.utc) + timedelta(days=1)},
        "if-unmodified-since-past": {"CopySourceIfUnmodifiedSince": datetime.now(timezone.utc) - timedelta(days=1)},
    }[condition]
    with s3_error("PreconditionFailed", 412):
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": key}, **args)
    with s3_error({"NoSuchKey", "404"}, 404):
        s3.head_object(Bucket=bucket, Key="copy")


def test_copy_source_conditionals_pass(s3, src):
    bucket, key, data, etag = src
    past = datetime.now(timezone.utc) - timedelta(days=1)
    for n, args in enumerate([
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": md5_etag(b"other")},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": datetime.now(timezone.utc) + timedelta(days=1)},
    ]):
        s3.copy_object(Bucket=bucket, Key=f"copy{n}", CopySource={"Bucket": bucket, "Key": key}, **args)
        assert s3.get_object(Bucket=bucket, Key=f"copy{n}")["Body"].read() == data, args


def test_copy_of_missing_key_is_no_such_key(s3, bucket):
    with s3_error("NoSuchKey", 404):
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "missing"})
    with s3_error("NoSuchBucket", 404):
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": unique_bucket(), "Key": "k"})


def test_copy_survives_deleting_and_overwriting_the_source(s3, bucket):
    data = random_bytes(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    s3.copy_object(Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "src"})
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket, Key="copy1")["Body"].read() == data
    s3.delete_object(Bucket=bucket, Key="copy1")
    assert s3.get_object(Bucket=bucket, Key="copy2")["Body"].read() == data
    s3.put_object(Bucket=bucket, Key="src", Body=b"new source")
    assert s3.get_object(Bucket=bucket, Key="copy2")["Body"].read() == data


def test_copy_with_range_read_of_copy(s3, bucket):
    data = random_bytes(100_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    got = s3.get_object(Bucket=bucket, Key="copy", Range="bytes=1000-1999")
    assert got["Body"].read() == data[1000:2000]
