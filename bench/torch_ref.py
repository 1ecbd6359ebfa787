# torch's side of bench/torch.sh, printing "name value" lines; run with
# Debian's python3 (torch 1.13) and with the oracle environment's python
# (torch 2.x): the same steps for both.
# usage: python3 torch_ref.py JOB.pt STEP [OUT]
#   open           torch.load the whole file (best of 3), peak RSS
#   open_mmap      torch.load(mmap=True) (torch >= 2.1): the file mapped,
#                  names and shapes listed (best of 3), peak RSS
#   convert OUT    torch.load, permute (conv HWIO -> OIHW, dense transpose),
#                  contiguous, half, torch.save; time and peak RSS
#   check OTHER    whether JOB.pt and OTHER hold equal tensors (names,
#                  dtypes, shapes, values bit for bit)
import resource, sys, time
import torch

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def step_open(path):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sd = torch.load(path, map_location="cpu")
        names = list(sd.keys())
        shapes = [tuple(sd[k].shape) for k in names]
        dt = time.perf_counter() - t0
        best = min(best, dt)
        del sd, names, shapes
    print("torch", best)
    print("rss", rss())

def step_open_mmap(path):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sd = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        names = list(sd.keys())
        shapes = [tuple(sd[k].shape) for k in names]
        dt = time.perf_counter() - t0
        best = min(best, dt)
        del sd, names, shapes
    print("torch", best)
    print("rss", rss())

def step_convert(path, out):
    t0 = time.perf_counter()
    sd = torch.load(path, map_location="cpu")
    for k in list(sd.keys()):
        t = sd[k]
        sd[k] = (t.permute(3, 2, 0, 1) if t.dim() == 4 else t.t()).contiguous().half()
    torch.save(sd, out)
    print("torch", time.perf_counter() - t0)
    print("rss", rss())

def step_check(a, b):
    x = torch.load(a, map_location="cpu", weights_only=True)
    y = torch.load(b, map_location="cpu", weights_only=True)
    same = list(x.keys()) == list(y.keys()) and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape
        and torch.equal(x[k].view(torch.int16), y[k].view(torch.int16))
        for k in x)
    print("equal" if same else "differ")

if __name__ == "__main__":
    path, step = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    if step == "open":
        step_open(path)
    elif step == "open_mmap":
        step_open_mmap(path)
    elif step == "convert":
        step_convert(path, sys.argv[3])
    elif step == "check":
        step_check(path, sys.argv[3])
