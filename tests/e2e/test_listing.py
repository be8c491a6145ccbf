"""ListObjectsV2 and ListObjects (V1): order, prefixes, delimiters, paging.

Note: boto3 adds `encoding-type=url` to every listing on its own and decodes
the answer, so all of these also exercise the server's URL encoding.
"""

import urllib.parse

import botocore.handlers
import pytest

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from s3util import list_all_v2, put_keys, s3_error, signed_request, unique_bucket


def _keys(page):
    return [o["Key"] for o in page.get("Contents", [])]


def _prefixes(page):
    return [p["Prefix"] for p in page.get("CommonPrefixes", [])]


@pytest.fixture
def filled(s3, bucket):
    def fill(keys):
        put_keys(s3, bucket, keys)
        return bucket
    return fill


# -- V2 basics ---------------------------------------------------------------

def test_empty_bucket_lists_nothing(s3, bucket):
    page = s3.list_objects_v2(Bucket=bucket)
    assert page["KeyCount"] == 0
    assert "Contents" not in page
    assert page["IsTruncated"] is False


def test_list_is_in_byte_order(s3, filled):
    keys = ["a/x", "a.txt", "a-b", "B", "a", "z", "ü", "a0", "~"]
    bucket = filled(keys)
    page = s3.list_objects_v2(Bucket=bucket)
    assert _keys(page) == ["B", "a", "a-b", "a.txt", "a/x", "a0", "z", "~", "ü"]


