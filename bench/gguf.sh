#!/bin/sh
# GGUF benchmark (called by bench/run): a ~1.1 GiB Q8_0 GGUF written by
# graft from the bench job, then open + list and a full read dequantising
# every tensor to float32, with graft and with gguf-py (GGUFReader +
# quants.dequantize, from the oracle environment) on the same file.
set -e
cd "$(dirname "$0")/.."
ORACLE=${GRAFT_ORACLE_PYTHON:-.venv-oracles/bin/python}
DIR=${GRAFT_BENCH_DIR:-/tmp/graft-bench}
JOB="$DIR/job.safetensors"
GG="$DIR/job_q8_0.gguf"
if [ ! -s "$GG" ] || [ "$JOB" -nt "$GG" ]; then
  echo "writing the Q8_0 GGUF with graft in $GG ..."
  lua5.4 bench/gguf_steps.lua make "$JOB" "$GG"
fi
get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a * 1000 }'; }
cat "$GG" > /dev/null  # warm the page cache

echo
g=$(lua5.4 bench/gguf_steps.lua open "$GG"); r=$($ORACLE bench/gguf_ref.py open "$GG")
G=$(get "$g" graft); R=$(get "$r" gguf_py)
echo "open + list the $(du -h "$GG" | cut -f1) Q8_0 GGUF (964 tensors):"
echo "  graft $(ms $G)  gguf-py $(ms $R)  graft vs gguf-py: $(ratio $R $G)x"

g=$(lua5.4 bench/gguf_steps.lua read "$GG"); r=$($ORACLE bench/gguf_ref.py read "$GG")
G=$(get "$g" graft); R=$(get "$r" gguf_py)
echo "full read, every tensor dequantised to float32:"
echo "  graft $(ms $G)  gguf-py $(ms $R)  graft vs gguf-py: $(ratio $R $G)x"
