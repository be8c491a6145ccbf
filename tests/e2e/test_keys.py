"""Every kind of key S3 accepts must coexist and round-trip unchanged."""

import pytest

from s3util import list_all_v2, s3_error

ODD_KEYS = [
    "a",
    "a/b",
    "dir/",
    "a//b",
    "./x",
    "../y",
    "x/./y",
    "x/../y",
    "ünï/cödé 日本",
    "sp ace",
    "plus+sign",
    "percent%20",
    "question?mark",
    "hash#tag",
    "amp&eq=",
    "semi;colon",
    "tilde~",
    "trailing space ",
    "/leading-slash",
    "emoji-🚀",
    "new\nline",
    "carriage\rreturn",
    "caf\u00e9",  # NFC
    "cafe\u0301",  # NFD: a different key
    "Case",
    "case",
    "k" * 1024,
    "ü" * 512,  # 1024 bytes of UTF-8
]


def _body(key: str) -> bytes:
    return ("body of " + key).encode()


@pytest.fixture(scope="module")
def key_bucket(s3):
    """One bucket holding all the odd keys at once, so they must coexist."""
    name = "keys-" + "odd"
    s3.create_bucket(Bucket=name)
    for key in ODD_KEYS:
        s3.put_object(Bucket=name, Key=key, Body=_body(key))
    return name


@pytest.mark.parametrize("key", ODD_KEYS, ids=lambda k: repr(k[:20]) + (f"..{len(k.encode())}B" if len(k) > 20 else ""))
def test_odd_key_round_trips(s3, key_bucket, key):
    got = s3.get_object(Bucket=key_bucket, Key=key)
    assert got["Body"].read() == _body(key), f"wrong body for key {key!r}"
    assert s3.head_object(Bucket=key_bucket, Key=key)["ContentLength"] == len(_body(key))


def test_odd_keys_are_listed_exactly(s3, key_bucket):
    keys, _ = list_all_v2(s3, key_bucket)
    assert keys == sorted(ODD_KEYS, key=lambda k: k.encode()), "listing differs from the keys put"


def test_dir_marker_and_child_coexist(s3, bucket):
    s3.put_object(Bucket=bucket, Key="dir/", Body=b"")
    s3.put_object(Bucket=bucket, Key="dir/child", Body=b"child")
    s3.put_object(Bucket=bucket, Key="dir", Body=b"file named dir")
    assert s3.get_object(Bucket=bucket, Key="dir/")["Body"].read() == b""
    assert s3.get_object(Bucket=bucket, Key="dir/child")["Body"].read() == b"child"
    assert s3.get_object(Bucket=bucket, Key="dir")["Body"].read() == b"file named dir"


def test_file_and_prefix_with_same_name_coexist(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"file")
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"nested")
    s3.delete_object(Bucket=bucket, Key="a")
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"nested"


def test_delete_odd_key_leaves_neighbours(s3, bucket):
    for key in ["x/./y", "x/y", "x//y"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.delete_object(Bucket=bucket, Key="x/./y")
    keys, _ = list_all_v2(s3, bucket)
    assert keys == ["x//y", "x/y"]


@pytest.mark.parametrize("key", ["k" * 1025, "ü" * 512 + "x"], ids=["1025-ascii", "1025-utf8-bytes"])
def test_key_longer_than_1024_bytes_is_rejected(s3, bucket, key):
    with s3_error("KeyTooLongError", 400):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert list_all_v2(s3, bucket)[0] == []


@pytest.mark.parametrize("prefix,expected", [
    ("50%", ["50%off"]),
    ("a_", ["a_b"]),
    ("a.", ["a.b"]),
    ("a*", ["a*b"]),
    ("[x]", ["[x]y"]),
    ("\\", ["\\back"]),
], ids=["percent", "underscore", "dot", "star", "brackets", "backslash"])
def test_prefix_is_literal_not_a_pattern(s3, bucket, prefix, expected):
    # Wildcards of LIKE, glob and regex must not leak into prefix matching.
    keys = ["50%off", "50xoff", "a_b", "ab", "axb", "a.b", "a*b", "[x]y", "xy", "\\back", "back"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert listed == expected, f"prefix {prefix!r} matched {listed}"
