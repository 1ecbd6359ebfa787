# Keras's side of the "load the 1 GiB .h5" row of bench/keras.sh: tf-keras
# (Keras 2, the oracle environment's python) model.load_weights of the
# graft-written weights file into a model of its architecture, printing
# "name value" lines.
# usage: .venv-oracles/bin/python keras_load_ref.py FILE.h5
# The job's layers are "layer000_conv" (a 3x3 Conv2D 256 -> 512 kernel, no
# bias) and "layer001_dense" (a 1024 x 1024 Dense kernel, no bias)
# alternating, 241 of them: each is built on its own input (they do not
# chain), in file order, so positional loading matches them. Building the
# model is not timed; load_weights is (best of 3), and one kernel is
# checked against h5py's read of the file.
import os
import resource
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

path = sys.argv[1]
with h5py.File(path, "r") as f:
    names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
    last = names[-1]
    want = f[last][f[last].attrs["weight_names"][0]][()]
ins, outs = [], []
for n in names:
    if n.endswith("_conv"):
        x = keras.Input((3, 3, 256))
        y = keras.layers.Conv2D(512, 3, use_bias=False, name=n)(x)
    else:
        x = keras.Input((1024,))
        y = keras.layers.Dense(1024, use_bias=False, name=n)(x)
    ins.append(x)
    outs.append(y)
model = keras.Model(ins, outs)
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    model.load_weights(path)
    best = min(best, time.perf_counter() - t0)
ok = np.array_equal(model.get_layer(last).get_weights()[0], want)
print("keras", best)
print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print("check", "equal" if ok else "differ")
