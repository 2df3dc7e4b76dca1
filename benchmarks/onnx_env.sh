#!/usr/bin/env bash
# Builds .bench-venv-onnx/, where onnx and onnxruntime (peers of the CPU benchmark
# benchmarks/cpu_networks.py, never visionmon dependencies) live. It layers over .venv's
# packages (torch, the ImageNet weights of the `workloads` extra, visionmon itself) with a
# .pth file, so both sides of the comparison run the same torch on the same weights.
#
#   make setup && bash benchmarks/onnx_env.sh
#   .bench-venv-onnx/bin/python benchmarks/cpu_networks.py
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ONNX_VENV:-$root/.bench-venv-onnx}"
base="$root/.venv"
if [ ! -x "$base/bin/python" ]; then
    echo "$base is missing: run \`make setup\` first" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "onnx>=1.17" "onnxruntime>=1.20"
site="$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
own="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site" > "$own/zz_visionmon_venv.pth"
"$venv/bin/python" -c "import onnx, onnxruntime, torch; print('onnx', onnx.__version__, \
'onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"
