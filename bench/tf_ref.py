# TensorFlow as the peer in bench/tf.sh, run by the oracle environment's
# python (TensorFlow 2.21, torch 2): printing "name value" lines.
# usage: tf_ref.py read PREFIX          tf.train.load_checkpoint + get_tensor
#                                       of every entry, best of 3 (a fresh
#                                       reader each time)
#        tf_ref.py convert PREFIX OUT   the ckpt2h5.py route to torch: TF
#                                       reader, numpy transpose (HWIO->OIHW
#                                       for 4-D, .T for the rest), torch.save
#        tf_ref.py check A.pt B.pt      torch.load both (mmap); the number of
#                                       tensors when names and values agree
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

step = sys.argv[1]


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if step == "read":
    import tensorflow as tf
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        r = tf.train.load_checkpoint(sys.argv[2])
        for k in r.get_variable_to_shape_map():
            a = r.get_tensor(k)
            del a
        best = min(best, time.perf_counter() - t0)
    print("tf", best)
elif step == "convert":
    import numpy as np
    import tensorflow as tf
    import torch
    t0 = time.perf_counter()
    r = tf.train.load_checkpoint(sys.argv[2])
    sd = {}
    for k in sorted(r.get_variable_to_shape_map()):
        a = r.get_tensor(k)
        a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
        sd[k] = torch.from_numpy(np.ascontiguousarray(a))
    torch.save(sd, sys.argv[3])
    print("tf_torch", time.perf_counter() - t0)
    print("rss", rss())
elif step == "check":
    import torch
    a = torch.load(sys.argv[2], mmap=True, weights_only=True)
    b = torch.load(sys.argv[3], mmap=True, weights_only=True)
    same = sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    print(len(a) if same else "DIFFERENT")
