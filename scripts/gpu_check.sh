#!/usr/bin/env bash
# GPU check of mlip: the CUDA tests (pytest -m cuda) and short training / inference benchmarks on CUDA.
#
# STATUS: NOT RUN YET. Written and its `prepare` half run on a CPU-only machine (no GPU was lent to the
# session that wrote it); the `run` half has never executed. Results go to docs/benchmarks.md once it has.
#
# The target machine (one H200) reaches no package registry. It has Python 3.12, torch 2.11+cu130, e3nn,
# h5py, numpy, scipy and pytest, but no ase, vesin, torch-ema or cuequivariance. Hence two halves:
#
#   scripts/gpu_check.sh prepare   HERE (with network): download the missing wheels for CPython 3.12 /
#                                  manylinux x86_64 into .gpu_wheels/ (git-ignored) and print the sizes of
#                                  everything that travels (working tree + .gpu_wheels; must stay < 64 MiB).
#                                  The two cuEquivariance CUDA-kernel wheels are 73.5 MB as wheels; they travel
#                                  as one xz tarball (~28.5 MB) that `run` unpacks. `prepare --no-fused` leaves
#                                  them out (the fused-kernel test then skips with its reason).
#   scripts/gpu_check.sh run       THERE (repository root, .gpu_wheels carried): install the wheels with
#                                  into a folder on PYTHONPATH (unzipped, no pip/index; the system torch stays),
#                                  then pytest -m cuda tests/ (every cuda-marked test of the tree), then a
#                                  training-throughput table ({float64, float32} x {eager, compiled},
#                                  configs/acac.yaml's model on the bundled data/acac slice)
#                                  and the inference benchmark on CUDA. Results under $OUT (default ./gpu_out).
#                                  Every stage has a timeout so that the whole run stays under 8 minutes.
#                                  With the session's device tool: run(command="scripts/gpu_check.sh run",
#                                  carry=[".gpu_wheels"], timeout_s=560); $OUT comes back.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu_wheels
PY=${PYTHON:-python3}

