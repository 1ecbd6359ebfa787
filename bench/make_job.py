# Build the benchmark's "1 GiB job": 241 float32 tensors, 3x3x256x512 HWIO
# conv kernels alternating with 1024x1024 dense kernels, as a safetensors
# file written the way the reference writer does (header padded to 8, data
# in name order within one dtype). Random normal values, fixed seed.
# usage: python3 make_job.py OUT.safetensors
import json, struct, sys
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(0)
names, shapes = [], []
for i in range(241):
    if i % 2 == 0:
        names.append("layer%03d.conv/kernel" % i); shapes.append((3, 3, 256, 512))
    else:
        names.append("layer%03d.dense/kernel" % i); shapes.append((1024, 1024))
order = sorted(range(241), key=lambda i: names[i])
header, off = {}, 0
for i in order:
    n = int(np.prod(shapes[i])) * 4
    header[names[i]] = {"dtype": "F32", "shape": list(shapes[i]), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    block = rng.standard_normal(1 << 20, dtype=np.float32)
    for i in order:
        n = int(np.prod(shapes[i]))
        reps = -(-n // block.size)
        np.tile(block, reps)[:n].tofile(f)
        block = np.roll(block, 12345)
