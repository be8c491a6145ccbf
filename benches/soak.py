"""The soak's driver (benches/soak.sh starts the processes and runs this).

Puts a steady, moderate load on the cluster for --seconds: model-like
objects read through n0, n1 and the mirror (safetensors header length,
header, 4-16 MiB tensor ranges, unaligned 4-16 MiB ranges, whole objects),
new objects written and deleted, keys overwritten while others read them,
a warm-up of the models every minute, one import from s3s-fs at 40 % of
the time and a restart of n2 at half time. Every byte read is checked
against what was written. Meanwhile and for 60 s after the load, every
process is sampled each 5 s: RSS (VmRSS), open fds, and the queues below.

Queues (judged at load stop and 60 s later; drained = 0 at the end):
  ferry_feed_mirror_behind_records{mirror}  the node holding the collector's lease: change-log
                                            records the mirror has not applied
  ferry_replication_queue                   mirror: blobs waiting to be copied into its store
  ferry_mirror_lag_seconds                  mirror: age of the oldest change not yet applied
  ferry_cache_inflight_bytes                any node: block bytes being loaded (reads, readahead, warm-ups)
  ferry_spool_bodies                        any node: PUT bodies waiting to be stored
  ferry_warm_arrival_queue                  any node (only with [[region.warm]], not configured here)
  redis soak:gcq (ZCARD)                    the collector's deletion queue
  redis soak:log (ZCARD)                    the change log; trimmed to log_keep, so it must not grow
These are the gauges whose names hold queue, backlog, pending, lag or gc
(the gc ones, ferry_gc_blobs_deleted_total and ferry_gc_delete_failures_total,
are counters: recorded, and delete failures reported, not judged), plus
the two Redis keys, which no metric shows. A gauge appears once touched.

RSS is judged over the last 5 minutes of the load (the last half when the
load is shorter than 10 minutes): every sample within +-5 % of the mean.
The restarted n2's series starts over at the restart, so its window
starts no earlier than a warm-up of 120 s after the restart (in a soak of
30 minutes or more, the same last 5 minutes as the others); the table
also shows its deviation over everything after that warm-up. Fds are flat when the
later half of that window (and the 60 s after the load) holds no more
than FD_SLACK above the earlier half's maximum. Beside RSS each node's
allocator reports its live bytes (ferry_allocator_bytes{state="allocated"},
dotted in the plot): RSS holds that plus memory the allocator keeps for
reuse, so a leak shows as live bytes that climb; they are shown, not judged.

Usage: soak.py --work DIR --out DIR --seconds N --redis-port P --redis-prefix soak
Credentials from FERRY_ACCESS_KEY / FERRY_SECRET_KEY, admin token from FERRY_ADMIN_TOKEN.
"""
import argparse
import collections
import csv
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MIB = 1 << 20
SAMPLE_EVERY = 5
TAIL = 60  # sampling goes on this long after the load
RSS_BAND = 5.0  # percent
FD_SLACK = 16  # pooled connections come and go; a leak keeps climbing
PROCESSES = ["n0", "n1", "n2", "mirror", "redis", "s3s-fs"]
NODES = ["n0", "n1", "n2", "mirror"]
MODEL_MIB = [16, 24, 32, 40, 48, 56]
LEGACY_MIB = [2, 3, 4, 5, 6, 8]
OVERWRITTEN = 8
LIVE_NEW = 16  # new objects a writer keeps before it deletes the oldest
QUEUE_GAUGES = ("ferry_feed_mirror_behind_records", "ferry_replication_queue",
                "ferry_mirror_lag_seconds", "ferry_cache_inflight_bytes",
                "ferry_spool_bodies", "ferry_warm_arrival_queue")
# The allocator's live bytes: what the node holds, beside the RSS that
# also counts memory kept for reuse (told apart in the table, not judged).
LIVE = 'ferry_allocator_bytes{state="allocated"}'
RECORDED = QUEUE_GAUGES + ("ferry_gc_blobs_deleted_total", "ferry_gc_delete_failures_total",
                           "ferry_allocator_bytes")


# ---- content: every byte derivable from a seed, so reads can be checked --------

# Not a multiple of the block size, so no two blocks of an object are alike.
PERIOD = MIB + 4099
_bases = collections.OrderedDict()
_bases_lock = threading.Lock()


