#!/bin/sh
# TensorFlow checkpoint benchmark (called by bench/run): the 1 GiB job
# written as a TF checkpoint by graft; open + list and a full read of it;
# and TF checkpoint -> .pt with HWIO->OIHW and dense transposes against
# .pt -> .pt of the same job (same transposes, same writer), so the two
# differ only in the reader. TensorFlow itself is the peer where a user
# would use it (bench/tf_ref.py under the oracle environment's python,
# GRAFT_ORACLE_PYTHON): tf.train.load_checkpoint + get_tensor of every entry,
# and the ckpt2h5.py route (TF reader, numpy transpose, torch.save).
# Also: opening and listing a TF index of 10^6 entries.
# GRAFT_BENCH_DIR (default /tmp/graft-bench) holds the files (TensorFlow's
# log lines go to tf/oracle.log there).
set -e
cd "$(dirname "$0")/.."
PY=${GRAFT_PYTHON:-/usr/bin/python3}
ORACLE=${GRAFT_ORACLE_PYTHON:-.venv-oracles/bin/python}
DIR=${GRAFT_BENCH_DIR:-/tmp/graft-bench}
mkdir -p "$DIR/tf"
JOB="$DIR/job.safetensors"
CKPT="$DIR/tf/job"
if [ ! -s "$JOB" ]; then
  echo "building the 1 GiB job in $JOB ..."
  $PY bench/make_job.py "$JOB"
fi
get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a * 1000 }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.0f MiB", a / 1048576 }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }

if [ ! -s "$CKPT.index" ]; then
  w=$(lua5.4 bench/tf_steps.lua write "$JOB" "$CKPT")
  echo "wrote the job as a TF checkpoint in $(ms $(get "$w" graft)) ($CKPT)"
fi
cat "$CKPT".data-* >/dev/null  # warm the page cache

g=$(lua5.4 bench/tf_steps.lua open "$CKPT")
echo "open + list the 1 GiB TF checkpoint (241 entries):"
echo "  graft $(ms $(get "$g" graft)) (target <= 10 ms)"

# A TF index of 10^6 entries (issue 13 item 4: opens in < 2 s within
# ~300 bytes an entry), built once by bench/tf_index_steps.lua (~30 s).
BIG="$DIR/tf/index1m"
if [ ! -s "$BIG/ckpt.index" ]; then
  mkdir -p "$BIG"
  echo "building a 10^6-entry TF index in $BIG ..."
  lua5.4 bench/tf_index_steps.lua build 1000000 "$BIG"
fi
cat "$BIG"/ckpt.* >/dev/null  # warm the page cache
g=$(lua5.4 bench/tf_index_steps.lua open "$BIG")
echo "open + list a TF index of $(get "$g" entries) entries (target < 2 s, <= 300 bytes an entry):"
echo "  open $(ms $(get "$g" open)) (CPU $(ms $(get "$g" open_cpu))), list $(ms $(get "$g" list)) (CPU $(ms $(get "$g" list_cpu)))"
echo "  peak RSS $(get "$g" rss_per_entry | awk '{ printf "%.0f", $1 }') bytes an entry"

g=$(lua5.4 bench/tf_steps.lua read "$CKPT")
echo "full read of the TF checkpoint (every tensor materialised, crc32c checked):"
if [ -x "$ORACLE" ]; then
  r=$($ORACLE bench/tf_ref.py read "$CKPT" 2>>"$DIR/tf/oracle.log")
  echo "  graft $(ms $(get "$g" graft))  TensorFlow load_checkpoint + get_tensor $(ms $(get "$r" tf))"
  echo "  graft vs TensorFlow: $(ratio $(get "$r" tf) $(get "$g" graft))x"
else
  echo "  graft $(ms $(get "$g" graft))  (no TensorFlow rows: $ORACLE missing; tools/install-deps --test)"
fi

# The .pt job (bench/torch.sh builds it) is the reference source: the issue
# asks TF -> .pt to be at least as fast as .pt -> .pt.
PT="$DIR/job.pt"
if [ ! -s "$PT" ]; then
  echo "building the 1 GiB .pt job in $PT ..."
  $PY bench/make_job_pt.py "$JOB" "$PT"
fi
EXT=pt
mkdir -p "$DIR/tf/a" "$DIR/tf/b"  # same file name: torch archives are named after it
cat "$PT" >/dev/null  # warm the page cache

TFT=1e9; STT=1e9
for _ in 1 2; do
  rm -f "$DIR/tf/a/out.$EXT" "$DIR/tf/b/out.$EXT"
  a=$(lua5.4 bench/tf_steps.lua convert "$CKPT" "$DIR/tf/a/out.$EXT")
  b=$(lua5.4 bench/tf_steps.lua convert "$PT" "$DIR/tf/b/out.$EXT")
  TFT=$(min "$TFT" "$(get "$a" graft)"); TFR=$(get "$a" rss)
  STT=$(min "$STT" "$(get "$b" graft)"); STR=$(get "$b" rss)
done
echo "convert with HWIO->OIHW + dense transposes, float32, to .$EXT (best of 2):"
echo "  TF checkpoint -> .$EXT:  $(ms $TFT), peak RSS $(mib $TFR)"
echo "  .pt -> .$EXT:            $(ms $STT), peak RSS $(mib $STR)"
echo "  TF path vs .pt path: $(ratio $STT $TFT)x (target >= 1)"
if cmp -s "$DIR/tf/a/out.$EXT" "$DIR/tf/b/out.$EXT"; then
  echo "  outputs are byte-identical"
else
  echo "  OUTPUTS DIFFER"
fi
if [ -x "$ORACLE" ]; then
  r=$($ORACLE bench/tf_ref.py convert "$CKPT" "$DIR/tf/b/out.$EXT" 2>>"$DIR/tf/oracle.log")
  echo "TF checkpoint -> .pt through TensorFlow (load_checkpoint, numpy transpose, torch.save):"
  echo "  TensorFlow + torch $(ms $(get "$r" tf_torch)), peak RSS $(mib $(get "$r" rss))"
  echo "  graft vs TensorFlow + torch: $(ratio $(get "$r" tf_torch) $TFT)x"
  echo "  outputs hold $($ORACLE bench/tf_ref.py check "$DIR/tf/a/out.$EXT" "$DIR/tf/b/out.$EXT" 2>>"$DIR/tf/oracle.log") equal tensors"
fi
rm -f "$DIR/tf/a/out.$EXT" "$DIR/tf/b/out.$EXT"
