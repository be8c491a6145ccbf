"""Mirror lag under a steady write load, and replication throughput.

lag: writes small objects to the source at RATE PUT/s for SECONDS (eight
writer threads, paced), while one reader lists the mirror from the last
key it saw of each writer every few milliseconds; an object's lag is when the mirror
first listed it minus when the source acknowledged its PUT.

Usage: python3 benches/mirror_lag.py lag SOURCE MIRROR RATE SECONDS
Credentials from FERRY_ACCESS_KEY / FERRY_SECRET_KEY. Prints one JSON line.
"""
import json
import os
import sys
import threading
import time

import boto3
from botocore.config import Config


def client(endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ["FERRY_ACCESS_KEY"],
        aws_secret_access_key=os.environ["FERRY_SECRET_KEY"],
        config=Config(max_pool_connections=16, retries={"max_attempts": 2}))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def lag(source, mirror, rate, seconds):
    src, dst = client(source), client(mirror)
    total = int(rate * seconds)
    acked = {}
    seen = {}
    body = os.urandom(4096)
    start = time.monotonic()
    threads = 8

    def writer(part):
        for i in range(part, total, threads):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            key = f"lag/{part}/{i:08d}"
            src.put_object(Bucket="bench", Key=key, Body=body)
            acked[key] = time.monotonic()

    def reader():
        # Each writer's keys grow, and the mirror applies records in the
        # source's order, so per writer "after the last key seen" misses
        # nothing.
        after = {part: "" for part in range(threads)}
        while len(seen) < total and time.monotonic() - start < seconds + 30:
            idle = True
            for part in range(threads):
                kwargs = {"Bucket": "bench", "Prefix": f"lag/{part}/", "MaxKeys": 1000}
                if after[part]:
                    kwargs["StartAfter"] = after[part]
                page = dst.list_objects_v2(**kwargs)
                now = time.monotonic()
                for item in page.get("Contents", []):
                    seen.setdefault(item["Key"], now)
                    after[part] = max(after[part], item["Key"])
                idle &= not page.get("IsTruncated")
            if idle:
                time.sleep(0.002)

    workers = [threading.Thread(target=writer, args=(p,)) for p in range(threads)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    watcher.join()
    lags = [seen[k] - acked[k] for k in acked if k in seen]
    return {
        "bench": "mirror-lag", "target_rate": rate, "achieved_rate": round(total / elapsed, 1),
        "objects": total, "seen_in_mirror": len(lags),
        "lag_p50_ms": round(percentile(lags, 50) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 99) * 1000, 1),
        "lag_max_ms": round(max(lags) * 1000, 1),
    }


if __name__ == "__main__":
    mode, source, mirror, rate, seconds = sys.argv[1:6]
    assert mode == "lag"
    print(json.dumps(lag(source, mirror, float(rate), float(seconds))))
