#!/bin/bash
# A GPU host run (issue 17), one call: a previous tree (.gpu/before, optional) then this tree, one worker of k
# processes draining 1,000 devices x 600 single-form readings, GPU vs CPU (JAX) on the same host.
# Needs, beside the checkout: .whl/ (the runtime wheels for the host's Python, ../shared/notes/gpu-host.md),
# .floorwatch/models (a model trained here: the host has no TensorFlow), and for the "before" phase a previous
# tree's stream_app/ and producers/ in .gpu/before (BEFORE_PLAN=none skips it). Results: $OUT/{before,after}.json.
# Knobs: PLAN, BEFORE_PLAN, E2E_S, BEFORE_S, DEVICES, READINGS; LOCAL=1 PY=.venv/bin/python to try it here.
set -u
t0=$(date +%s)
ROOT=$PWD
PY=${PY:-python3}
[ -n "${LOCAL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export FLOORWATCH_MODEL_DIR=$ROOT/.floorwatch/models TMPDIR=/tmp
nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; echo "install $(( $(date +%s) - t0 )) s"
run() {  # tree plan seconds name: the worker runs `python -m stream_app` from the tree (its cwd)
  (cd $1 && PYTHONPATH=/tmp/site:$1 timeout $3 $PY $ROOT/scripts/e2e_workers.py $OUT/$4.json ${DEVICES:-1000} ${READINGS:-600} "$2" 10000 2>&1 | grep -E "^\{|failed" | cut -c1-900; echo "$4 rc=${PIPESTATUS[0]} at $(( $(date +%s) - t0 )) s")
}
[ "${BEFORE_PLAN:-gpu:1}" = none ] || [ ! -d "$ROOT/.gpu/before" ] || run $ROOT/.gpu/before "${BEFORE_PLAN:-gpu:1}" ${BEFORE_S:-110} before
run $ROOT "${PLAN:-gpu:1,cpu:1,gpu:8,cpu:8,gpu:16}" ${E2E_S:-380} after
for f in /tmp/e2e*/w-*.log; do echo "== $f"; grep -iE "error|traceback|warn" "$f" | sort | uniq -c | sort -rn | head -5; done > $OUT/worker-logs.txt 2>&1
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null
