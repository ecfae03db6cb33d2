# Sourced by scripts/demo and scripts/test: create .venv and install the project into it,
# again whenever pyproject.toml changes. $1 is the pip extra to install ("" or "test").
set -euo pipefail
PYTHON=${PYTHON:-python3}
extra=${1:-}
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp=".venv/.installed-${extra:-base}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e "$spec"
  touch "$stamp"
fi