def test_list_entries_have_size_etag_and_date(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    entry = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert entry["Key"] == "k"
    assert entry["Size"] == 5
    assert entry["ETag"] == '"827ccb0eea8a706c4c34a16891f84e7b"'
    assert entry.get("LastModified") is not None


def test_prefix_filters_keys(s3, filled):
    bucket = filled(["photos/2024/a.jpg", "photos/2025/b.jpg", "photosynthesis", "docs/x", "photo"])
    page = s3.list_objects_v2(Bucket=bucket, Prefix="photos/")
    assert _keys(page) == ["photos/2024/a.jpg", "photos/2025/b.jpg"]
    assert page["KeyCount"] == 2
    assert page.get("Prefix") == "photos/"


def test_prefix_matching_nothing(s3, filled):
    bucket = filled(["a", "b"])
    page = s3.list_objects_v2(Bucket=bucket, Prefix="zzz")
    assert page["KeyCount"] == 0
    assert _keys(page) == []


def test_delimiter_groups_common_prefixes(s3, filled):
    bucket = filled(["top.txt", "dir/a", "dir/b", "dir/sub/c", "other/d", "z"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert _keys(page) == ["top.txt", "z"]
    assert _prefixes(page) == ["dir/", "other/"]
    assert page["KeyCount"] == 4, "KeyCount counts keys and common prefixes"


def test_delimiter_with_prefix(s3, filled):
    bucket = filled(["dir/a", "dir/b", "dir/sub/c", "dir/sub/d", "dir/sub2/e", "other/d"])
    page = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert _keys(page) == ["dir/a", "dir/b"]
    assert _prefixes(page) == ["dir/sub/", "dir/sub2/"]


def test_delimiter_with_prefix_ending_mid_name(s3, filled):
    bucket = filled(["dir/sub1/a", "dir/sub1/b", "dir/sub2/c", "dir/sum", "dir/sa/x", "dir/file"])
    page = s3.list_objects_v2(Bucket=bucket, Prefix="dir/su", Delimiter="/")
    assert _keys(page) == ["dir/sum"]
    assert _prefixes(page) == ["dir/sub1/", "dir/sub2/"]


def test_dir_marker_key_is_a_common_prefix_under_delimiter(s3, filled):
    bucket = filled(["dir/", "dir/x"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert _keys(page) == []
    assert _prefixes(page) == ["dir/"]
    page = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert _keys(page) == ["dir/", "dir/x"]


def test_non_slash_delimiter(s3, filled):
    bucket = filled(["a-1", "a-2", "b-1", "c"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="-")
    assert _keys(page) == ["c"]
    assert _prefixes(page) == ["a-", "b-"]


# -- V2 paging ---------------------------------------------------------------

def test_max_keys_pagination_returns_every_key_once_in_order(s3, filled):
    keys = [f"key-{i:03d}" for i in range(25)]
    bucket = filled(keys)
    seen, token, pages = [], None, []
    while True:
        args = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=7, **args)
        pages.append(page)
        assert page["KeyCount"] == len(_keys(page)), "KeyCount disagrees with Contents"
        assert page["MaxKeys"] == 7
        seen += _keys(page)
        if not page["IsTruncated"]:
            assert not page.get("NextContinuationToken"), "last page has a continuation token"
            break
        assert page.get("NextContinuationToken"), "truncated page without NextContinuationToken"
        token = page["NextContinuationToken"]
        assert len(pages) < 10, "pagination does not terminate"
    assert [len(_keys(p)) for p in pages] == [7, 7, 7, 4]
    assert seen == keys


def test_continuation_token_is_echoed(s3, filled):
    bucket = filled([f"k{i}" for i in range(3)])
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    second = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, ContinuationToken=first["NextContinuationToken"])
    assert second.get("ContinuationToken") == first["NextContinuationToken"]


def test_pagination_with_delimiter_counts_prefixes_once(s3, filled):
    keys = ["a/1", "a/2", "b/1", "c", "d/1", "d/2", "e", "f/1"]
    bucket = filled(keys)
    seen_keys, seen_prefixes = list_all_v2(s3, bucket, Delimiter="/", MaxKeys=2)
    assert seen_keys == ["c", "e"]
    assert seen_prefixes == ["a/", "b/", "d/", "f/"]


def test_start_after(s3, filled):
    bucket = filled(["a", "b", "c", "d"])
    page = s3.list_objects_v2(Bucket=bucket, StartAfter="b")
    assert _keys(page) == ["c", "d"]
    assert page.get("StartAfter") == "b"


def test_start_after_key_that_does_not_exist(s3, filled):
    bucket = filled(["a", "b", "c", "d"])
    assert _keys(s3.list_objects_v2(Bucket=bucket, StartAfter="bb")) == ["c", "d"]


def test_start_after_with_prefix(s3, filled):
    bucket = filled(["p/1", "p/2", "p/3", "q/1"])
    assert _keys(s3.list_objects_v2(Bucket=bucket, Prefix="p/", StartAfter="p/1")) == ["p/2", "p/3"]


def test_max_keys_zero(s3, filled):
    bucket = filled(["a", "b"])
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert _keys(page) == []
    assert page["KeyCount"] == 0


SPECIAL = ["sp ace", "ünï/cödé 日本", "plus+sign", "percent%20", "amp&lt", "tab\tkey", "a<b>"]


def test_special_keys_round_trip_through_default_listing(s3, filled):
    # boto3 asked for encoding-type=url itself, so it decodes the answer.
    bucket = filled(SPECIAL)
    assert _keys(s3.list_objects_v2(Bucket=bucket)) == sorted(SPECIAL, key=str.encode)


def test_explicit_encoding_type_url_returns_encoded_keys(s3, filled):
    # Asked for explicitly, boto3 leaves decoding to the caller; decode the
    # way boto3 itself does (unquote_plus).
    bucket = filled(SPECIAL)
    page = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert page.get("EncodingType") == "url"
    raw_keys = _keys(page)
    for key in raw_keys:
        assert key.isascii() and " " not in key and "\t" not in key and "<" not in key, f"key not URL-encoded: {key!r}"
    assert [urllib.parse.unquote_plus(k) for k in raw_keys] == sorted(SPECIAL, key=str.encode)


def test_special_prefix_and_delimiter_round_trip(s3, filled):
    bucket = filled(["ünï/cödé 日本", "ünï/sp ace/x", "ünï/plus+/y"])
    page = s3.list_objects_v2(Bucket=bucket, Prefix="ünï/", Delimiter="/")
    assert _keys(page) == ["ünï/cödé 日本"]
    assert _prefixes(page) == ["ünï/plus+/", "ünï/sp ace/"]
    assert page["Prefix"] == "ünï/"


def test_special_start_after_round_trips(s3, filled):
    bucket = filled(["sp ace/1", "sp ace/2", "sp ace/3"])
    page = s3.list_objects_v2(Bucket=bucket, StartAfter="sp ace/1")
    assert _keys(page) == ["sp ace/2", "sp ace/3"]
    assert page.get("StartAfter") == "sp ace/1"


def test_listing_without_encoding_type_returns_raw_keys(clients, filled):
    # Stop boto3 from asking for encoding-type=url: the server must then put
    # the keys in the XML as they are.
    raw = clients.admin()
    raw.meta.events.unregister("before-parameter-build.s3.ListObjectsV2",
                               botocore.handlers.set_list_objects_encoding_type_url)
    keys = ["sp ace", "ünï/cödé 日本", "plus+sign", "percent%20", "amp&lt"]
    bucket = filled(keys)
    page = raw.list_objects_v2(Bucket=bucket)
    assert page.get("EncodingType") is None
    assert _keys(page) == sorted(keys, key=str.encode)


def test_max_keys_above_1000_is_capped(s3, filled):
    keys = [f"obj-{i:05d}" for i in range(1005)]
    bucket = filled(keys)
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert page["KeyCount"] == 1000, f"expected 1000 keys, got {page['KeyCount']}"
    assert len(_keys(page)) == 1000
    assert page["IsTruncated"] is True
    rest = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000, ContinuationToken=page["NextContinuationToken"])
    assert _keys(rest) == keys[1000:]
    assert rest["IsTruncated"] is False
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1000, "the default page size is 1000"


def test_list_missing_bucket_is_no_such_bucket(s3):
    with s3_error("NoSuchBucket", 404):
        s3.list_objects_v2(Bucket=unique_bucket("missing"))


# -- V1 ----------------------------------------------------------------------

def test_v1_lists_in_order(s3, filled):
    bucket = filled(["b", "a/x", "a.txt", "a-b"])
    page = s3.list_objects(Bucket=bucket)
    assert _keys(page) == ["a-b", "a.txt", "a/x", "b"]
    assert page["IsTruncated"] is False


def test_v1_marker(s3, filled):
    bucket = filled(["a", "b", "c", "d"])
    page = s3.list_objects(Bucket=bucket, Marker="b")
    assert _keys(page) == ["c", "d"]
    assert page.get("Marker") == "b"


def test_v1_max_keys_truncates(s3, filled):
    bucket = filled([f"k{i}" for i in range(5)])
    page = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert _keys(page) == ["k0", "k1"]
    assert page["IsTruncated"] is True
    rest = s3.list_objects(Bucket=bucket, Marker=_keys(page)[-1])
    assert _keys(rest) == ["k2", "k3", "k4"]
    assert rest["IsTruncated"] is False


def test_v1_next_marker_with_delimiter_pages_through_everything(s3, filled):
    bucket = filled(["a/1", "a/2", "b/1", "c", "d/1", "e", "f"])
    keys, prefixes, marker = [], [], None
    for _ in range(10):
        args = {"Marker": marker} if marker else {}
        page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2, **args)
        keys += _keys(page)
        prefixes += _prefixes(page)
        if not page["IsTruncated"]:
            break
        assert page.get("NextMarker"), "truncated V1 listing with a delimiter must carry NextMarker"
        marker = page["NextMarker"]
    else:
        raise AssertionError("V1 paging never ended")
    assert keys == ["c", "e", "f"]
    assert prefixes == ["a/", "b/", "d/"]


def test_v1_prefix_and_delimiter(s3, filled):
    bucket = filled(["dir/a", "dir/sub/b", "other"])
    page = s3.list_objects(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert _keys(page) == ["dir/a"]
    assert _prefixes(page) == ["dir/sub/"]


def test_v1_special_keys(s3, filled):
    bucket = filled(SPECIAL)
    assert _keys(s3.list_objects(Bucket=bucket)) == sorted(SPECIAL, key=str.encode)


# -- invalid arguments -------------------------------------------------------

def test_invalid_continuation_token_is_invalid_argument(s3, filled):
    bucket = filled(["a"])
    with s3_error("InvalidArgument", 400):
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="this-is-not-a-token!!")


@pytest.mark.parametrize("query", ["list-type=2&max-keys=-1", "list-type=2&max-keys=abc",
                                   "list-type=2&encoding-type=bogus"])
def test_invalid_list_arguments_are_invalid_argument(server, bucket, query):
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "GET", f"/{bucket}?{query}")
    assert resp.status == 400, f"?{query} answered {resp.status}: {resp.body[:300]!r}"
    assert resp.error_code() == "InvalidArgument", resp.body[:300]


def test_listing_last_modified_matches_head(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]
    head = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    assert listed.replace(microsecond=0) == head.replace(microsecond=0)


def test_continuation_token_wins_over_start_after(s3, filled):
    bucket = filled(["a", "b", "c", "d", "e"])
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, StartAfter="a")
    assert _keys(first) == ["b", "c"]
    rest = s3.list_objects_v2(Bucket=bucket, StartAfter="a", ContinuationToken=first["NextContinuationToken"])
    assert _keys(rest) == ["d", "e"]


