# Generates data/tiny_cnn_keras.npz, the input of examples/transplant.lua:
# the weights of a small Keras-style CNN (conv kernels HWIO, dense kernels
# [in, out], Keras names), as np.savez writes them. Run with Debian's
# python3-numpy:  /usr/bin/python3 examples/data/make_tiny_cnn.py
import numpy as np

rng = np.random.default_rng(42)
w = {
    "conv1/kernel": rng.standard_normal((3, 3, 3, 8), dtype=np.float32),
    "conv1/bias": rng.standard_normal(8, dtype=np.float32),
    "conv2/kernel": rng.standard_normal((3, 3, 8, 16), dtype=np.float32),
    "conv2/bias": rng.standard_normal(16, dtype=np.float32),
    "dense/kernel": rng.standard_normal((64, 10), dtype=np.float32),
    "dense/bias": rng.standard_normal(10, dtype=np.float32),
}
np.savez("examples/data/tiny_cnn_keras.npz", **w)
