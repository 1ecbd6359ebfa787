# The Keras .h5 benchmark steps with h5py (Debian python3-h5py) and torch,
# printing "name value" lines for bench/keras.sh.
# usage: python3 keras_ref.py open|read FILE.h5
#        python3 keras_ref.py convert FILE.h5 OUT.pt
import resource, sys, time
import h5py
import numpy as np

step, path = sys.argv[1], sys.argv[2]


def best(fn, reps=5):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    return min(t)


def datasets(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


if step == "open":
    def run():
        with h5py.File(path, "r") as f:
            for n in datasets(f):
                f[n].shape
    print("h5py", best(run, 20))
elif step == "read":
    f = h5py.File(path, "r")
    names = datasets(f)
    def run():
        for n in names:
            a = f[n][()]
            del a
    print("h5py", best(run, 3))
elif step == "convert":
    import torch
    t0 = time.perf_counter()
    out = {}
    with h5py.File(path, "r") as f:
        for n in datasets(f):
            a = torch.from_numpy(f[n][()])
            if n.endswith("kernel:0"):
                a = a.permute(3, 2, 0, 1).contiguous() if a.dim() == 4 else a.t().contiguous()
            # Keras names: "layer/layer/kernel:0" -> "layer/kernel", as graft
            # names them, so the two outputs can be compared tensor by tensor
            layer, rest = n.split("/", 1)
            out[layer + "/" + rest.split("/", 1)[1].rsplit(":", 1)[0]] = a
    torch.save(out, sys.argv[3])
    print("h5py_torch", time.perf_counter() - t0)
    print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