prepare() {
    local fused=1
    [[ "${1:-}" == "--no-fused" ]] && fused=0
    mkdir -p "$WHEELS"
    local plat=(--only-binary :all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
                --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --no-deps -d "$WHEELS")
    # ase without its scipy/matplotlib (scipy is there, matplotlib is not needed: no plots, no ase.visualize);
    # cuequivariance needs networkx, opt-einsum (e3nn brings it) and sympy (e3nn brings it)
    "$PY" -m pip download "${plat[@]}" ase vesin torch-ema pyyaml tqdm networkx \
        cuequivariance==0.13.0 cuequivariance-torch==0.13.0 || return 1
    if [[ $fused == 1 && ! -f "$WHEELS/cue_ops.tar.xz" ]]; then
        local tmp; tmp=$(mktemp -d)
        "$PY" -m pip download "${plat[@]}" -d "$tmp" cuequivariance-ops-torch-cu13==0.13.0 cuequivariance-ops-cu13==0.13.0 \
            || return 1
        mkdir "$tmp/site"
        for w in "$tmp"/*.whl; do "$PY" -m zipfile -e "$w" "$tmp/site"; done
        echo "compressing the CUDA kernel wheels (a few minutes) ..."
        tar -cf - -C "$tmp/site" . | xz -T0 -6 > "$WHEELS/cue_ops.tar.xz.part" && mv "$WHEELS/cue_ops.tar.xz.part" "$WHEELS/cue_ops.tar.xz"
        rm -rf "$tmp"
    fi
    [[ $fused == 0 ]] && rm -f "$WHEELS/cue_ops.tar.xz"
    echo "what travels (64 MiB limit):"
    ls -l "$WHEELS"
    local tree wheels
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    wheels=$(du -sb "$WHEELS" | cut -f1)
    printf "  working tree (tracked + untracked, not ignored): %6.1f MiB\n" "$(echo "$tree / 1048576" | bc -l)"
    printf "  %s: %6.1f MiB\n" "$WHEELS" "$(echo "$wheels / 1048576" | bc -l)"
    printf "  total: %6.1f MiB\n" "$(echo "($tree + $wheels) / 1048576" | bc -l)"
    if (( tree + wheels > 64 * 1048576 )); then echo "too large: over 64 MiB"; return 1; fi
}

run() {
    local out=${OUT:-gpu_out}
    mkdir -p "$out"
    local site=/tmp/mlip_gpu_site
    local t0=$SECONDS budget=${GPU_CHECK_BUDGET_S:-450}  # whole run, seconds (under 8 minutes with start-up)
    cap() { local left=$((budget - (SECONDS - t0))); (( left < 5 )) && left=5; echo $(( $1 < left ? $1 : left )); }
    {
        echo "== install ($(date -u))"
        # a wheel is a zip laid out as site-packages: unpacking it is pip --target without needing pip
        mkdir -p "$site"
        for w in "$WHEELS"/*.whl; do "$PY" -m zipfile -e "$w" "$site"; done
        [[ -f "$WHEELS/cue_ops.tar.xz" ]] && tar -xJf "$WHEELS/cue_ops.tar.xz" -C "$site"
        export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
        # libcue_ops.so needs libnvrtc.so.13: torch's CUDA wheels ship it under site-packages/nvidia/
        local nvlib
        nvlib=$("$PY" -c "import glob, os, site; print(':'.join(sorted({os.path.dirname(p) for d in site.getsitepackages()
            for p in glob.glob(d + '/nvidia/**/libnvrtc.so*', recursive=True)})))" 2>/dev/null)
        [[ -n "$nvlib" ]] && export LD_LIBRARY_PATH="$nvlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        "$PY" -c "import torch, e3nn, ase, vesin, cuequivariance_torch as c; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'e3nn', e3nn.__version__, 'ase', ase.__version__, 'cuet', c.__version__)"
        "$PY" -c "import cuequivariance_ops_torch; print('cuequivariance_ops_torch', cuequivariance_ops_torch.__version__)" \
            || echo "cuequivariance_ops_torch not importable: fused kernels not tested"
        echo "== pytest -m cuda ($((SECONDS - t0)) s)"
        # every cuda-marked test of the tree (tests/cuda and the marked ones elsewhere, e.g. tests/uncertainty);
        # collecting the whole tree imports every test module: one that fails to import (a package missing
        # there) is reported and makes the exit status non-zero, but does not stop the CUDA tests
        timeout "$(cap 150)" "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider --continue-on-collection-errors tests \
            --junitxml="$out/cuda_tests.xml"
        echo "pytest exit status $?"
        echo "== training throughput ($((SECONDS - t0)) s)"
        for dtype in float64 float32; do
            for compile in false true; do
                local lim=40; [[ $compile == true ]] && lim=80
                timeout "$(cap $lim)" "$PY" -m mlip.cli.train --config configs/acac.yaml device=cuda dtype=$dtype \
                    train.compile=$compile train.max_epochs=3 train.progress=false train.plot=false \
                    checkpoint.interval=100 output_dir="$out/train_${dtype}_compile_$compile" > "$out/train_${dtype}_$compile.log" 2>&1
                echo "train $dtype compile=$compile: exit $? ($((SECONDS - t0)) s)"
            done
        done
        "$PY" - "$out" <<'PYEOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| dtype | step | epochs timed | s/epoch (epochs 2-3) | configs/s |\n|---|---|---|---|---|")
for d in sorted(out.glob("train_*_compile_*")):
    m = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] if (d / "metrics.jsonl").exists() else []
    n = sum(1 for _ in open("data/acac/train.xyz") if _.strip().isdigit()) * 0.9  # 10 % validation
    t = [r["epoch_time_s"] for r in m[1:]]
    s = sum(t) / len(t) if t else float("nan")
    print(f"| {d.name.split('_')[1]} | {'compiled' if d.name.endswith('true') else 'eager'} | {len(t)} | {s:.2f} | {n / s:.1f} |")
PYEOF
        echo "== inference benchmark ($((SECONDS - t0)) s)"
        timeout "$(cap 70)" "$PY" scripts/benchmark_inference.py --device cuda --mace-python '' --systems acac_box si512 \
            --models small --repeats 5 --markdown "$out/inference.md" --json "$out/inference.json"
        echo "inference exit status $? ($((SECONDS - t0)) s)"
    } 2>&1 | tee "$out/gpu_check.log"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) run ;;
    *) echo "usage: scripts/gpu_check.sh prepare [--no-fused] | run" >&2; exit 2 ;;
esac
