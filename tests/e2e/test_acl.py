"""Canned ACLs (`private`, `public-read`) on buckets and objects, and the
anonymous reads a `public-read` ACL lets through, with boto3, aws-cli
and plain urllib."""

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore import UNSIGNED

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from s3util import s3_error, unique_bucket

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def anon(clients):
    return clients.with_keys(None, None, signature_version=UNSIGNED)


def public_read(grants) -> bool:
    return any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)


def owner_full_control(grants) -> bool:
    return any(g["Grantee"]["Type"] == "CanonicalUser" and g["Permission"] == "FULL_CONTROL" for g in grants)


def urlopen_status(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_new_bucket_and_object_are_private(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for grants in (s3.get_bucket_acl(Bucket=bucket)["Grants"],
                   s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]):
        assert owner_full_control(grants)
        assert not public_read(grants)


def test_canned_private_is_accepted_everywhere(s3, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"}, ACL="private")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="private")
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    name = unique_bucket()
    s3.create_bucket(Bucket=name, ACL="private")
    assert not public_read(s3.get_bucket_acl(Bucket=name)["Grants"])


def test_public_read_bucket_lets_anonymous_read_and_list(s3, anon, bucket, server):
    s3.put_object(Bucket=bucket, Key="model/config.json", Body=b"{}")
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="model/config.json")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert public_read(s3.get_bucket_acl(Bucket=bucket)["Grants"])
    assert anon.get_object(Bucket=bucket, Key="model/config.json")["Body"].read() == b"{}"
    assert anon.head_object(Bucket=bucket, Key="model/config.json")["ContentLength"] == 2
    keys = [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["model/config.json"]
    assert [o["Key"] for o in anon.list_objects(Bucket=bucket)["Contents"]] == keys
    # A function without credentials reads it with nothing but an HTTP GET.
    status, body = urlopen_status(f"{server.s3_url}/{bucket}/model/config.json")
    assert (status, body) == (200, b"{}")
    # Reading is all it opens.
    with s3_error("AccessDenied", 403):
        anon.put_object(Bucket=bucket, Key="intruder", Body=b"x")
    with s3_error("AccessDenied", 403):
        anon.delete_object(Bucket=bucket, Key="model/config.json")
    with s3_error("AccessDenied", 403):
        anon.put_bucket_acl(Bucket=bucket, ACL="private")
    with s3_error("AccessDenied", 403):
        anon.list_buckets()
    assert s3.get_object(Bucket=bucket, Key="model/config.json")["Body"].read() == b"{}"
    # Back to private: anonymous reads stop at once.
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="model/config.json")


def test_missing_key_in_public_bucket_is_404_and_in_a_private_one_403(s3, anon, bucket):
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    with s3_error("NoSuchKey", 404):
        anon.get_object(Bucket=bucket, Key="absent")
    private = unique_bucket()
    s3.create_bucket(Bucket=private)
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=private, Key="absent")
    with s3_error("AccessDenied", 403):
        anon.delete_object(Bucket=private, Key="absent")


def test_anonymous_requests_to_a_bucket_that_does_not_exist_are_no_such_bucket(anon):
    # As S3 answers (s3-tests test_object_raw_get_bucket_gone and
    # test_object_delete_key_bucket_gone): 404 whatever the operation.
    gone = unique_bucket()
    with s3_error("NoSuchBucket", 404):
        anon.get_object(Bucket=gone, Key="absent")
    with s3_error("NoSuchBucket", 404):
        anon.delete_object(Bucket=gone, Key="absent")
    with s3_error("NoSuchBucket", 404):
        anon.put_object(Bucket=gone, Key="k", Body=b"x")
    with s3_error("NoSuchBucket", 404):
        anon.list_objects_v2(Bucket=gone)
    # Creating it is a write like any other: refused.
    with s3_error("AccessDenied", 403):
        anon.create_bucket(Bucket=gone)


def test_bucket_created_public_read(s3, anon):
    name = unique_bucket()
    s3.create_bucket(Bucket=name, ACL="public-read")
    s3.put_object(Bucket=name, Key="k", Body=b"open")
    assert anon.get_object(Bucket=name, Key="k")["Body"].read() == b"open"


def test_public_read_object_in_private_bucket(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="open", Body=b"open", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"closed")
    assert public_read(s3.get_object_acl(Bucket=bucket, Key="open")["Grants"])
    assert anon.get_object(Bucket=bucket, Key="open")["Body"].read() == b"open"
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="closed")
    with s3_error("AccessDenied", 403):
        anon.list_objects_v2(Bucket=bucket)
    # PutObjectAcl changes the ACL and nothing else.
    before = s3.head_object(Bucket=bucket, Key="closed")
    s3.put_object_acl(Bucket=bucket, Key="closed", ACL="public-read")
    after = s3.head_object(Bucket=bucket, Key="closed")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert anon.get_object(Bucket=bucket, Key="closed")["Body"].read() == b"closed"
    # A copy gets the ACL of its request, not its source's.
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "open"})
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="copied")
    # An overwrite without an ACL is private again.
    s3.put_object(Bucket=bucket, Key="open", Body=b"again")
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="open")


def test_acl_by_access_control_policy_body(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    policy = {
        "Owner": owner,
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        ],
    }
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    assert anon.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


@pytest.mark.parametrize("kind", ["canned", "grant-header", "policy"])
def test_other_acls_are_not_implemented_and_change_nothing(s3, anon, bucket, kind):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with s3_error("NotImplemented", 501):
        if kind == "canned":
            s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
        elif kind == "grant-header":
            s3.put_bucket_acl(Bucket=bucket, GrantRead=f"uri={ALL_USERS}")
        else:
            owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
            s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
                "Owner": owner,
                "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "WRITE"}],
            })
    with s3_error("NotImplemented", 501):
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ACL="authenticated-read")
    assert not public_read(s3.get_bucket_acl(Bucket=bucket)["Grants"])
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="k")


def test_acl_of_missing_things(s3, bucket):
    with s3_error("NoSuchKey", 404):
        s3.get_object_acl(Bucket=bucket, Key="absent")
    with s3_error("NoSuchKey", 404):
        s3.put_object_acl(Bucket=bucket, Key="absent", ACL="private")
    with s3_error("NoSuchBucket", 404):
        s3.get_bucket_acl(Bucket=unique_bucket())


def test_read_only_key_may_not_change_acls(clients, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    reader = clients.reader()
    assert owner_full_control(reader.get_bucket_acl(Bucket=bucket)["Grants"])
    with s3_error("AccessDenied", 403):
        reader.put_bucket_acl(Bucket=bucket, ACL="public-read")
    with s3_error("AccessDenied", 403):
        reader.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")


def test_aws_cli_acl_private_and_public_read(server, s3, anon, bucket, tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 1000)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1")
    aws = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", server.s3_url]
    subprocess.run(aws + ["s3", "cp", str(src), f"s3://{bucket}/private.bin", "--acl", "private"],
                   check=True, env=env, capture_output=True)
    subprocess.run(aws + ["s3", "cp", str(src), f"s3://{bucket}/public.bin", "--acl", "public-read"],
                   check=True, env=env, capture_output=True)
    assert anon.get_object(Bucket=bucket, Key="public.bin")["Body"].read() == src.read_bytes()
    with s3_error("AccessDenied", 403):
        anon.get_object(Bucket=bucket, Key="private.bin")
    subprocess.run(aws + ["s3api", "put-bucket-acl", "--bucket", bucket, "--acl", "public-read"],
                   check=True, env=env, capture_output=True)
    assert anon.get_object(Bucket=bucket, Key="private.bin")["Body"].read() == src.read_bytes()