def test_key_count_with_delimiter_pages(s3, filled):
    bucket = filled(["a/1", "a/2", "b", "c/1", "d"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=3)
    assert _keys(page) == ["b"] and _prefixes(page) == ["a/", "c/"]
    assert page["KeyCount"] == 3
    assert page["IsTruncated"] is True


def test_paging_one_key_at_a_time_through_special_keys(s3, filled):
    bucket = filled(SPECIAL)
    keys, _ = list_all_v2(s3, bucket, MaxKeys=1)
    assert keys == sorted(SPECIAL, key=str.encode)


def test_v1_paging_with_special_next_markers(s3, filled):
    keys = ["sp ace/1", "sp ace/2", "ünï/x", "plus+/y", "percent%20/z", "top level"]
    bucket = filled(keys)
    seen_keys, seen_prefixes, marker = [], [], None
    for _ in range(10):
        args = {"Marker": marker} if marker else {}
        page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, **args)
        seen_keys += _keys(page)
        seen_prefixes += _prefixes(page)
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert seen_prefixes == ["percent%20/", "plus+/", "sp ace/", "ünï/"]
    assert seen_keys == ["top level"]


# -- encoding of every listing, and the empty delimiter -----------------------

# Keys with everything `encoding-type=url` exists for: characters boto3's
# `unquote_plus` would turn into others if sent raw (`+`, `%`), query
# syntax, unicode, and control characters XML 1.0 cannot carry.
RESERVED_KEYS = sorted([
    "a+b", "a b", "a+b c", "100%", "%41", "amp&x", "eq=y", "q?z", "hash#h",
    "semi;colon", "dir+1/file+2", "uni-\u65e5\u672c\u8a9e", "ctl\x01x", "tab\tx",
    "nl\nx", "tilde~star*", "quote\"apos'",
], key=lambda k: k.encode())


