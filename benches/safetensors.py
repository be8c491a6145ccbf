"""Writes a safetensors-shaped file for the read benchmarks: an 8-byte
little-endian header length, a JSON header naming 4 MiB BF16 tensors (like
the layers of a small model shard), padding so the data starts 8-aligned,
then random bytes up to the requested size.

Usage: python3 benches/safetensors.py PATH MIB
"""
import json
import os
import struct
import sys

path, total = sys.argv[1], int(sys.argv[2]) << 20
tensor = 4 << 20
count = max(1, (total - 64 * 1024) // tensor)
header = {"__metadata__": {"format": "pt"}}
for i in range(count):
    header[f"model.layers.{i // 8}.w{i % 8}.weight"] = {
        "dtype": "BF16", "shape": [1024, tensor // 2048], "data_offsets": [i * tensor, (i + 1) * tensor]}
raw = json.dumps(header, separators=(",", ":")).encode()
raw += b" " * (-(8 + len(raw)) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw)
    left = total - 8 - len(raw)
    while left > 0:
        n = min(left, 16 << 20)
        f.write(os.urandom(n))
        left -= n
