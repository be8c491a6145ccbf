"""The AWS CLI (`aws s3` high-level commands and `aws s3api`) against Ferry.

The tests of this module run in order and share one bucket: mb, cp, ls,
sync, rm, rb."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from s3util import MiB, REGION, unique_bucket

AWS = Path(sys.executable).parent / "aws"
OLD = time.time() - 3600  # local files look an hour old, older than any upload


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    if not AWS.exists():
        pytest.skip(f"aws cli not found at {AWS}")
    home = tmp_path_factory.mktemp("aws-home")

    def run(*args, check=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_MAX_ATTEMPTS="1",
            HOME=str(home),
            # Client bug (boto/botocore#3755): after a zero-length PUT sent
            # with `Expect: 100-continue` is answered without a 100, botocore
            # parses the next response on that pooled connection against the
            # stale status line and stalls until its read timeout. Ferry's
            # bytes on the wire are correct; this switch makes botocore send
            # empty bodies without `Expect`.
            BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE="true",
        )
        proc = subprocess.run([str(AWS), "--endpoint-url", server.s3_url, *args], env=env,
                              capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, (
                f"aws {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="module")
def cli_bucket():
    return unique_bucket("cli")


def lines(output: str) -> list[str]:
    return [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]


def actions(output: str, verb: str) -> list[str]:
    """The `verb:` lines of an `aws s3` transfer command, e.g. `upload:`."""
    return [line for line in lines(output) if line.startswith(verb + ":")]


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))


def test_mb(aws, s3, cli_bucket):
    out = aws("s3", "mb", f"s3://{cli_bucket}").stdout
    assert f"make_bucket: {cli_bucket}" in out
    s3.head_bucket(Bucket=cli_bucket)
    assert cli_bucket in [line.split()[-1] for line in lines(aws("s3", "ls").stdout)]


def test_cp_large_file_up_and_down(aws, s3, cli_bucket, tmp_path):
    data = os.urandom(64 * MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    out = aws("s3", "cp", str(src), f"s3://{cli_bucket}/big/big.bin").stdout
    assert len(actions(out, "upload")) == 1
    head = s3.head_object(Bucket=cli_bucket, Key="big/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-8"'), f"not a multipart upload of 8 MiB parts: {head['ETag']}"

    dst = tmp_path / "down.bin"
    out = aws("s3", "cp", f"s3://{cli_bucket}/big/big.bin", str(dst)).stdout
    assert len(actions(out, "download")) == 1
    assert dst.stat().st_size == len(data)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_ls(aws, s3, cli_bucket):
    s3.put_object(Bucket=cli_bucket, Key="ls/top.txt", Body=b"12345")
    s3.put_object(Bucket=cli_bucket, Key="ls/sub/inner.txt", Body=b"abc")

    top = lines(aws("s3", "ls", f"s3://{cli_bucket}/").stdout)
    assert sorted(top) == ["PRE big/", "PRE ls/"]

    inside = lines(aws("s3", "ls", f"s3://{cli_bucket}/ls/").stdout)
    assert "PRE sub/" in inside
    files = [line.split() for line in inside if not line.startswith("PRE ")]
    assert [(f[2], f[3]) for f in files] == [("5", "top.txt")]
    assert len(files[0]) == 4  # date, time, size, name

    recursive = [line.split() for line in lines(aws("s3", "ls", "--recursive", f"s3://{cli_bucket}/").stdout)]
    assert [(f[2], f[3]) for f in recursive] == [
        (str(64 * MiB), "big/big.bin"), ("3", "ls/sub/inner.txt"), ("5", "ls/top.txt")]


def test_s3api_head_object(aws, s3, cli_bucket):
    out = aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "ls/top.txt").stdout
    head = json.loads(out)
    assert head["ContentLength"] == 5
    assert head["ETag"] == s3.head_object(Bucket=cli_bucket, Key="ls/top.txt")["ETag"]
    assert head["LastModified"]


def test_sync(aws, s3, cli_bucket, tmp_path):
    local = tmp_path / "local"
    files = {
        "a.txt": b"alpha\n",
        "empty.txt": b"",
        "with space.txt": b"spaced out\n",
        "dir1/b.bin": os.urandom(300_000),
        "dir1/dir2/c.txt": b"deep\n",
        "dir1/dir2/dir3/d.txt": b"deeper\n",
    }
    for name, data in files.items():
        write(local / name, data)
    remote = f"s3://{cli_bucket}/sync"

    out = aws("s3", "sync", str(local), remote).stdout
    uploaded = actions(out, "upload")
    assert len(uploaded) == len(files), out
    listed = s3.list_objects_v2(Bucket=cli_bucket, Prefix="sync/")["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {f"sync/{n}": len(d) for n, d in files.items()}

    down = tmp_path / "down"
    out = aws("s3", "sync", remote, str(down)).stdout
    assert len(actions(out, "download")) == len(files), out
    assert tree(down) == tree(local)

    # Nothing changed: nothing to upload.
    out = aws("s3", "sync", str(local), remote).stdout
    assert actions(out, "upload") == [], out

    # One file changes size: exactly that one is uploaded.
    write(local / "dir1" / "dir2" / "c.txt", b"deep and now longer\n")
    out = aws("s3", "sync", str(local), remote).stdout
    uploaded = actions(out, "upload")
    assert len(uploaded) == 1 and uploaded[0].endswith(f"{remote}/dir1/dir2/c.txt"), out
    assert s3.get_object(Bucket=cli_bucket, Key="sync/dir1/dir2/c.txt")["Body"].read() == b"deep and now longer\n"

    # A local deletion is propagated by --delete only.
    (local / "with space.txt").unlink()
    out = aws("s3", "sync", str(local), remote).stdout
    assert actions(out, "delete") == [] and actions(out, "upload") == [], out
    out = aws("s3", "sync", "--delete", str(local), remote).stdout
    deleted = actions(out, "delete")
    assert deleted == [f"delete: {remote}/with space.txt"], out
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket, Prefix="sync/")["Contents"]}
    assert "sync/with space.txt" not in keys
    assert len(keys) == len(files) - 1

    # And back down again into a fresh folder: the same tree as the local one.
    down2 = tmp_path / "down2"
    aws("s3", "sync", remote, str(down2))
    assert tree(down2) == tree(local)


def test_rm_recursive_and_rb(aws, s3, cli_bucket):
    assert s3.list_objects_v2(Bucket=cli_bucket)["KeyCount"] > 0
    # rb of a non-empty bucket fails.
    proc = aws("s3", "rb", f"s3://{cli_bucket}", check=False)
    assert proc.returncode != 0
    assert "BucketNotEmpty" in proc.stderr

    out = aws("s3", "rm", "--recursive", f"s3://{cli_bucket}/").stdout
    assert len(actions(out, "delete")) >= 8
    assert s3.list_objects_v2(Bucket=cli_bucket)["KeyCount"] == 0

    out = aws("s3", "rb", f"s3://{cli_bucket}").stdout
    assert f"remove_bucket: {cli_bucket}" in out
    assert cli_bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
