#!/usr/bin/env bash
# Builds .bench-venv/, a virtualenv for peer libraries used only by the benchmarks.
#
# Evidently is compared against, never depended on: it lives here and not in .venv or in
# pyproject.toml. Evidently 0.7.23 fails to import under pandas 3.x (its metadata says only
# pandas>=1.3.5), so pandas is pinned below 3. visionmon itself goes in editable and without
# its dependencies (no Kafka clients, no torch); the few it needs for monitor/ are listed.
#
#   bash benchmarks/peers_env.sh        # creates or updates .bench-venv/
#   .venv/bin/python benchmarks/stats.py   # runs its Evidently measurements with
#                                          # .bench-venv/bin/python (--peers-python)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-$root/.bench-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    "evidently==0.7.23" "pandas>=2.2,<3" \
    "numpy>=1.26" "scipy>=1.11" "orjson>=3.9" "pydantic>=2.6" "pyyaml>=6" \
    "prometheus-client>=0.20" "scikit-learn>=1.4"
"$venv/bin/python" -m pip install --quiet --no-deps -e "$root"
"$venv/bin/python" - <<'EOF'
import evidently
import pandas

import monitor.stats

print(f"evidently {evidently.__version__}, pandas {pandas.__version__}: ok")
EOF
