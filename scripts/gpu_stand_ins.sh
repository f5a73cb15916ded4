#!/bin/bash
# Detector arms over stand-in sets nobody looked at, on a host with many cores (the GPU host: its CPUs,
# Keras on JAX; ../shared/notes/gpu-host.md). One `floorwatch evaluate --csv` per set and arm, all at once,
# each on one core. Needs .whl/ beside the checkout (the runtime wheels for the host's Python).
#   SETS="sys:44 busy:4 def:3 wand:34" ARMS="on off:FLOORWATCH_ADAPT_SHIFTS=false before:@.gpu/before" \
#       scripts/gpu_stand_ins.sh
# An arm is NAME (this tree as it is), NAME:SETTING=VALUE (this tree with that setting) or NAME:@DIR (the tree
# whose stream_app/ is in DIR, e.g. a previous commit's `git archive`). OFF=SETTING=VALUE alone gives the arms
# "on off:OFF". sys: producers.system_streams; busy: producers.streams --benign-spikes 0.003; def:
# producers.streams; wand: producers.streams --wandering 0.5. Results: $OUT/summary.json (per set and arm,
# the NAB-style score with 10% windows, found / windows, false openings, or the run's exit status); evaluate's
# full reports stay on the host in /tmp/stand_ins (the device brings back only a few files from $OUT).
# At most 16 jobs (sets x arms) on the host's 16 cores: a set of 12 files needs ~6 minutes of a core there.
# LOCAL=1 PY=.venv/bin/python to try it here.
set -u
t0=$(date +%s)
ROOT=$PWD
PY=${PY:-python3}
ARMS=${ARMS:-"on off:${OFF:?ARMS or OFF names the arms}"}
[ -n "${LOCAL:-}" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export KERAS_BACKEND=${KERAS_BACKEND:-jax} JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 \
    OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
echo "$(nproc --all) cores, install $(( $(date +%s) - t0 )) s"
generate() {  # kind seed dir
    case $1 in
        sys) $PY -m producers.system_streams "$3" --seed "$2" ;;
        busy) $PY -m producers.streams "$3" --files 12 --seed "$2" --benign-spikes 0.003 ;;
        def) $PY -m producers.streams "$3" --files 12 --seed "$2" ;;
        wand) $PY -m producers.streams "$3" --files 12 --seed "$2" --wandering 0.5 ;;
        *) echo "unknown set kind $1" >&2; return 1 ;;
    esac > /dev/null
}
mkdir -p /tmp/stand_ins
for set in $SETS; do
    kind=${set%%:*} seed=${set##*:} dir=/tmp/sets/${set/:/}
    PYTHONPATH=/tmp/site:$ROOT generate "$kind" "$seed" "$dir" || exit 1
    for arm in $ARMS; do
        name=${arm%%:*} spec=${arm#*:} tree=$ROOT
        [ "$spec" = "$arm" ] && spec=""
        out=/tmp/stand_ins/$kind$seed-$name
        (case $spec in
            @*) tree=$ROOT/${spec#@} ;;
            *=*) export "$spec" ;;
         esac
         cd "$tree" && PYTHONPATH=/tmp/site:$tree $PY -m stream_app evaluate --csv "$dir" --label-column label \
             --warmup-rows 0.15 --json > "$out.json" 2> "$out.err"
         echo "$kind$seed $name rc=$? at $(( $(date +%s) - t0 )) s") &
    done
done
wait
$PY - "$OUT/summary.json" /tmp/stand_ins <<'PY'
import json, pathlib, sys
rows = {}
for report in sorted(pathlib.Path(sys.argv[2]).glob("*.json")):
    try:
        e = json.loads(report.read_text())["events_score_nab_windows"]
        rows[report.stem] = {k: e[k] for k in ("score", "detected", "windows", "false_detections")}
    except (ValueError, KeyError):
        rows[report.stem] = "no report (see its .err on the host)"
pathlib.Path(sys.argv[1]).write_text(json.dumps(rows, indent=1) + "\n")
print(json.dumps(rows))
PY
