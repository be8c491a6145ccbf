"""Graceful shutdown and persistence across restarts on the same data dir."""

import hashlib
import signal

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, Clients
from s3util import MiB, begin_unsigned_payload_put, list_all_v2, random_bytes


def test_sigterm_exits_zero(fresh_server):
    assert fresh_server.stop(signal.SIGTERM) == 0, fresh_server.stderr_tail()


def _snapshot(s3):
    """Every bucket's full listing (key, size, etag) and every object's bytes digest."""
    snap = {}
    for b in sorted(x["Name"] for x in s3.list_buckets()["Buckets"]):
        listing = []
        token = None
        while True:
            args = {"ContinuationToken": token} if token else {}
            page = s3.list_objects_v2(Bucket=b, **args)
            listing += [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
            if not page["IsTruncated"]:
                break
            token = page["NextContinuationToken"]
        digests = {}
        for key, _, _ in listing:
            obj = s3.get_object(Bucket=b, Key=key)
            digests[key] = (hashlib.sha256(obj["Body"].read()).hexdigest(), obj.get("ContentType"),
                            obj.get("Metadata"))
        snap[b] = (listing, digests)
    return snap


def test_data_survives_restart(fresh_server):
    clients = Clients(fresh_server)
    s3 = clients.admin()
    objects = {
        ("alpha", "empty"): b"",
        ("alpha", "small.txt"): b"hello ferry",
        ("alpha", "dir/nested/one.bin"): random_bytes(MiB + 7),
        ("alpha", "ünï/cödé 日本"): b"unicode key",
        ("alpha", "big.bin"): random_bytes(20 * MiB),
        ("beta", "dir/"): b"",
        ("beta", "other"): random_bytes(4096),
    }
    for bucket in {b for b, _ in objects}:
        s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket="gamma-empty")
    for (bucket, key), data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/x-test",
                      Metadata={"origin": "before-restart"})
    s3.put_object(Bucket="alpha", Key="overwritten", Body=b"v1")
    s3.put_object(Bucket="alpha", Key="overwritten", Body=b"v2")
    s3.put_object(Bucket="alpha", Key="deleted", Body=b"gone")
    s3.delete_object(Bucket="alpha", Key="deleted")
    before = _snapshot(s3)

    rc = fresh_server.restart()
    assert rc == 0, f"SIGTERM exit code {rc}\n{fresh_server.stderr_tail()}"

    s3 = clients.admin()  # new port
    after = _snapshot(s3)
    assert sorted(after) == sorted(before), "bucket list changed across restart"
    for bucket in before:
        assert after[bucket][0] == before[bucket][0], f"listing of {bucket} changed across restart"
        assert after[bucket][1] == before[bucket][1], f"object bytes/metadata in {bucket} changed across restart"
    for (bucket, key), data in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, f"{bucket}/{key} differs after restart"
    assert s3.get_object(Bucket="alpha", Key="overwritten")["Body"].read() == b"v2"
    assert "deleted" not in [k for k in list_all_v2(s3, "alpha")[0]]


def test_writes_after_restart_work(fresh_server):
    clients = Clients(fresh_server)
    s3 = clients.admin()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="a", Body=b"first life")
    assert fresh_server.restart() == 0
    s3 = clients.admin()
    s3.put_object(Bucket="bkt", Key="b", Body=b"second life")
    assert list_all_v2(s3, "bkt")[0] == ["a", "b"]
    assert fresh_server.restart() == 0
    s3 = clients.admin()
    assert s3.get_object(Bucket="bkt", Key="a")["Body"].read() == b"first life"
    assert s3.get_object(Bucket="bkt", Key="b")["Body"].read() == b"second life"


def test_bucket_deletion_survives_restart(fresh_server):
    clients = Clients(fresh_server)
    s3 = clients.admin()
    s3.create_bucket(Bucket="short-lived")
    s3.delete_bucket(Bucket="short-lived")
    assert fresh_server.restart() == 0
    assert "short-lived" not in [b["Name"] for b in clients.admin().list_buckets()["Buckets"]]


def test_upload_in_flight_at_sigterm_completes(fresh_server):
    clients = Clients(fresh_server)
    s3 = clients.admin()
    s3.create_bucket(Bucket="inflight")
    data = random_bytes(4 * MiB)
    conn = begin_unsigned_payload_put(fresh_server.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY,
                                      "/inflight/slow", len(data))
    try:
        conn.send(data[:MiB])
        fresh_server.proc.send_signal(signal.SIGTERM)
        conn.send(data[MiB:])
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, f"in-flight PUT after SIGTERM answered {resp.status}: {body[:300]!r}"
    finally:
        conn.close()
    rc = fresh_server.stop(sig=None)  # already signalled: just wait for the exit
    assert rc == 0, fresh_server.stderr_tail()
    fresh_server.start()
    got = clients.admin().get_object(Bucket="inflight", Key="slow")["Body"].read()
    assert got == data, "the upload that was in flight at SIGTERM was not kept"


def test_acknowledged_writes_survive_sigkill(fresh_server):
    clients = Clients(fresh_server)
    s3 = clients.admin()
    s3.create_bucket(Bucket="crash")
    bodies = {f"obj-{i}": random_bytes(1000 * i + 1) for i in range(10)}
    bodies["large"] = random_bytes(8 * MiB)
    for key, data in bodies.items():
        s3.put_object(Bucket="crash", Key=key, Body=data)
    s3.delete_object(Bucket="crash", Key="obj-0")
    del bodies["obj-0"]
    rc = fresh_server.stop(signal.SIGKILL)
    assert rc == -signal.SIGKILL
    fresh_server.start()
    s3 = clients.admin()
    assert list_all_v2(s3, "crash")[0] == sorted(bodies), "acknowledged writes lost by a crash"
    for key, data in bodies.items():
        assert s3.get_object(Bucket="crash", Key=key)["Body"].read() == data, f"{key} differs after a crash"