def pattern(seed, start, length):
    """Bytes [start, start+length) of the endless content of `seed`."""
    with _bases_lock:
        base = _bases.get(seed)
        if base is None:
            base = _bases[seed] = random.Random(seed).randbytes(PERIOD)
            if len(_bases) > 64:
                _bases.popitem(last=False)
    s = start % PERIOD
    return (base * ((s + length) // PERIOD + 1))[s:s + length]


def safetensors(seed, mib):
    """A model-like object: header length, JSON header, tensors of 4-16 MiB."""
    rng = random.Random(seed)
    data_len, tensors, at = mib * MIB, {}, 0
    while at < data_len:
        size = min(rng.randint(4 * MIB, 16 * MIB), data_len - at)
        tensors[f"layer.{len(tensors)}.weight"] = {"dtype": "F16", "shape": [size // 2], "data_offsets": [at, at + size]}
        at += size
    header = json.dumps({"__metadata__": {"format": "pt"}, **tensors}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + pattern(seed, 0, data_len)


# An overwritten key's version is in its first 16 bytes; the rest, and the
# length, follow from it, so a read that mixes two versions shows.
def overwrite_seed(index, version):
    return 1_000_000 + index * 100_000 + version


def overwrite_size(index, version):
    return 2 * MIB + index * 65_536 + (version % 4) * 300_001


def overwrite_body(index, version):
    size = overwrite_size(index, version)
    return struct.pack("<8sQ", b"soak-ver", version) + pattern(overwrite_seed(index, version), 16, size - 16)


# ---- shared state ---------------------------------------------------------

LABELS = {"errors": "error", "wrong": "wrong bytes", "mixes": "mixed versions", "stale": "stale read"}


class Tally:
    """What the load saw, for the summary."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()
        self.by_thread = collections.Counter()
        self.bytes_read = 0
        self.bytes_written = 0
        self.errors = []  # (t, thread, what, message)
        self.wrong = []  # reads with bytes other than written
        self.mixes = []  # overwritten keys read as a mix of versions
        self.stale = []  # reads older than a write acknowledged before they began

    def op(self, kind, read=0, written=0):
        with self.lock:
            self.ops[kind] += 1
            self.by_thread[threading.current_thread().name] += 1
            self.bytes_read += read
            self.bytes_written += written

    def note(self, bucket, t, thread, what, message):
        with self.lock:
            getattr(self, bucket).append((t, thread, what, message))
        if len(getattr(self, bucket)) <= 5:
            log(f"t={t}s {LABELS[bucket]}: {thread} {what}: {message}")


class Soak:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.procs = os.path.join(args.work, "procs")
        self.t0 = None
        self.stop = threading.Event()  # the load's end
        self.tally = Tally()
        self.models = {}  # key -> bytes
        self.legacy = {}  # key in bucket imported -> bytes, as written to s3s-fs
        self.imported = {}  # the same, once imported
        self.mirror_imported = {}  # the same, once the mirror lists them
        self.lock = threading.Lock()
        # Overwritten keys: versions whose PUT began, and the newest acknowledged.
        self.started = [{1} for _ in range(OVERWRITTEN)]
        self.acked = [1] * OVERWRITTEN
        self.events = []  # (t, label) for the plot and the summary

    def now(self):
        return time.monotonic() - self.t0

    def file(self, name, what):
        with open(os.path.join(self.procs, f"{name}.{what}")) as f:
            return f.read().strip()

    def client(self, name):
        return boto3.client(
            "s3", endpoint_url=self.file(name, "s3"), region_name="us-east-1",
            aws_access_key_id=os.environ["FERRY_ACCESS_KEY"],
            aws_secret_access_key=os.environ["FERRY_SECRET_KEY"],
            # No retries: every failed request counts.
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60,
                          max_pool_connections=4, s3={"addressing_style": "path"}))

    def admin(self, name, path, body):
        """POSTs a job to a node's admin API and answers its last JSON line."""
        request = urllib.request.Request(
            self.file(name, "admin") + path, data=json.dumps(body).encode(), method="POST",
            headers={"content-type": "application/json",
                     "authorization": f"Bearer {os.environ['FERRY_ADMIN_TOKEN']}"})
        last = {}
        with urllib.request.urlopen(request, timeout=300) as answer:
            for line in answer:
                if line.strip():
                    last = json.loads(line)
        return last

    def mark(self, label):
        self.events.append((self.now(), label))
        log(f"t={self.now():6.1f}s {label}")


def log(message):
    print(f"[soak] {message}", file=sys.stderr, flush=True)


# ---- setup ------------------------------------------------------------------

def setup(soak):
    log("writing the objects (models, overwritten keys, the origin's bucket)")
    n0 = soak.client("n0")
    for bucket in ("models", "imported"):
        n0.create_bucket(Bucket=bucket)
    for i, mib in enumerate(MODEL_MIB):
        key = f"llm/model-{i:02d}.safetensors"
        soak.models[key] = safetensors(100 + i, mib)
        n0.put_object(Bucket="models", Key=key, Body=soak.models[key])
    for i in range(OVERWRITTEN):
        n0.put_object(Bucket="models", Key=f"ow/{i:02d}", Body=overwrite_body(i, 1))
    origin = soak.client("s3s-fs")
    for i, mib in enumerate(LEGACY_MIB):
        soak.legacy[f"{i:02d}.bin"] = pattern(500 + i, 0, mib * MIB)
        origin.put_object(Bucket="legacy", Key=f"models/{i:02d}.bin", Body=soak.legacy[f"{i:02d}.bin"])
    # The mirror reads these from the start: wait until it has them all.
    mirror, want = soak.client("mirror"), len(MODEL_MIB) + OVERWRITTEN
    deadline = time.monotonic() + 120
    while True:
        try:
            listed = mirror.list_objects_v2(Bucket="models").get("KeyCount", 0)
        except ClientError:
            listed = 0
        if listed >= want:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the mirror lists {listed} of {want} objects after 120 s")
        time.sleep(0.5)


# ---- the load -------------------------------------------------------------

def paced(soak, interval, step):
    """Runs step() every `interval` seconds until the load stops; late
    steps start at once but never in a burst."""
    next_at = time.monotonic()
    while not soak.stop.is_set():
        step()
        next_at = max(next_at + interval, time.monotonic() - interval)
        soak.stop.wait(max(0.0, next_at - time.monotonic()))


def guarded(soak, thread, what, fn):
    try:
        fn()
    except Exception as e:  # any exception counts: boto3's, a short body, a timeout
        soak.tally.note("errors", round(soak.now(), 1), thread, what, f"{type(e).__name__}: {e}")


def get(client, bucket, key, first=None, last=None):
    kwargs = {"Bucket": bucket, "Key": key}
    if first is not None:
        kwargs["Range"] = f"bytes={first}-{last}"
    answer = client.get_object(**kwargs)
    body = answer["Body"].read()
    if len(body) != answer["ContentLength"]:
        raise IOError(f"{len(body)} bytes of a Content-Length of {answer['ContentLength']}")
    return body


def model_reader(soak, name):
    """Reads models (and, once imported, the imported objects) the ways
    loaders do; every byte compared with what was written."""
    client, rng, thread = soak.client(name), random.Random(name), f"models@{name}"

    def check(what, got, want):
        soak.tally.op(what, read=len(got))
        if got != want:
            soak.tally.note("wrong", round(soak.now(), 1), thread, what,
                            f"{len(got)} bytes differ from the {len(want)} written")

    def step():
        pool = soak.mirror_imported if name == "mirror" else soak.imported
        if pool and rng.random() < 0.2:
            key = rng.choice(sorted(pool))
            body = pool[key]
            first = rng.randrange(len(body))
            last = min(len(body) - 1, first + rng.randint(1, 4 * MIB))
            guarded(soak, thread, f"imported/{key}",
                    lambda: check("imported", get(client, "imported", key, first, last), body[first:last + 1]))
            return
        key = rng.choice(sorted(soak.models))
        body, roll = soak.models[key], rng.random()
        if roll < 0.5:
            def loader():
                n = struct.unpack("<Q", get(client, "models", key, 0, 7))[0]
                header = get(client, "models", key, 8, 7 + n)
                check("header", header, body[8:8 + n])
                tensors = [v for k, v in json.loads(header).items() if k != "__metadata__"]
                a, b = rng.choice(tensors)["data_offsets"]
                check("tensor", get(client, "models", key, 8 + n + a, 7 + n + b), body[8 + n + a:8 + n + b])
            guarded(soak, thread, key, loader)
        elif roll < 0.75:
            length = rng.randint(4 * MIB, 16 * MIB)
            first = rng.randrange(len(body) - length)
            guarded(soak, thread, key, lambda: check(
                "range", get(client, "models", key, first, first + length - 1), body[first:first + length]))
        else:
            guarded(soak, thread, key, lambda: check("whole", get(client, "models", key), body))

    paced(soak, 1.0, step)


def overwriter(soak):
    """Overwrites the ow/ keys in turn through n0 and n1, one version at a time."""
    clients, thread = [soak.client("n0"), soak.client("n1")], "overwrite"
    turn = [0]

    def step():
        i = turn[0] % OVERWRITTEN
        client = clients[turn[0] % 2]
        turn[0] += 1
        with soak.lock:
            version = max(soak.started[i]) + 1
            soak.started[i].add(version)  # before the PUT: readers may see it at once
        body = overwrite_body(i, version)

        def put():
            client.put_object(Bucket="models", Key=f"ow/{i:02d}", Body=body)
            with soak.lock:
                soak.acked[i] = max(soak.acked[i], version)
            soak.tally.op("overwrite", written=len(body))
        guarded(soak, thread, f"ow/{i:02d} v{version}", put)

    paced(soak, 0.5, step)


def overwrite_reader(soak, name):
    """Reads overwritten keys while they are being replaced: a read shows one
    version whole, and (in the source region) none older than one
    acknowledged before the read began."""
    client, rng, thread = soak.client(name), random.Random(f"ow-{name}"), f"ow@{name}"

    def step():
        i = rng.randrange(OVERWRITTEN)
        key = f"ow/{i:02d}"
        with soak.lock:
            floor = soak.acked[i]
        whole = rng.random() < 0.5
        last = None if whole else rng.randint(16, 2 * MIB - 1)

        def read():
            body = get(client, "models", key, *((None, None) if whole else (0, last)))
            soak.tally.op("overwritten", read=len(body))
            at = round(soak.now(), 1)
            magic, version = struct.unpack("<8sQ", body[:16])
            with soak.lock:
                known = magic == b"soak-ver" and version in soak.started[i]
            if not known:
                soak.tally.note("wrong", at, thread, key, f"no version written starts {body[:16]!r}")
                return
            want = overwrite_body(i, version)
            if (len(body) != len(want) if whole else False) or body != want[:len(body)]:
                soak.tally.note("mixes", at, thread, key, f"header says v{version}, the bytes after it do not")
            elif name != "mirror" and version < floor:
                soak.tally.note("stale", at, thread, key, f"v{version} after v{floor} was acknowledged")
        guarded(soak, thread, key, read)

    paced(soak, 0.5, step)


def writer(soak, name, index):
    """Writes new objects through one node, reads each back through the
    other, and deletes the oldest, checking the delete took everywhere."""
    client = soak.client(name)
    other = soak.client("n1" if name == "n0" else "n0")
    rng, thread = random.Random(f"w-{name}"), f"new@{name}"
    live, seq = collections.deque(), [0]

    def step():
        if len(live) < LIVE_NEW or rng.random() < 0.5:
            seq[0] += 1
            key, seed = f"new/{name}/{seq[0]:06d}", 2_000_000 + index * 1_000_000 + seq[0]
            body = pattern(seed, 0, rng.randint(64 << 10, 3 * MIB))

            def put():
                client.put_object(Bucket="models", Key=key, Body=body)
                soak.tally.op("put", written=len(body))
                live.append((key, body))
                got = get(other, "models", key)
                soak.tally.op("read-back", read=len(got))
                if got != body:
                    soak.tally.note("wrong", round(soak.now(), 1), thread, key, "read back other bytes")
            guarded(soak, thread, key, put)
        else:
            key, _ = live.popleft()

            def delete():
                client.delete_object(Bucket="models", Key=key)
                soak.tally.op("delete")
                try:
                    other.head_object(Bucket="models", Key=key)
                    soak.tally.note("stale", round(soak.now(), 1), thread, key, "found after its delete")
                except ClientError as e:
                    if e.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                        raise
            guarded(soak, thread, key, delete)

    paced(soak, 0.5, step)


def warmups(soak):
    """A warm-up of the models every minute, through n0 and n1 in turn."""
    turn = [0]

    def step():
        name = ("n0", "n1")[turn[0] % 2]
        turn[0] += 1

        def warm():
            done = soak.admin(name, "/warmup", {"bucket": "models", "prefix": "llm/", "concurrency": 4})
            soak.tally.op("warm-up")
            if done.get("event") != "done" or done.get("failures", 0):
                raise RuntimeError(f"warm-up through {name} ended {done}")
            soak.mark(f"warm-up through {name}: {done.get('bytes_loaded', 0) >> 20} MiB loaded, "
                      f"{done.get('bytes_cached', 0) >> 20} MiB cached")
        guarded(soak, "warm-up", f"models/llm/ via {name}", warm)

    soak.stop.wait(10)
    paced(soak, 60, step)


def mirror_watch(soak):
    """The mirror's readers take the imported objects once it lists them."""
    client = soak.client("mirror")
    while not soak.stop.wait(2):
        if soak.imported and len(soak.mirror_imported) < len(soak.imported):
            try:
                listed = {o["Key"] for o in client.list_objects_v2(Bucket="imported").get("Contents", [])}
            except ClientError:
                continue
            soak.mirror_imported = {k: v for k, v in soak.imported.items() if k in listed}
            if len(soak.mirror_imported) == len(soak.imported):
                soak.mark(f"the mirror lists the {len(listed)} imported objects")


# ---- events: the import and the restart ----------------------------------------

def run_import(soak):
    def adopt():
        done = soak.admin("n1", "/import", {"store": "legacy", "source_prefix": "models", "bucket": "imported",
                                            "target_prefix": "", "delete": False})
        if done.get("event") != "done" or done.get("failures", 0) or done.get("added") != len(LEGACY_MIB):
            raise RuntimeError(f"import ended {done}")
        soak.tally.op("import")
        listed = {o["Key"] for o in soak.client("n0").list_objects_v2(Bucket="imported").get("Contents", [])}
        if listed != set(soak.legacy):
            raise RuntimeError(f"bucket imported lists {sorted(listed)}")
        soak.imported = dict(soak.legacy)
        soak.mark(f"import of {len(listed)} objects from s3s-fs")
    guarded(soak, "import", "legacy/models", adopt)


def gone(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def restart(soak, name):
    """SIGTERM, then the same command line (config and data dir) again."""
    pid = int(soak.file(name, "pid"))
    soak.mark(f"{name} SIGTERM (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while not gone(pid):
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} (pid {pid}) still runs 60 s after SIGTERM")
        time.sleep(0.1)
    with open(os.path.join(soak.procs, f"{name}.argv")) as f:
        argv = f.read().splitlines()
    out_path = os.path.join(soak.work, f"{name}.out")
    with open(out_path, "w") as out, open(os.path.join(soak.work, f"{name}.err"), "a") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    with open(os.path.join(soak.procs, f"{name}.pid"), "w") as f:
        f.write(f"{child.pid}\n")
    deadline = time.monotonic() + 60
    while True:
        with open(out_path) as f:
            ready = [line for line in f if line.startswith("ferry ready")]
        if ready:
            break
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not come back (see its log)")
        time.sleep(0.1)
    fields = dict(part.split("=", 1) for part in ready[0].split()[2:] if "=" in part)
    with open(os.path.join(soak.procs, f"{name}.admin"), "w") as f:
        f.write(fields["admin"] + "\n")
    soak.mark(f"{name} back (pid {child.pid})")
    return child


# ---- sampling -------------------------------------------------------------

def redis_int(port, *command):
    """One command over RESP with an integer answer (no client library needed)."""
    request = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(request.encode())
        line = s.makefile("rb").readline().decode()
    if not line.startswith(":"):
        raise IOError(f"redis answered {line!r}")
    return int(line[1:])


def sample(soak, t):
    """One row per process and quantity: (t, process, pid, what, value)."""
    rows = []
    for name in PROCESSES:
        try:
            pid = int(soak.file(name, "pid"))
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            continue  # exited (a restart) between reading its pid and its /proc
        rows += [(t, name, pid, "rss_kib", rss), (t, name, pid, "fds", fds)]
        if name in NODES:
            try:
                with urllib.request.urlopen(soak.file(name, "admin") + "/metrics", timeout=3) as answer:
                    text = answer.read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                what, _, value = line.rpartition(" ")
                if what.split("{")[0] in RECORDED:
                    rows.append((t, name, pid, what, float(value)))
    pid = int(soak.file("redis", "pid"))
    prefix = soak.args.redis_prefix
    for key in ("gcq", "log"):
        rows.append((t, "redis", pid, f"zcard {prefix}:{key}", redis_int(soak.args.redis_port, "ZCARD", f"{prefix}:{key}")))
    return rows


def sampler(soak, rows, until, path):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t_s", "process", "pid", "what", "value"])
        tick = 0
        while tick * SAMPLE_EVERY <= until:
            delay = soak.t0 + tick * SAMPLE_EVERY - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                new = sample(soak, tick * SAMPLE_EVERY)
            except Exception as e:  # a sample lost is not the soak's failure, but say so
                log(f"sample at {tick * SAMPLE_EVERY}s failed: {e}")
                new = []
            rows.extend(new)
            out.writerows(new)
            f.flush()
            tick += 1


# ---- the verdict -------------------------------------------------------------

def series(rows, process, what):
    """[(t, pid, value)] of one process and quantity."""
    return [(t, pid, v) for t, p, pid, w, v in rows if p == process and w == what]


def mean_and_deviation(values):
    """The mean of values and the largest distance of one from it, in
    percent of the mean."""
    mean = sum(values) / len(values)
    return mean, max(abs(v - mean) for v in values) / mean * 100


def judged_windows(seconds, back):
    """Where RSS is judged from: (everyone's window, the restarted
    process's window or None, the end of the restarted process's warm-up
    or None). The restarted process is judged over the same last minutes
    once its warm-up is over."""
    window = seconds - min(300, seconds / 2)
    if back is None:
        return window, None, None
    warmed = back + min(120, (seconds - back) / 2)
    return window, max(window, warmed), warmed


def judge(soak, rows, restarted, back):
    seconds = soak.args.seconds
    window, n2_from, warmed = judged_windows(seconds, back)
    problems, lines = [], []  # what failed, for the last line
    say = lines.append
    tally = soak.tally
    say(f"soak of {seconds} s: {sum(tally.ops.values())} operations "
        f"({', '.join(f'{k} {v}' for k, v in sorted(tally.ops.items()))}), "
        f"{tally.bytes_read / MIB:.0f} MiB read and checked, {tally.bytes_written / MIB:.0f} MiB written")
    say(f"  by thread: {', '.join(f'{k} {v}' for k, v in sorted(tally.by_thread.items()))}")
    for t, label in soak.events:
        say(f"  t={t:6.1f}s  {label}")
    say("")
    if back is not None:
        say(f"RSS judged from t={window:.0f}s to the load's end at {seconds}s; {restarted} was restarted, "
            f"so its series starts over at t={back:.0f}s and is judged from t={n2_from:.0f}s "
            f"(no earlier than a warm-up of {warmed - back:.0f}s after the restart)")
    say(f"{'process':8} {'samples':>7} {'RSS mean MiB':>12} {'max dev %':>9} {'RSS':>4}  "
        f"{'fd min':>6} {'fd max':>6} {'fds':>4}  {'live mean MiB':>13} {'live dev %':>10}")
    for name in PROCESSES:
        rss = series(rows, name, "rss_kib")
        fds = series(rows, name, "fds")
        start = n2_from if name == restarted and n2_from is not None else window
        judged = [v for t, _, v in rss if start <= t <= seconds]
        if len(judged) < 2:
            say(f"{name:8} {len(judged):>7} too few samples")
            problems.append(f"too few samples of {name}")
            continue
        mean, dev = mean_and_deviation(judged)
        rss_ok = dev <= RSS_BAND
        after = [v for t, _, v in fds if t >= start]
        middle = start + (seconds - start) / 2
        earlier = [v for t, _, v in fds if start <= t < middle]
        later = [v for t, _, v in fds if t >= middle]
        fd_ok = bool(earlier) and max(later, default=0) <= max(earlier) + FD_SLACK
        if not rss_ok:
            problems.append(f"RSS of {name}")
        if not fd_ok:
            problems.append(f"fds of {name}")
        live = [v for t, _, v in series(rows, name, LIVE) if start <= t <= seconds]
        if live:
            live_mean, live_dev = mean_and_deviation(live)
            live_cols = f"{live_mean / MIB:>13.1f} {live_dev:>10.1f}"
        else:
            live_cols = f"{'-':>13} {'-':>10}"
        say(f"{name:8} {len(judged):>7} {mean / 1024:>12.1f} {dev:>9.1f} {'ok' if rss_ok else 'FAIL':>4}  "
            f"{min(after):>6.0f} {max(after):>6.0f} {'ok' if fd_ok else 'FAIL':>4}  {live_cols}")
        if name == restarted and warmed is not None and warmed < start:
            since = [v for t, _, v in rss if warmed <= t <= seconds]
            since_mean, since_dev = mean_and_deviation(since)
            say(f"{'':8} (from t={warmed:.0f}s, the end of its warm-up: RSS mean {since_mean / 1024:.1f} MiB, "
                f"max dev {since_dev:.1f} %, not judged)")
    say("")
    for bucket, title in (("errors", "errors (exceptions)"), ("wrong", "reads with wrong bytes"),
                          ("mixes", "overwritten keys read as a mix of versions"),
                          ("stale", "reads older than an acknowledged write")):
        found = getattr(tally, bucket)
        if found:
            problems.append(title)
        say(f"{title}: {len(found)}")
        for t, thread, what, message in found[:5]:
            say(f"    t={t}s {thread} {what}: {message}")
    say("")
    say(f"queues at the load's end (t={seconds}s) and {TAIL}s later:")
    stop_at = min((t for t, *_ in rows if t >= seconds), default=None)
    end_at = max((t for t, *_ in rows), default=None)
    for name in PROCESSES:
        whats = sorted({w for _, p, _, w, _ in rows
                        if p == name and w not in ("rss_kib", "fds") and not w.startswith("ferry_allocator_")})
        for what in whats:
            points = {t: v for t, _, v in series(rows, name, what)}
            at_stop, at_end = points.get(stop_at), points.get(end_at)
            if what.startswith("ferry_gc_"):
                judged, verdict = False, "(counter)"
            elif what.endswith(":log"):
                judged = True  # trimmed to log_keep: must not grow once writes stop
                verdict = "ok" if at_stop is not None and at_end is not None and at_end <= at_stop else "GREW"
            else:
                judged = True
                verdict = "ok" if at_end == 0 else "NOT DRAINED"
            if judged and verdict != "ok":
                problems.append(f"{name} {what}")
            say(f"  {name:7} {what:58} {fmt(at_stop):>12} {fmt(at_end):>12}  {verdict}")
    failures = [v for t, p, _, w, v in rows
                if w.startswith("ferry_gc_delete_failures_total") and t == end_at and v > 0]
    if failures:
        say(f"  the collector failed {sum(failures):.0f} blob deletes (retried; see the logs)")
    say("")
    say("FAIL: " + "; ".join(problems) if problems else "PASS")
    return not problems, lines


def fmt(value):
    return "-" if value is None else f"{value:.0f}"


def plot(soak, rows, restarted, back, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = soak.args.seconds
    window, n2_from, _ = judged_windows(seconds, back)
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 12), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 2, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, name in enumerate(PROCESSES):
        color = colors[n % len(colors)]
        rss = series(rows, name, "rss_kib")
        # One segment per pid: the restarted node's line starts over.
        for k, pid in enumerate(sorted({p for _, p, _ in rss}, key=lambda p: min(t for t, q, _ in rss if q == p))):
            points = [(t, v / 1024) for t, q, v in rss if q == pid]
            top.plot(*zip(*points), color=color, label=name if k == 0 else None)
            live = [(t, v / MIB) for t, q, v in series(rows, name, LIVE) if q == pid]
            if live:
                top.plot(*zip(*live), color=color, linestyle=":", linewidth=1,
                         label=f"{name} live" if k == 0 else None)
        start = n2_from if name == restarted and n2_from is not None else window
        judged = [(t, v) for t, _, v in rss if start <= t <= seconds]
        if judged:
            mean = sum(v for _, v in judged) / len(judged)
            middle.plot([t for t, _ in judged], [(v - mean) / mean * 100 for _, v in judged], color=color, label=name)
        fds = series(rows, name, "fds")
        bottom.plot([t for t, _, _ in fds], [v for _, _, v in fds], color=color, label=name)
    top.set_yscale("log")
    top.set_ylabel("RSS, dotted: allocated (MiB, log scale)")
    top.set_title(f"ferry soak: {seconds} s of load, then {TAIL} s idle")
    middle.axhspan(-RSS_BAND, RSS_BAND, color="0.9")
    middle.set_ylabel("RSS vs its mean over the\njudged window (%)")
    bottom.set_ylabel("open fds")
    bottom.set_xlabel("seconds since the load started")
    for axis in (top, middle, bottom):
        for t, label in soak.events:
            if "SIGTERM" in label:
                axis.axvline(t, color="red", linestyle="--")
            elif label.startswith("import"):
                axis.axvline(t, color="green", linestyle=":")
        axis.axvline(seconds, color="black", linestyle="-.")
        axis.grid(True, alpha=0.3)
    top.text(seconds, top.get_ylim()[1], " load stops", va="top")
    for t, label in soak.events:
        if "SIGTERM" in label:
            top.text(t, top.get_ylim()[1], f" {restarted} restarted", color="red", va="top")
        elif label.startswith("import"):
            top.text(t, top.get_ylim()[0], " import", color="green", va="bottom")
    top.legend(loc="lower right", ncol=3, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


# ---- the run --------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="soak.sh's folder (procs/ holds each process's pid and endpoints)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--redis-prefix", required=True)
    args = parser.parse_args()
    soak = Soak(args)
    setup(soak)

    soak.t0 = time.monotonic()
    rows = []
    threads = [threading.Thread(target=sampler, args=(soak, rows, args.seconds + TAIL,
                                                      os.path.join(args.out, "samples.csv")), daemon=True)]
    load = [threading.Thread(target=fn, args=a, name=name, daemon=True) for name, fn, a in [
        ("models@n0", model_reader, (soak, "n0")), ("models@n1", model_reader, (soak, "n1")),
        ("models@mirror", model_reader, (soak, "mirror")), ("overwrite", overwriter, (soak,)),
        ("ow@n0", overwrite_reader, (soak, "n0")), ("ow@n1", overwrite_reader, (soak, "n1")),
        ("ow@mirror", overwrite_reader, (soak, "mirror")), ("new@n0", writer, (soak, "n0", 0)),
        ("new@n1", writer, (soak, "n1", 1)), ("warm-up", warmups, (soak,)),
        ("mirror-watch", mirror_watch, (soak,))]]
    for thread in threads + load:
        thread.start()
    log(f"load running for {args.seconds} s; import at {0.4 * args.seconds:.0f} s, n2 restart at {args.seconds / 2:.0f} s")

    threading.current_thread().name = "events"  # the import and the restart run here
    time.sleep(max(0, soak.t0 + 0.4 * args.seconds - time.monotonic()))
    run_import(soak)
    time.sleep(max(0, soak.t0 + args.seconds / 2 - time.monotonic()))
    back = None
    try:
        restart(soak, "n2")
        back = soak.now()
    except SystemExit as e:
        soak.tally.note("errors", round(soak.now(), 1), "restart", "n2", str(e))
    while soak.now() < args.seconds:
        time.sleep(min(30, args.seconds - soak.now()))
        if soak.now() < args.seconds:
            log(f"t={soak.now():6.1f}s {sum(soak.tally.ops.values())} operations, {len(soak.tally.errors)} errors")
    soak.stop.set()
    soak.mark("load stops")
    for thread in load:
        thread.join(timeout=90)
    threads[0].join()

    ok, lines = judge(soak, rows, "n2", back)
    plot(soak, rows, "n2", back, os.path.join(args.out, "rss.png"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    print(f"samples: {os.path.join(args.out, 'samples.csv')}, plot: {os.path.join(args.out, 'rss.png')}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
