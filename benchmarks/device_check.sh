#!/usr/bin/env bash
# On a CUDA machine, in about 5 minutes, with no network: the CUDA path's answers against the
# CPU's (benchmarks/cuda_parity.py), then reference-model throughput (benchmarks/reference.py).
#
#   benchmarks/device_check.sh --fetch-wheels   # here, with pip and a network: fills .whl/
#   benchmarks/device_check.sh                  # there, from the repo root
#
# The GPU machine's python3 already has torch (CUDA), numpy, pillow and scikit-learn;
# visionmon also needs pydantic, orjson and msgspec, which travel as wheels in .whl/ (Python 3.12,
# manylinux x86_64) and are installed into /tmp/site. Output: the benchmark tables, also
# written to $OUT (or /tmp) as reference-cuda.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 orjson==3.13.0 msgspec==0.22.0)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -c 'import pydantic, orjson, msgspec, PIL, numpy, torch' || {
  echo "missing Python packages: run 'benchmarks/device_check.sh --fetch-wheels' where pip" \
       "works and carry .whl" >&2
  exit 2
}
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "device", torch.cuda.get_device_name())'

workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
{
  echo "== CUDA against CPU: the digits model's answers, ShadowScorer, MMD on the GPU"
  timeout 90 python3 benchmarks/cuda_parity.py --repeats 3 || echo "(cuda_parity failed or timed out)"
  echo
  echo "== torch.export (.pt2), eager, bf16 autocast, channels_last; decode in threads and in processes"
  timeout 170 python3 benchmarks/reference.py --device cuda --images 4096 --repeats 3 \
    --workers "$workers" --cpu-threads 2 --format pt2 || echo "(run failed or timed out)"
  echo
  echo "== TorchScript, ResNet-50-sized only (does bf16 autocast reach a scripted model?)"
  timeout 60 python3 benchmarks/reference.py --device cuda --images 4096 --repeats 3 \
    --workers "$workers" --cpu-threads 2 --format ts --models resnet50 --batch-sizes 256 \
    --no-decode-rows || echo "(run failed or timed out)"
  echo
  echo "== torch.compile, ResNet-50-sized, batch 256"
  timeout 120 python3 benchmarks/reference.py --device cuda --images 4096 --repeats 3 \
    --workers "$workers" --cpu-threads 2 --format pt2 --compile --models resnet50 \
    --batch-sizes 256 --no-decode-rows || echo "(torch.compile run failed or timed out)"
} 2>&1 | grep -v -E 'DeprecationWarning|warnings.warn' | tee "$out/reference-cuda.txt"
