# Build the benchmark's 1 GiB .pt job: the same 241 float32 tensors as
# bench/make_job.py (3x3x256x512 HWIO conv kernels alternating with
# 1024x1024 dense kernels, same names and values), read from the
# safetensors job that script wrote and saved by torch.save as a state dict
# (an OrderedDict, names in the safetensors file's order).
# usage: python3 make_job_pt.py JOB.safetensors OUT.pt
import collections, json, struct, sys
import numpy as np
import torch

src, out = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
base = 8 + n
mm = np.memmap(src, dtype=np.uint8, mode="r")
sd = collections.OrderedDict()
for k in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
    v = header[k]
    a, b = v["data_offsets"]
    sd[k] = torch.from_numpy(np.array(mm[base + a:base + b]).view(np.float32)
                             .reshape(v["shape"]))
torch.save(sd, out)
