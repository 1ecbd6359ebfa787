#!/bin/sh
# ONNX benchmark (called by bench/run): the 1 GiB job written as an ONNX
# model (241 FLOAT initializers in raw_data); open + list and a full read,
# graft against python-onnx (onnx.load + numpy_helper.to_array), with peak
# RSS. python-onnx runs in the oracle environment (GRAFT_ORACLE_PYTHON)
# when there is one, else under Debian's python3.
# GRAFT_BENCH_DIR (default /tmp/graft-bench) holds the files.
set -e
cd "$(dirname "$0")/.."
PY=${GRAFT_PYTHON:-/usr/bin/python3}
OPY=${GRAFT_ORACLE_PYTHON:-.venv-oracles/bin/python}
[ -x "$OPY" ] || OPY=$PY
DIR=${GRAFT_BENCH_DIR:-/tmp/graft-bench}
mkdir -p "$DIR"
JOB="$DIR/job.safetensors"
ONNX="$DIR/job.onnx"
if [ ! -s "$JOB" ]; then
  echo "building the 1 GiB job in $JOB ..."
  $PY bench/make_job.py "$JOB"
fi
if [ ! -s "$ONNX" ]; then
  echo "building the 1 GiB ONNX job in $ONNX ..."
  $PY bench/make_job_onnx.py "$JOB" "$ONNX"
fi
get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a * 1000 }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.0f MiB", a / 1048576 }'; }
cat "$ONNX" > /dev/null   # warm the page cache for both sides

echo
g=$(lua5.4 bench/onnx_steps.lua "$ONNX" open); r=$($OPY bench/onnx_ref.py "$ONNX" open)
G=$(get "$g" graft); GR=$(get "$g" rss); P=$(get "$r" python); PR=$(get "$r" rss)
echo "open + list the 1 GiB ONNX model (241 initializers, raw_data):"
echo "  graft $(ms $G), peak RSS $(mib $GR)"
echo "  python-onnx $(get "$r" onnx) onnx.load $(ms $P), peak RSS $(mib $PR)"
echo "  graft vs python-onnx: $(ratio $P $G)x faster"

g=$(lua5.4 bench/onnx_steps.lua "$ONNX" read); r=$($OPY bench/onnx_ref.py "$ONNX" read)
G=$(get "$g" graft); GR=$(get "$g" rss); P=$(get "$r" python); PR=$(get "$r" rss)
echo "full read (every initializer copied into its own array, best of 3):"
echo "  graft $(ms $G), peak RSS $(mib $GR)"
echo "  python-onnx onnx.load + to_array $(ms $P), peak RSS $(mib $PR)"
echo "  graft vs python-onnx: $(ratio $P $G)x faster"
