"""Cold read latency through a store chain.

fill: writes COUNT objects of SIZE bytes under PREFIX.
read: GETs each of them once, one at a time (every read misses the cache
and goes to the stores), and prints p50/p99/max in ms as one JSON line.

Usage: python3 benches/chain_latency.py fill|read ENDPOINT PREFIX COUNT [SIZE]
Credentials from FERRY_ACCESS_KEY / FERRY_SECRET_KEY.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config

mode, endpoint, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = int(sys.argv[5]) if len(sys.argv) > 5 else 65536
s3 = boto3.client(
    "s3", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=os.environ["FERRY_ACCESS_KEY"],
    aws_secret_access_key=os.environ["FERRY_SECRET_KEY"],
    config=Config(retries={"max_attempts": 1}, read_timeout=60))
if mode == "fill":
    body = os.urandom(size)
    for i in range(count):
        s3.put_object(Bucket="bench", Key=f"{prefix}/{i:05d}", Body=body)
else:
    times, failed = [], 0
    for i in range(count):
        t = time.monotonic()
        try:
            s3.get_object(Bucket="bench", Key=f"{prefix}/{i:05d}")["Body"].read()
        except Exception:  # counted, the run goes on
            failed += 1
        times.append(time.monotonic() - t)
    times.sort()
    pick = lambda p: round(times[min(len(times) - 1, int(p / 100 * len(times)))] * 1000, 2)
    print(json.dumps({"p50_ms": pick(50), "p99_ms": pick(99), "max_ms": round(times[-1] * 1000, 2),
                      "reads": count, "failed": failed}))