# XML 1.0 cannot carry this one at all: only URL-encoded answers (the
# listings) can name it, so boto3 cannot parse a DeleteObjects or
# CreateMultipartUpload answer that does, from S3 or from Ferry.
NOT_IN_XML = "ctl\x01x"


@pytest.fixture
def reserved(s3, bucket):
    put_keys(s3, bucket, RESERVED_KEYS)
    return bucket


def test_every_listing_round_trips_reserved_characters(s3, reserved):
    v2, _ = list_all_v2(s3, reserved)
    assert v2 == RESERVED_KEYS
    assert _keys(s3.list_objects(Bucket=reserved)) == RESERVED_KEYS
    versions = s3.list_object_versions(Bucket=reserved)
    assert [v["Key"] for v in versions["Versions"]] == RESERVED_KEYS
    # Common prefixes are encoded too, in every listing.
    s3.put_object(Bucket=reserved, Key="p+q/inner", Body=b"x")
    for page in (s3.list_objects_v2(Bucket=reserved, Delimiter="/"),
                 s3.list_objects(Bucket=reserved, Delimiter="/"),
                 s3.list_object_versions(Bucket=reserved, Delimiter="/")):
        assert "p+q/" in _prefixes(page), page.get("CommonPrefixes")


def test_versions_listing_pages_through_reserved_markers(s3, reserved):
    seen, marker = [], None
    for _ in range(100):
        args = {"Bucket": reserved, "MaxKeys": 2}
        if marker is not None:
            args.update(KeyMarker=marker, VersionIdMarker="null")
        page = s3.list_object_versions(**args)
        seen += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextKeyMarker"]
    assert seen == RESERVED_KEYS


def test_cleanup_by_versions_empties_the_bucket(s3, reserved):
    # What test-suite cleanup helpers do: delete every listed version, then
    # the bucket. A key decoded wrongly would be left behind.
    versions = s3.list_object_versions(Bucket=reserved)["Versions"]
    result = s3.delete_objects(Bucket=reserved, Delete={
        "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions
                    if v["Key"] != NOT_IN_XML]})
    assert not result.get("Errors")
    s3.delete_object(Bucket=reserved, Key=NOT_IN_XML, VersionId="null")
    s3.delete_bucket(Bucket=reserved)


def test_multipart_uploads_listing_encodes_keys(s3, reserved):
    keys = [k for k in RESERVED_KEYS if k != NOT_IN_XML]
    for key in keys:
        s3.create_multipart_upload(Bucket=reserved, Key=key)
    page = s3.list_multipart_uploads(Bucket=reserved, EncodingType="url", Prefix="a+b")
    # boto3 does not decode this listing by itself: the raw values must be
    # the percent-encoded names.
    assert page["EncodingType"] == "url"
    assert page["Prefix"] == "a%2Bb"
    raw = [u["Key"] for u in page["Uploads"]]
    assert [urllib.parse.unquote_plus(k) for k in raw] == ["a+b", "a+b c"]
    everything = s3.list_multipart_uploads(Bucket=reserved, EncodingType="url")["Uploads"]
    assert sorted({urllib.parse.unquote_plus(u["Key"]) for u in everything},
                  key=lambda k: k.encode()) == keys


@pytest.mark.parametrize("query", ["list-type=2&delimiter=", "delimiter="], ids=["v2", "v1"])
def test_empty_delimiter_is_not_echoed(server, filled, query):
    bucket = filled(["dir/a", "top"])
    resp = signed_request(server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, "GET", f"/{bucket}?{query}")
    assert resp.status == 200, resp.body[:300]
    assert b"<Delimiter" not in resp.body
    assert b"<CommonPrefixes>" not in resp.body
    assert b"<Key>dir/a</Key>" in resp.body
