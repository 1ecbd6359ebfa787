# The same benchmark steps with torch and numpy (Debian python3-torch,
# python3-numpy), printing "name seconds" lines for bench/run; st_open and
# st_convert use the safetensors package (Rust; the oracle environment's
# python, GRAFT_ORACLE_PYTHON).
# usage: python3 ref.py JOB.safetensors STEP
#   STEP: layout | cast | open | convert OUT | st_open | st_convert OUT | add OUT
import json, resource, struct, sys, time
import numpy as np
import torch

def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n

def load_all(path):
    """Every tensor as an in-memory numpy array (data read once, not timed)."""
    header, base = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        out[k] = np.array(mm[base + a: base + b]).view(np.float32).reshape(v["shape"])
    return out

def best(fn, reps=5):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    return min(t)

def layout(arrs, lib):
    def run():
        for a in arrs.values():
            if lib == "torch":
                r = a.permute(3, 2, 0, 1).contiguous() if a.dim() == 4 else a.t().contiguous()
            else:
                r = np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T)
            del r
    return best(run)

def cast(arrs, lib):
    def run():
        for a in arrs.values():
            r = a.half() if lib == "torch" else a.astype(np.float16)
            del r
    return best(run)

def convert(src, dst):
    """torch pipeline: mapped tensors -> permute/half -> safetensors file."""
    header, base = read_header(src)
    mm = np.memmap(src, dtype=np.uint8, mode="r")
    names = sorted(header)
    outs, off, meta = {}, 0, {}
    for k in names:
        v = header[k]
        a, b = v["data_offsets"]
        t = torch.from_numpy(np.frombuffer(mm, dtype=np.float32, count=(b - a) // 4,
                                           offset=base + a).reshape(v["shape"]))
        t = (t.permute(3, 2, 0, 1) if t.dim() == 4 else t.t()).contiguous().half()
        outs[k] = t
        n = t.numel() * 2
        meta[k] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(meta, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for k in names:
            f.write(outs[k].numpy().tobytes())

def st_open(path):
    """safe_open, every name and shape (get_slice reads no data); the mean
    of 50, as graft_steps.lua's open step measures."""
    from safetensors import safe_open
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                f.get_slice(k).get_shape()
    return (time.perf_counter() - t0) / n

def st_convert(src, dst):
    """safe_open -> get_tensor -> permute/half -> safetensors.torch.save_file."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    outs = {}
    with safe_open(src, framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            outs[k] = (t.permute(3, 2, 0, 1) if t.dim() == 4 else t.t()).contiguous().half()
            del t
    save_file(outs, dst)
def add(src, dst):
    """torch pipeline for the fused (a + b).half(): mapped tensors, each plus
    the next one in name order with the same shape (wrapping), as float16
    into a safetensors file written as convert() writes it."""
    header, base = read_header(src)
    mm = np.memmap(src, dtype=np.uint8, mode="r")
    names = sorted(header)

    def tensor(k):
        a, b = header[k]["data_offsets"]
        return torch.from_numpy(np.frombuffer(mm, dtype=np.float32, count=(b - a) // 4,
                                              offset=base + a).reshape(header[k]["shape"]))
    outs, off, meta = {}, 0, {}
    for i, k in enumerate(names):
        j = (i + 1) % len(names)
        while header[names[j]]["shape"] != header[k]["shape"]:
            j = (j + 1) % len(names)
        t = (tensor(k) + tensor(names[j])).half()
        outs[k] = t
        n = t.numel() * 2
        meta[k] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(meta, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for k in names:
            f.write(outs[k].numpy().tobytes())

if __name__ == "__main__":
    path, step = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    if step in ("layout", "cast"):
        arrs = load_all(path)
        tarrs = {k: torch.from_numpy(v) for k, v in arrs.items()}
        fn = layout if step == "layout" else cast
        print("torch", fn(tarrs, "torch"))
        print("numpy", fn(arrs, "numpy"))
    elif step == "st_open":
        print("safetensors", st_open(path))
    elif step == "st_convert":
        t0 = time.perf_counter(); st_convert(path, sys.argv[3]); dt = time.perf_counter() - t0
        print("safetensors", dt)
        print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    elif step in ("convert", "add"):
        fn = convert if step == "convert" else add
        t0 = time.perf_counter(); fn(path, sys.argv[3]); dt = time.perf_counter() - t0
        print("torch", dt)
        print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
