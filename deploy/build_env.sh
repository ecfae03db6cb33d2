#!/usr/bin/env bash
# Build the executor environment of risk-engine: the project wheel plus a packed virtualenv.
#
#   PYTHON=.venv/bin/python deploy/build_env.sh [--force]
#
# Output (under deploy/build/, git-ignored):
#   wheels/risk_engine-<version>-py3-none-any.whl   the project wheel
#   risk_engine_env.tar.gz                          venv-pack archive, shipped to executors
#                                                   with --archives ...#environment
#   env.stamp                                       hash of what the archive was built from
#
# Why a packed virtualenv: executors need numpy, scipy, pandas, pyarrow and PyYAML (compiled
# extensions), which --py-files cannot carry. What goes in, and what stays out:
#   * risk-engine itself (the wheel, installed with --no-deps);
#   * its executor-side runtime deps: numpy, scipy, pandas, pyarrow, pyyaml (+ their deps);
#   * NOT pyspark / py4j: Spark puts $SPARK_HOME/python/lib/pyspark.zip and py4j-*-src.zip on
#     the PYTHONPATH of every Python worker it starts, so the Python side always matches the
#     executor's JVM (the pip pyspark package ships both zips under pyspark/python/lib/ too);
#     the jars alone would add ~450 MB to every executor;
#   * NOT cvxpy / clarabel / scs: only the driver-side portfolio code uses them; the Monte
#     Carlo tasks (risk_engine.simulation, risk_engine.sample_moments) never import them.
# The deps are pinned to the versions installed in $PYTHON when it has them (the submitting
# environment, i.e. the driver), so driver and executors compute with the same libraries and
# the cluster run reproduces the local one bit for bit. Otherwise the wheel's ranges are used.
#
# The base interpreter is NOT inside the archive: venv-pack keeps bin/python as a link to the
# base Python of $PYTHON, which must exist at the same path on every executor host (same
# image / same pyenv path); the driver and executor Python minor versions must also match.
#
# Idempotent: a stamp hashes the sources, pyproject, the pins, the Python version and this
# script; when it matches the existing archive nothing is rebuilt (--force rebuilds anyway).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BUILD="$HERE/build"
ARCHIVE="$BUILD/risk_engine_env.tar.gz"
STAMP="$BUILD/env.stamp"
PYTHON="${PYTHON:-python3}"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
               exit 0 ;;
    *) echo "build_env.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "build_env: $*" >&2; }

# 0. Resolve the interpreter and check it can do the job (pip + venv-pack, Python >= 3.10).
PYTHON_ARG="$PYTHON"
PYTHON="$(command -v "$PYTHON_ARG" || true)"
[[ -n "$PYTHON" ]] || { log "interpreter $PYTHON_ARG not found (set PYTHON)"; exit 2; }
"$PYTHON" - <<'EOF' || exit 2
import importlib.util, sys
missing = [m for m in ("pip", "venv_pack") if importlib.util.find_spec(m) is None]
if sys.version_info < (3, 10):
    sys.exit(f"build_env: {sys.executable} is Python {sys.version.split()[0]}; need >= 3.10")
if missing:
    sys.exit(f"build_env: {sys.executable} lacks {', '.join(missing)}; "
             "run: pip install -e '.[test]'  (or: pip install venv-pack)")
EOF

mkdir -p "$BUILD"
# One build at a time (a test and a manual submit may race on deploy/build/).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BUILD/.lock"
  flock 9
fi

# 1. The runtime deps executors need, pinned to the versions $PYTHON has (see above). Names
#    not installed there fall back to the range declared in pyproject.toml.
#    EXECUTOR_DEPS overrides the list (e.g. add "cvxpy clarabel scs" if a stage that solves
#    optimisation problems is ever distributed).
RUNTIME_DEPS="${EXECUTOR_DEPS:-numpy scipy pandas pyarrow pyyaml}"
PINS="$("$PYTHON" - "$ROOT/pyproject.toml" $RUNTIME_DEPS <<'EOF'
import importlib.metadata as md, re, sys
text = open(sys.argv[1]).read()
for name in sys.argv[2:]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        m = re.search(r'"(' + re.escape(name) + r'[^"]*)"', text, re.IGNORECASE)
        print(m.group(1) if m else name)
EOF
)"
PINS="$(echo $PINS)"   # one line

