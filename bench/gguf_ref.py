# gguf-py side of bench/gguf.sh (oracle environment), "name seconds" lines.
# usage: gguf_ref.py open|read FILE.gguf
import sys, time
import gguf
from gguf import quants


def best(fn, reps):
    b = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t0)
    return b


step, path = sys.argv[1], sys.argv[2]
if step == "open":
    def op():
        r = gguf.GGUFReader(path)
        for t in r.tensors:
            _ = (t.name, t.shape)
    print("gguf_py", best(op, 5))
else:
    r = gguf.GGUFReader(path)
    def rd():
        for t in r.tensors:
            x = quants.dequantize(t.data, t.tensor_type)
            del x
    print("gguf_py", best(rd, 1))
