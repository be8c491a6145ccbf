"""boto3 and the AWS CLI against a Ferry whose listeners speak TLS, trusting a
CA the test makes with openssl (as an operator's private CA would be)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from ferry_server import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, CONFIG_TOML, FerryServer
from s3util import MiB, REGION, random_bytes, unique_bucket

AWS = Path(sys.executable).parent / "aws"


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for localhost and 127.0.0.1."""
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=ferry e2e CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost")
    (d / "node.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl(d, "x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "node.crt", "-days", "2", "-extfile", "node.ext")
    return d / "ca.crt", d / "node.crt", d / "node.key"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certificates(d)
    config = CONFIG_TOML + f'\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    srv = FerryServer(d / "node", config).start()
    assert srv.s3_url.startswith("https://"), srv.s3_url
    yield srv, ca
    srv.stop()


def client(endpoint: str, verify) -> "boto3.client":
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ADMIN_ACCESS_KEY, aws_secret_access_key=ADMIN_SECRET_KEY,
        verify=verify,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def test_boto3_reads_and_writes_over_tls(tls_server):
    srv, ca = tls_server
    s3 = client(srv.s3_url, str(ca))
    bucket = unique_bucket("tls")
    s3.create_bucket(Bucket=bucket)
    body = random_bytes(9 * MiB + 5)
    # Over HTTPS boto3 sends aws-chunked bodies with trailing checksums.
    s3.put_object(Bucket=bucket, Key="weights.bin", Body=body)
    got = s3.get_object(Bucket=bucket, Key="weights.bin", Range="bytes=1000-1999")
    assert got["Body"].read() == body[1000:2000]
    assert s3.get_object(Bucket=bucket, Key="weights.bin")["Body"].read() == body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["weights.bin"]
    # A presigned URL is https too, and works with the CA.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "weights.bin"})
    assert url.startswith("https://")


def test_boto3_refuses_a_certificate_it_does_not_trust(tls_server):
    srv, _ca = tls_server
    s3 = client(srv.s3_url, True)  # system roots only
    with pytest.raises(botocore.exceptions.SSLError):
        s3.list_buckets()


def test_awscli_copies_over_tls(tls_server, tmp_path):
    if not AWS.exists():
        pytest.skip(f"aws cli not found at {AWS}")
    srv, ca = tls_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY,
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
               AWS_MAX_ATTEMPTS="1", HOME=str(tmp_path))

    def aws(*args):
        proc = subprocess.run([str(AWS), "--endpoint-url", srv.s3_url, "--ca-bundle", str(ca),
                               *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"aws {args}: {proc.stderr}"
        return proc.stdout

    bucket = unique_bucket("tlscli")
    aws("s3", "mb", f"s3://{bucket}")
    src = tmp_path / "model.safetensors"
    src.write_bytes(random_bytes(17 * MiB + 3))  # multipart at aws-cli's 8 MiB chunks
    aws("s3", "cp", str(src), f"s3://{bucket}/m/model.safetensors")
    assert "model.safetensors" in aws("s3", "ls", f"s3://{bucket}/m/")
    back = tmp_path / "back"
    aws("s3", "cp", f"s3://{bucket}/m/model.safetensors", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
