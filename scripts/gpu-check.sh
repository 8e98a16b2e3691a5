#!/usr/bin/env bash
# The GPU matrix, in under 5 minutes on one GPU machine: trainer=gpu with every distillation method,
# DDP on the visible GPUs, the whole experiment=nsl_kdd pipeline, one short multirun and one short
# Optuna sweep (a worker per GPU). Ends with a table of wall time, exit code, training windows/s and
# test metrics per job; exit code 1 when a job failed.
#
#   bash scripts/gpu-check.sh                          # on a machine with CUDA
#   MSTR_CHECK_DEVICE=cpu bash scripts/gpu-check.sh    # the same matrix on CPU (trainer=cpu, ddp_cpu)
# Environment: MSTR_CHECK_OUT (where runs go; default outputs/gpu-check/<time>), MSTR_CHECK_EXTRA
# (more Hydra overrides for every job, e.g. "trainer.limit_train_batches=4"), MSTR_DATA_DIR (real data).
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${MSTR_CHECK_DEVICE:-gpu}
OUT=${MSTR_CHECK_OUT:-outputs/gpu-check/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
case "$DEVICE" in
  gpu) SINGLE=trainer=gpu; DDP=trainer=ddp ;;
  cpu) SINGLE=trainer=cpu; DDP=trainer=ddp_cpu ;;
  *) echo "error: MSTR_CHECK_DEVICE=$DEVICE: must be gpu or cpu" >&2; exit 2 ;;
esac
read -r -a EXTRA <<< "${MSTR_CHECK_EXTRA:-}"
COMMON=(trainer.enable_progress_bar=false plots=false "paths.teacher_cache_dir=$OUT/teachers" "${EXTRA[@]}")
SYNTHETIC=(data.source.n_flows=10000 trainer.max_epochs=2)  # the teacher trains as many epochs
: > "$OUT/jobs.tsv"

job() {  # job NAME DIR COMMAND...: run it, log it, record seconds and exit code
  local name=$1 dir=$2; shift 2
  local start rc ms
  start=$(date +%s%N)
  echo "== $name: $*"
  "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%s\t%d.%d\t%s\t%s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$rc" "$dir" >> "$OUT/jobs.tsv"
  [ "$rc" = 0 ] || { echo "   failed (exit $rc), last lines of $OUT/logs/$name.log:"; tail -n 5 "$OUT/logs/$name.log"; }
}

for method in none logits features attention combined; do
  job "$DEVICE-$method" "$OUT/$method" python -m mstr.train "$SINGLE" model=student "distill=$method" \
    "${SYNTHETIC[@]}" "hydra.run.dir=$OUT/$method" "${COMMON[@]}"
done
job "ddp" "$OUT/ddp" python -m mstr.train "$DDP" model=student distill=logits "${SYNTHETIC[@]}" \
  "hydra.run.dir=$OUT/ddp" "${COMMON[@]}"
job "nsl_kdd" "$OUT/nsl_kdd" python -m mstr.train experiment=nsl_kdd "$SINGLE" "hydra.run.dir=$OUT/nsl_kdd" \
  "${COMMON[@]}"
job "multirun" "$OUT/multirun" python -m mstr.train -m "$SINGLE" model=student distill=none seed=0,1 \
  "${SYNTHETIC[@]}" "hydra.sweep.dir=$OUT/multirun" "${COMMON[@]}"
workers=1
if [ "$DEVICE" = gpu ]; then
  workers=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
job "optuna" "$OUT/sweep" python -m mstr.sweep sweeps/distill_student.yaml --n-trials 2 "$SINGLE" \
  "${SYNTHETIC[@]}" --workers "$workers" --storage "sqlite:///$OUT/sweep.db" --out "$OUT/sweep" "${COMMON[@]}"

python - "$OUT" "$DEVICE" <<'PY'
"""The table: one row per run of each job (a multirun or a sweep has several)."""
import json, sys
from pathlib import Path

out, device = Path(sys.argv[1]), sys.argv[2]
if device == "gpu":
    import torch
    print(f"\ndevice: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, torch {torch.__version__}")
columns = ("test/f1", "test/acc", "teacher/test/f1", "val/f1_best", "time/train_s", "time/train_windows_per_s")
print("\n| job | run | wall s | exit | " + " | ".join(columns) + " |")
print("|---|---|---|---|" + "---|" * len(columns))
failed = 0
for line in (out / "jobs.tsv").read_text().splitlines():
    name, seconds, rc, run_dir = line.split("\t")
    failed += rc != "0"
    runs = sorted(Path(run_dir).glob("**/metrics.json")) if Path(run_dir).is_dir() else []
    for i, path in enumerate(runs or [None]):
        metrics = json.loads(path.read_text()) if path else {}
        cells = [f"{metrics[c]:,.4f}" if c in metrics and c != "time/train_windows_per_s"
                 else f"{metrics[c]:,.0f}" if c in metrics else "" for c in columns]
        where = str(path.parent.relative_to(run_dir)) if path else "(none)"
        print(f"| {name} | {where} | {seconds if i == 0 else ''} | {rc if i == 0 else ''} | " + " | ".join(cells) + " |")
print(f"\nruns and logs: {out}")
sys.exit(1 if failed else 0)
PY
