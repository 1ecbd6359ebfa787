#!/bin/sh
# Keras .h5 benchmark (called by bench/run): a 1 GiB Keras 2 weights file
# written by graft from the bench job, then open + list and a full read with
# graft and with h5py on the same file, tf-keras model.load_weights against
# graft opening it and reading every weight, and .h5 -> transposed weights.
set -e
cd "$(dirname "$0")/.."
PY=${GRAFT_PYTHON:-/usr/bin/python3}
OPY=${GRAFT_ORACLE_PYTHON:-.venv-oracles/bin/python}
[ -x "$OPY" ] || { echo "bench/keras.sh: the oracle python $OPY is missing (tools/install-deps --test)" >&2; exit 1; }
DIR=${GRAFT_BENCH_DIR:-/tmp/graft-bench}
JOB="$DIR/job.safetensors"
H5="$DIR/keras_job.h5"
if [ ! -s "$H5" ] || [ "$JOB" -nt "$H5" ]; then
  echo "writing the 1 GiB Keras .h5 with graft in $H5 ..."
  lua5.4 bench/keras_steps.lua make "$JOB" "$H5"
fi
get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a * 1000 }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.0f MiB", a / 1048576 }'; }
cat "$H5" > /dev/null  # warm the page cache

echo
g=$(lua5.4 bench/keras_steps.lua open "$H5"); r=$($PY bench/keras_ref.py open "$H5")
G=$(get "$g" graft); R=$(get "$r" h5py)
echo "open + list the 1 GiB Keras .h5 (241 datasets):"
echo "  graft $(ms $G) (target <= 20 ms)  h5py $(ms $R)  graft vs h5py: $(ratio $R $G)x"

g=$(lua5.4 bench/keras_steps.lua read "$H5"); r=$($PY bench/keras_ref.py read "$H5")
G=$(get "$g" graft); R=$(get "$r" h5py)
echo "full read of the 1 GiB Keras .h5 into memory:"
echo "  graft $(ms $G)  h5py $(ms $R)  graft vs h5py: $(ratio $R $G)x (target >= 1)"

g=$(lua5.4 bench/keras_steps.lua load "$H5"); r=$($OPY bench/keras_load_ref.py "$H5")
G=$(get "$g" graft); K=$(get "$r" keras); KR=$(get "$r" rss)
echo "load the 1 GiB Keras .h5 (every weight in memory):"
echo "  graft open + read $(ms $G)  tf-keras model.load_weights $(ms $K) (peak RSS $(mib $KR), weights $(get "$r" check) to h5py's)"
echo "  graft vs tf-keras: $(ratio $K $G)x"

mkdir -p "$DIR/graft" "$DIR/torch"
rm -f "$DIR/graft/keras_out.pt" "$DIR/torch/keras_out.pt"
g=$(lua5.4 bench/keras_steps.lua convert "$H5" "$DIR/graft/keras_out.pt")
r=$($PY bench/keras_ref.py convert "$H5" "$DIR/torch/keras_out.pt")
G=$(get "$g" graft); GR=$(get "$g" rss); R=$(get "$r" h5py_torch); RR=$(get "$r" rss)
echo ".h5 -> transposed weights (kernels HWIO->OIHW, dense .t()):"
echo "  graft -> .pt $(ms $G), peak RSS $(mib $GR)"
echo "  h5py + torch.save -> .pt $(ms $R), peak RSS $(mib $RR)"
echo "  graft vs h5py+torch: $(ratio $R $G)x"
echo "  outputs hold $($PY bench/torch_ref.py "$DIR/graft/keras_out.pt" check "$DIR/torch/keras_out.pt") tensors"
rm -f "$DIR/graft/keras_out.pt" "$DIR/torch/keras_out.pt"
