# Generates data/tiny_cnn_keras.h5, the input of examples/transplant.lua:
# the weights of a small Keras CNN (Conv2D 3->8, Conv2D 8->16, Flatten,
# Dense 64->10) in the layout Keras 2's model.save_weights() writes: root
# attributes layer_names / backend / keras_version, one group per layer with
# a weight_names attribute, datasets at <layer>/<layer>/<weight>:0, conv
# kernels HWIO and dense kernels [in, out]. Keras is not in Debian, so the
# file is written with h5py following that layout (docs/formats/keras.md#weights-only-files; the real
# Keras files in shared/fixtures/real/keras_h5 have the same structure).
# Run with Debian's python3-h5py:
#   /usr/bin/python3 examples/data/make_tiny_cnn.py
import h5py
import numpy as np

rng = np.random.default_rng(42)
layers = [
    ("conv1", [("kernel", (3, 3, 3, 8)), ("bias", (8,))]),
    ("conv2", [("kernel", (3, 3, 8, 16)), ("bias", (16,))]),
    ("flatten", []),
    ("dense", [("kernel", (64, 10)), ("bias", (10,))]),
]
with h5py.File("examples/data/tiny_cnn_keras.h5", "w") as f:
    f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers], dtype="S")
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.11.0"
    for name, weights in layers:
        g = f.create_group(name)
        g.attrs["weight_names"] = np.array(
            [f"{name}/{w}:0".encode() for w, _ in weights], dtype="S")
        for w, shape in weights:
            g.create_dataset(f"{name}/{w}:0",
                             data=rng.standard_normal(shape, dtype=np.float32))
