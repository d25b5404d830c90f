#!/usr/bin/env bash
# Every GPU figure the benchmarks define, in one prepared run (a lent machine's time is short):
#   1. the train step's MFU at [4096]*5+[1000] b4096 and [8192]*4+[1000] b8192, float32 and bfloat16,
#      hand-written against jax.grad                                  (bench_backprop.py --gpu)
#   2. HVP and GGN products against the gradient at [4096]*4+[1000] b4096 (bench_curvature.py --gpu)
#   3. one LM step at N = 8192 for P = 1e4 (dense, accumulate), 1e5 (cg, dual), 1e6 (cg), with peak
#      device memory                                                  (bench_lm.py --gpu)
#   4. the multi-device path on the GPU's one device: one process     (bench_distributed.py --processes 1)
# Each result lands in $OUT (default runs/gpu) as the benchmark's JSON plus its printed table;
# PACK=file.tar.gz also packs them all into one file (a lent machine hands back a few files only).
#
#     bash benchmarks/gpu_figures.sh            # on the GPU machine, about 8 minutes on an H100/H200
#     bash benchmarks/gpu_figures.sh --quick    # the same scripts at toy sizes (a CPU smoke run; the
#                                               # train-step and product benchmarks without --gpu)
set -uo pipefail
QUICK=${1:-}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
GPU=--gpu
[ "$QUICK" = --quick ] && GPU=  # the GPU sizes of bench_backprop / bench_curvature take hours on a CPU
status=0
run() {  # run NAME CMD...: its output to $OUT/NAME.txt and the screen; a failure is reported, not fatal
    local name=$1; shift
    echo "== $name: $*"
    if ! timeout "${STEP_TIMEOUT:-600}" "$@" 2>&1 | tee "$OUT/$name.txt"; then
        echo "== $name FAILED"; status=1
    fi
}
python -c "import jax; print('devices', jax.devices())" | tee "$OUT/devices.txt"
run bench_backprop python benchmarks/bench_backprop.py $GPU $QUICK --rounds 5 --out "$OUT/bench_backprop"
run bench_curvature python benchmarks/bench_curvature.py $GPU $QUICK --rounds 7 --out "$OUT/bench_curvature"
run bench_lm_gpu python benchmarks/bench_lm.py --gpu $QUICK --rounds 3 --problems parity3 --out "$OUT/bench_lm"
run bench_distributed python benchmarks/bench_distributed.py --processes 1 $QUICK --out "$OUT/bench_distributed"
[ -n "${PACK:-}" ] && tar czf "$PACK" -C "$OUT" .
exit $status