# 2. Has anything changed since the last build? Hash the package sources (no bytecode),
#    pyproject, the pins, the interpreter version and this script.
PYVER="$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
HASH="$(
  cd "$ROOT"
  {
    find risk_engine -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.typed' \) \
      -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum
    sha256sum pyproject.toml "$HERE/build_env.sh"
    echo "python $PYVER $(readlink -f "$PYTHON")"
    echo "pins $PINS"
  } | sha256sum | cut -c1-16
)"
if [[ $FORCE -eq 0 && -f "$ARCHIVE" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  echo "executor env up to date: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), stamp $HASH)"
  exit 0
fi
rm -f "$STAMP"

# 3. Build the wheel from a clean copy of the sources, so stale setuptools build/ folders
#    (deleted modules) cannot leak into it and the work tree is not touched.
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/risk-engine-build.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
(cd "$ROOT" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - pyproject.toml risk_engine) \
  | tar -xf - -C "$STAGE"
if [[ -f "$ROOT/README.md" ]]; then cp "$ROOT/README.md" "$STAGE/"
else echo "# risk-engine" > "$STAGE/README.md"; fi     # pyproject names it as the readme
rm -rf "$BUILD/wheels"
BUILD_LOG="$BUILD/build.log"
: > "$BUILD_LOG"
# Run a step with its (noisy) output in build.log; show the log's tail if it fails.
quiet() {
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    log "failed: $*"; tail -n 40 "$BUILD_LOG" >&2; return 1
  fi
}
log "building the wheel (Python $PYVER; log: $BUILD_LOG)"
PIP=("$PYTHON" -m pip --disable-pip-version-check)
# Isolated build (fetches setuptools>=68 per pyproject); fall back to the interpreter's own
# setuptools when that fails (offline machine).
if ! quiet "${PIP[@]}" wheel --no-deps --wheel-dir "$BUILD/wheels" "$STAGE"; then
  log "isolated wheel build failed; retrying with --no-build-isolation"
  quiet "${PIP[@]}" wheel --no-deps --no-build-isolation --wheel-dir "$BUILD/wheels" "$STAGE"
fi
WHEEL="$(ls "$BUILD"/wheels/risk_engine-*.whl)"

# 4. A fresh virtualenv from the same base interpreter as $PYTHON (a venv's python creates
#    the new venv from its base), with the pinned runtime deps (binary wheels only) and then
#    the wheel with --no-deps (no pyspark, no cvxpy). --no-compile: no bytecode for the
#    thousands of modules a task never imports (see the smoke test below).
ENV="$BUILD/env"
rm -rf "$ENV"
log "creating $ENV"
quiet "$PYTHON" -m venv "$ENV"
EPIP=("$ENV/bin/python" -m pip --disable-pip-version-check)
log "installing $PINS + $(basename "$WHEEL") (--no-deps)"
# shellcheck disable=SC2086
quiet "${EPIP[@]}" install --no-compile --only-binary=:all: $PINS
quiet "${EPIP[@]}" install --no-compile --no-deps "$WHEEL"
# Smoke test: import what a Python worker imports for a Monte Carlo task, with pyspark
# from Spark's pyspark.zip as on an executor (if the Spark of $SPARK_HOME or of $PYTHON's
# pyspark package is found). Fails the build if the task code needs a package the env lacks
# (e.g. cvxpy). With bytecode writing on, it also leaves __pycache__ for exactly those
# modules (~15 MB), which is packed: Python workers then skip ~2 s of compiling each.
SPARK_PYLIB="${SPARK_HOME:+$SPARK_HOME/python/lib}"
[[ -n "$SPARK_PYLIB" ]] || SPARK_PYLIB="$("$PYTHON" -c 'import os, pyspark
print(os.path.join(os.path.dirname(pyspark.__file__), "python", "lib"))' 2>/dev/null || true)"
SPARK_PYPATH="$(ls "$SPARK_PYLIB"/pyspark.zip "$SPARK_PYLIB"/py4j-*-src.zip 2>/dev/null \
  | paste -sd: - || true)"
TASK_MODULES="risk_engine.simulation, risk_engine.engine, risk_engine.sample_moments, risk_engine.config, risk_engine.schemas"
if [[ -n "$SPARK_PYPATH" ]]; then
  TASK_MODULES="$TASK_MODULES, risk_engine.spark.stages, risk_engine.spark.engine, pyspark.worker, pyspark.sql.pandas.serializers"
else
  log "no pyspark.zip found: smoke test without the Spark task modules"
fi
quiet env -u PYTHONDONTWRITEBYTECODE -u PYTHONPYCACHEPREFIX PYTHONPATH="$SPARK_PYPATH" \
  "$ENV/bin/python" -c "if True:
  import numpy, scipy.special, pandas, pyarrow, pyarrow.compute, pyarrow.pandas_compat, yaml
  import $TASK_MODULES"
# pip/setuptools are not needed at run time.
quiet "${EPIP[@]}" uninstall -y pip setuptools || true

# 5. Pack it. Left out, as never used by a task: test suites, C headers, Cython sources and
#    Arrow Flight (the RPC framework: ~35 MB, only loaded by `import pyarrow.flight`).
log "packing with venv-pack"
"$PYTHON" -m venv_pack --prefix "$ENV" --output "$ARCHIVE.tmp" --format tar.gz --force --quiet \
  --compress-level 4 \
  --exclude 'lib/python*/site-packages/*/tests/*' \
  --exclude 'lib/python*/site-packages/pyarrow/include/*' \
  --exclude 'lib/python*/site-packages/pyarrow/src/*' \
  --exclude 'lib/python*/site-packages/numpy/_core/include/*' \
  --exclude 'lib/python*/site-packages/pyarrow/*flight*' \
  --exclude '*.pyx' --exclude '*.pxd' --exclude '*.pxi'
mv -f "$ARCHIVE.tmp" "$ARCHIVE"
echo "$HASH" > "$STAMP"
ENV_SIZE="$(du -sh "$ENV" | cut -f1)"
rm -rf "$ENV"    # only the archive is used; the venv is recreated by the next build

echo "built $WHEEL ($(du -h "$WHEEL" | cut -f1))"
echo "built $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1); venv $ENV_SIZE before exclusions;" \
     "Python $PYVER; $PINS; stamp $HASH)"
