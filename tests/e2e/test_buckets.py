"""Bucket lifecycle: create, list, head, location, delete and their errors."""

import pytest
from botocore.exceptions import ClientError

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, CONFIG_TOML, FerryServer
from s3util import http_status, make_client, s3_error, unique_bucket


def test_create_bucket_then_list_buckets_shows_it(s3):
    name = unique_bucket()
    resp = s3.create_bucket(Bucket=name)
    assert http_status(resp) == 200
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name in names, f"{name} missing from ListBuckets: {names}"


def test_list_buckets_entries_have_creation_date(s3, bucket):
    entry = next(b for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket)
    assert entry.get("CreationDate") is not None


def test_head_bucket_existing_is_200(s3, bucket):
    assert http_status(s3.head_bucket(Bucket=bucket)) == 200


def test_head_bucket_missing_is_404(s3):
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=unique_bucket("missing"))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_get_bucket_location_is_us_east_1(s3, bucket):
    resp = s3.get_bucket_location(Bucket=bucket)
    # S3 reports us-east-1 as an empty LocationConstraint; accept either form.
    assert resp.get("LocationConstraint") in (None, "", "us-east-1"), resp.get("LocationConstraint")


def test_get_bucket_location_of_missing_bucket_is_no_such_bucket(s3):
    with s3_error("NoSuchBucket", 404):
        s3.get_bucket_location(Bucket=unique_bucket("missing"))


def test_delete_empty_bucket(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    resp = s3.delete_bucket(Bucket=name)
    assert http_status(resp) == 204
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name not in names
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_missing_bucket_is_no_such_bucket(s3):
    with s3_error("NoSuchBucket", 404):
        s3.delete_bucket(Bucket=unique_bucket("missing"))


def test_delete_non_empty_bucket_is_bucket_not_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep-me", Body=b"x")
    with s3_error("BucketNotEmpty", 409):
        s3.delete_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="keep-me")["Body"].read() == b"x", "object lost"


def test_bucket_can_be_deleted_after_emptying(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k")
    assert http_status(s3.delete_bucket(Bucket=bucket)) == 204


def test_create_owned_bucket_again_in_us_east_1_succeeds_and_changes_nothing(s3, bucket):
    # S3's legacy answer in us-east-1 (this server's region).
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    created = [b for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket][0]["CreationDate"]
    assert http_status(s3.create_bucket(Bucket=bucket)) == 200
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"x"
    again = [b for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket][0]["CreationDate"]
    assert again == created


def test_create_owned_bucket_again_elsewhere_is_already_owned(tmp_path):
    srv = FerryServer(tmp_path / "ferry", config_text='[server]\nregion = "eu-west-1"\n\n' + CONFIG_TOML)
    srv.start()
    try:
        s3 = make_client(srv.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, region="eu-west-1")
        name = unique_bucket()
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        with s3_error("BucketAlreadyOwnedByYou", 409):
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    finally:
        srv.stop()


def test_recreating_a_deleted_bucket_starts_empty(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="old", Body=b"x")
    s3.delete_object(Bucket=name, Key="old")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0


@pytest.mark.parametrize("name", ["AB", "a", "bad_name!", "-leading-dash", "trailing-dash-", "x" * 64, "a..b", "192.168.5.4"])
def test_invalid_bucket_name_is_rejected(clients, s3, name):
    raw = clients.admin(validate_bucket_names=False)
    with s3_error("InvalidBucketName", 400):
        raw.create_bucket(Bucket=name)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name not in names


@pytest.mark.parametrize("name", ["abc", "a" * 63, "1.2-x.y", "with-dash.and.dots"])
def test_valid_bucket_name_edge_cases_are_accepted(s3, name):
    s3.create_bucket(Bucket=name)
    assert http_status(s3.head_bucket(Bucket=name)) == 200
    s3.delete_bucket(Bucket=name)
