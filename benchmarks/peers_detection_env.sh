#!/usr/bin/env bash
# Builds .bench-venv-detection/, the virtualenv for the peer libraries that the detection
# benchmark (benchmarks/detection/) compares visionmon against. They are compared against,
# never depended on: nothing here goes into .venv or pyproject.toml.
#
#   Evidently 0.7.23      Apache-2.0. Fails to import under pandas 3 (its metadata only says
#                         pandas>=1.3.5), so pandas is pinned below 3.
#   Alibi Detect 0.13.0   Business Source License 1.1 (not an open-source licence): used here
#                         for benchmark measurements only, never shipped or imported by
#                         visionmon. PyTorch backend; it needs numpy<2, hence numpy 1.26.
#   NannyML 0.13.1        Apache-2.0. CBPE (confidence-based performance estimation).
#   torch                 the same 2.13 CPU wheel as .venv (Alibi's PyTorch backend).
#
# visionmon is not installed there: the peers runner reads the benchmark's event streams
# with plain json and numpy and imports nothing from visionmon.
#
#   bash benchmarks/peers_detection_env.sh        # creates or updates .bench-venv-detection/
#   .bench-venv-detection/bin/python -m benchmarks.detection.peers --help   # from the repo root
#
# A peer that cannot be installed or imported is reported by the benchmark as missing
# (docs/detection.md says so); this script keeps going and prints what failed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV_DETECTION:-$root/.bench-venv-detection}"
python="${PYTHON:-python3}"
pip=("$venv/bin/python" -m pip install --quiet)

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || exit 1
fi
# keep the environment out of git whatever the repository's .gitignore says
printf '*\n' > "$venv/.gitignore"
"$venv/bin/python" -m pip install --quiet --upgrade pip

# shared base first, so that each peer below resolves against the same pins
"${pip[@]}" "numpy>=1.26,<2" "pandas>=2.2,<3" "scipy>=1.11,<1.14" "scikit-learn>=1.4,<1.6" \
    "matplotlib>=3.7,<4" "torch==2.13.0" || exit 1

status=0
"${pip[@]}" "evidently==0.7.23" "numpy>=1.26,<2" "pandas>=2.2,<3" \
    || { echo "evidently: install failed"; status=1; }
"${pip[@]}" "alibi-detect[torch]==0.13.0" "numpy>=1.26,<2" "pandas>=2.2,<3" \
    || { echo "alibi-detect: install failed"; status=1; }
"${pip[@]}" "nannyml==0.13.1" "numpy>=1.26,<2" "pandas>=2.2,<3" \
    || { echo "nannyml: install failed"; status=1; }

"$venv/bin/python" - <<'EOF'
import importlib

for name in ("evidently", "alibi_detect", "nannyml", "torch", "numpy", "pandas"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}: ok")
    except Exception as err:  # a peer that does not import is reported, not faked
        print(f"{name}: import failed: {type(err).__name__}: {err}")
EOF
exit $status
