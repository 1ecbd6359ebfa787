"""python-onnx's side of bench/onnx.sh, printing "name value" lines.

Usage: python bench/onnx_ref.py JOB.onnx STEP
  open   onnx.load + list every initializer's name and dims (best of 3)
  read   onnx.load + numpy_helper.to_array of every initializer, copied
         into its own array as graft's clone does (best of 3)
"""
import resource
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper


def once(path, step):
    t0 = time.perf_counter()
    m = onnx.load(path)
    if step == "open":
        for t in m.graph.initializer:
            _ = (t.name, list(t.dims))
    else:
        for t in m.graph.initializer:
            _ = np.array(numpy_helper.to_array(t))
    return time.perf_counter() - t0


def main(path, step):
    best = min(once(path, step) for _ in range(3))
    print("python", best)
    print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print("onnx", onnx.__version__)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
