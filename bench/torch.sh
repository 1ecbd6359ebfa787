#!/bin/sh
# make bench, PyTorch part (run by bench/run after the safetensors job is
# built): open + list a 1 GiB .pt against torch.load, and .pt -> .pt with
# permute + float16 against torch's load/permute/half/save, with peak RSS.
# Peers: torch 1.13 (Debian's python3) and torch 2.x (the oracle
# environment's python, GRAFT_ORACLE_PYTHON; its torch.load(mmap=True) too).
# GRAFT_BENCH_DIR (default /tmp/graft-bench) holds the generated files.
set -e
cd "$(dirname "$0")/.."
PY=${GRAFT_PYTHON:-/usr/bin/python3}
OPY=${GRAFT_ORACLE_PYTHON:-.venv-oracles/bin/python}
[ -x "$OPY" ] || { echo "bench/torch.sh: the oracle python $OPY is missing (tools/install-deps --test)" >&2; exit 1; }
DIR=${GRAFT_BENCH_DIR:-/tmp/graft-bench}
JOB="$DIR/job.safetensors"
PT="$DIR/job.pt"
mkdir -p "$DIR"
if [ ! -s "$JOB" ]; then
  echo "building the 1 GiB job in $JOB ..."
  $PY bench/make_job.py "$JOB"
fi
if [ ! -s "$PT" ]; then
  echo "building the 1 GiB .pt job in $PT ..."
  $PY bench/make_job_pt.py "$JOB" "$PT"
fi
get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a * 1000 }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.0f MiB", a / 1048576 }'; }
SIZE=$(wc -c < "$PT")
cat "$PT" > /dev/null   # warm the page cache for both sides

echo
g=$(lua5.4 bench/torch_steps.lua "$PT" open); r=$($PY bench/torch_ref.py "$PT" open)
r2=$($OPY bench/torch_ref.py "$PT" open); r3=$($OPY bench/torch_ref.py "$PT" open_mmap)
G=$(get "$g" graft); GR=$(get "$g" rss); T=$(get "$r" torch); TR=$(get "$r" rss)
T2=$(get "$r2" torch); T2R=$(get "$r2" rss); T3=$(get "$r3" torch); T3R=$(get "$r3" rss)
echo "open + list the 1 GiB .pt ($(mib $SIZE), 241 tensors):"
echo "  graft $(ms $G), peak RSS $(mib $GR)"
echo "  torch 1.13 torch.load $(ms $T), peak RSS $(mib $TR)"
echo "  torch 2.x torch.load $(ms $T2), peak RSS $(mib $T2R)"
echo "  torch 2.x torch.load(mmap=True) $(ms $T3), peak RSS $(mib $T3R)"
echo "  graft vs torch 1.13: $(ratio $T $G)x faster (target >= 100)   vs torch 2.x: $(ratio $T2 $G)x   vs mmap=True: $(ratio $T3 $G)x"

rm -f "$DIR/out_graft.pt" "$DIR/out_torch.pt" "$DIR/out_torch2.pt"
g=$(lua5.4 bench/torch_steps.lua "$PT" convert "$DIR/out_graft.pt")
r=$($PY bench/torch_ref.py "$PT" convert "$DIR/out_torch.pt")
r2=$($OPY bench/torch_ref.py "$PT" convert "$DIR/out_torch2.pt")
G=$(get "$g" graft); GR=$(get "$g" rss); T=$(get "$r" torch); TR=$(get "$r" rss)
T2=$(get "$r2" torch); T2R=$(get "$r2" rss)
echo ".pt -> .pt with permute + float16:"
echo "  graft $(ms $G), peak RSS $(mib $GR) = $(ratio $GR $SIZE)x the model (target <= 0.15)"
echo "  torch 1.13 $(ms $T), peak RSS $(mib $TR) = $(ratio $TR $SIZE)x the model"
echo "  torch 2.x $(ms $T2), peak RSS $(mib $T2R) = $(ratio $T2R $SIZE)x the model"
echo "  graft vs torch 1.13: $(ratio $T $G)x faster (target >= 4)   vs torch 2.x: $(ratio $T2 $G)x"
echo "  outputs hold $($PY bench/torch_ref.py "$DIR/out_graft.pt" check "$DIR/out_torch.pt") tensors (torch 1.13)," \
  "$($OPY bench/torch_ref.py "$DIR/out_graft.pt" check "$DIR/out_torch2.pt") tensors (torch 2.x)"
rm -f "$DIR/out_torch2.pt"
