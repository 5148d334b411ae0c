#!/usr/bin/env bash
# The prepared device check: one short run on one H100/H200-class card.
#
# Prints markdown for benchmarks/RESULTS.md: checkpoint sizes per preset (last.pt with AdamW state,
# best.pt weights only), the PTACL / global-only step ratio, peak memory per batch size, and samples/s,
# peak memory, MFU and GPU-hours per arm (28,000 subjects x 50 epochs) at `small` and `base`, bf16,
# eager and torch.compile'd. Every number comes from benchmarks/bench_train_step.py, at the `ukb` input
# geometry (ECG 500 Hz, 50 frames of 96 px, 3 short-axis slices), the one `base` trains on.
#
#   benchmarks/gpu_check.sh                          # on the card (CUDA)
#   benchmarks/gpu_check.sh --device cpu --dry-run   # the same code path with tiny settings (CI)
#
# Options:
#   --device DEV        cuda (default), cuda:N or cpu
#   --dry-run           batch 2, 2 repeats, depth-1 transformers: tests the script, measures nothing
#   --peak-tflops X     the card's dense bf16 peak for MFU; 989 = H100 SXM and H200 (same peak)
#   --json PATH         also write every record as JSON
#   --wheels DIR        pip-install the wheels in DIR first (offline machines lacking pydicom, nibabel, wfdb)
#   --budget-s N        stop the benchmark after N seconds (default 470: the whole check ends within 8 min)
#
# Offline GPU machine without this project's readers installed: on a machine with pip, in the repo root,
#   python3 -m pip download --no-deps -d .whl pydicom nibabel wfdb   # pure-Python wheels
# then carry .whl and run `benchmarks/gpu_check.sh --wheels .whl` there.
set -euo pipefail

device=cuda dry_run="" peak_tflops=989 json="" wheels="" budget_s=470
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --peak-tflops) peak_tflops="$2"; shift 2 ;;
        --json) json="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --budget-s) budget_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -n "$wheels" ]]; then
    site="$(mktemp -d)"
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
fi

if ! missing="$("$python" -c 'import ptacl_lib.train' 2>&1)"; then
    echo "gpu_check.sh: cannot import ptacl_lib.train with $python:" >&2
    echo "$missing" | tail -n 1 >&2
    echo "Carry the missing pure-Python wheels (see the header of $0) and pass --wheels DIR." >&2
    exit 2
fi
if [[ "$device" == cuda* ]] && ! "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check.sh: --device $device, but torch sees no CUDA device (use --device cpu --dry-run to test)" >&2
    exit 2
fi

echo "## GPU check (\`benchmarks/gpu_check.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
if [[ "$device" == cuda* ]]; then
    card="$("$python" -c 'import torch; print(torch.cuda.get_device_name())')"
    echo "Card: **$card**; MFU against $peak_tflops TFLOP/s dense bf16."
    if ! [[ "$card" =~ H100|H200 ]] || [[ "$card" =~ PCIe|NVL ]]; then
        echo "(Not an H100 SXM or H200: pass this card's own dense bf16 peak with --peak-tflops.)"
    fi
    if command -v nvidia-smi >/dev/null; then
        echo "nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)"
    fi
    echo
fi

args=(--device "$device" --models small base --geometry ukb --peak-tflops "$peak_tflops" --compile)
if [[ -n "$dry_run" ]]; then
    args+=(--dry-run)
else
    # at ukb, base holds about 0.29 GiB per sample in fp32 on a CPU (benchmarks/RESULTS.md): 128 leaves headroom
    args+=(--batch-size 128 --sweep 32 64 128 256 512 --repeats 20 --warmup 3)
fi
[[ -n "$json" ]] && args+=(--json "$json")

start=$SECONDS
status=0
timeout --signal=INT --kill-after=10 "$budget_s" "$python" benchmarks/bench_train_step.py "${args[@]}" || status=$?
if [[ $status -eq 124 || $status -eq 130 ]]; then
    echo
    echo "**Stopped after the ${budget_s} s budget**: the tables above are complete, later ones are missing."
fi
echo "gpu_check.sh: $((SECONDS - start)) s, exit status $status."
exit "$status"
