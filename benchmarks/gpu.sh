#!/usr/bin/env bash
# The GPU benchmarks (inference fp32/fp16/bf16 without torch.compile, training step, hardware limit) on
# CUDA, in a few minutes; the table goes to OUT_DIR/RESULTS_gpu.md.
#   bash benchmarks/gpu.sh OUT_DIR
set -euo pipefail
out_dir="$(mkdir -p "${1:?usage: bash benchmarks/gpu.sh OUT_DIR}" && cd "$1" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: expected CUDA, found none')"
# Run from the repository root with it on PYTHONPATH: `benchmarks` and `ssd_zoo` import without pip install.
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$python" -m benchmarks.run_all --gpu --out "$out_dir/RESULTS_gpu.md"
