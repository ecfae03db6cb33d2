#!/usr/bin/env bash
# Submit the nightly risk job to a Spark master, shipping the packed executor environment.
#
#   deploy/submit.sh --master URL [--config YAML]... [--as-of YYYY-MM-DD] [--set KEY=VALUE]...
#                    [--conf SPARK_KEY=VALUE]... [--no-build] [-v]
#
#   --master     spark://host:7077 | yarn | k8s://https://host:6443 | local[N]
#   --config     risk-engine config; repeat to overlay (default: conf/cluster.yaml)
#   --as-of      as-of date (overrides the config)
#   --set        config override, e.g. --set monte_carlo.n_scenarios=200000
#   --conf       extra Spark property passed to spark-submit, e.g. --conf spark.executor.cores=4
#   --no-build   do not (re)build deploy/build/risk_engine_env.tar.gz (must exist)
#   -v           log at INFO level
#
# Environment:
#   PYTHON / PYSPARK_DRIVER_PYTHON  the driver's interpreter (default: $VIRTUAL_ENV/bin/python,
#                                   else <repo>/.venv/bin/python, else python3); it must have
#                                   risk-engine installed. The executor env is built from it.
#   SPARK_HOME                      Spark distribution whose bin/spark-submit is used
#                                   (default: the pyspark package of the driver's interpreter)
#
# Runs in client mode: the driver (reading inputs, preparing the book, computing the risk
# measures) runs here; the Monte Carlo blocks run on the executors with the packed venv.
# Exit code: spark-submit's (0 = job completed; 2 = risk-engine configuration/data error).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ARCHIVE="$HERE/build/risk_engine_env.tar.gz"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
die() { echo "submit.sh: $*" >&2; exit 2; }

# 1. Arguments. Job arguments (--config/--as-of/--set/-v) are forwarded to
#    jobs/nightly_risk.py; --conf goes to spark-submit.
MASTER=""
CONFIGS=()
JOB_ARGS=()
SPARK_CONFS=()
VERBOSE=()
BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --master) MASTER="${2:?--master needs a URL}"; shift 2 ;;
    --master=*) MASTER="${1#*=}"; shift ;;
    --config) CONFIGS+=("${2:?--config needs a file}"); shift 2 ;;
    --config=*) CONFIGS+=("${1#*=}"); shift ;;
    --as-of) JOB_ARGS+=(--as-of "${2:?--as-of needs a date}"); shift 2 ;;
    --as-of=*) JOB_ARGS+=(--as-of "${1#*=}"); shift ;;
    --set) JOB_ARGS+=(--set "${2:?--set needs KEY=VALUE}"); shift 2 ;;
    --set=*) JOB_ARGS+=(--set "${1#*=}"); shift ;;
    --conf) SPARK_CONFS+=(--conf "${2:?--conf needs KEY=VALUE}"); shift 2 ;;
    --conf=*) SPARK_CONFS+=(--conf "${1#*=}"); shift ;;
    --no-build) BUILD=0; shift ;;
    -v|--verbose) VERBOSE=(-v); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ -n "$MASTER" ]] || { usage >&2; die "--master is required"; }
[[ ${#CONFIGS[@]} -gt 0 ]] || CONFIGS=("$ROOT/conf/cluster.yaml")
for c in "${CONFIGS[@]}"; do
  [[ -f "$c" ]] || die "config file not found: $c"
done

# 2. The driver's interpreter: the submitting virtualenv's python. Relative paths in the
#    configs (input/output roots) are taken from the current directory, as with risk-engine.
DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-${PYTHON:-}}"
if [[ -z "$DRIVER_PYTHON" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    DRIVER_PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    DRIVER_PYTHON="$ROOT/.venv/bin/python"
  else
    DRIVER_PYTHON=python3
  fi
fi
DRIVER_PYTHON="$(command -v "$DRIVER_PYTHON")" || die "driver interpreter not found"
"$DRIVER_PYTHON" -c 'import risk_engine, pyspark' 2>/dev/null \
  || die "$DRIVER_PYTHON cannot import risk_engine and pyspark (pip install -e '.[test]')"

# 3. The executor environment: (re)build it when missing or out of date (build_env.sh is a
#    no-op when its stamp matches), from the driver's interpreter so that executor and
#    driver run the same Python minor version and the same numpy/scipy/pandas/pyarrow.
if [[ $BUILD -eq 1 ]]; then
  PYTHON="$DRIVER_PYTHON" "$HERE/build_env.sh" >&2
fi
[[ -f "$ARCHIVE" ]] || die "$ARCHIVE missing (run deploy/build_env.sh)"

# 4. spark-submit: $SPARK_HOME's, else the one of the driver's pyspark package. The pip
#    package's Spark also provides python/lib/pyspark.zip + py4j-*-src.zip, which Spark puts
#    on the executors' Python path (that is why the packed env holds no pyspark).
if [[ -n "${SPARK_HOME:-}" ]]; then
  SPARK_SUBMIT="$SPARK_HOME/bin/spark-submit"
else
  PYSPARK_DIR="$("$DRIVER_PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  SPARK_SUBMIT="$PYSPARK_DIR/bin/spark-submit"
fi
[[ -x "$SPARK_SUBMIT" ]] || die "spark-submit not found at $SPARK_SUBMIT"

# 5. Submit, client mode:
#    --archives ...#environment   each executor unpacks the venv into ./environment
#    spark.pyspark.python         executors' Python workers run ./environment/bin/python
#    spark.pyspark.driver.python  the driver runs the submitting interpreter (this venv:
#                                 risk-engine, pyspark, cvxpy for the driver-side steps)
#    The master is set here only; jobs/nightly_risk.py never overrides it.
export PYSPARK_DRIVER_PYTHON="$DRIVER_PYTHON"
export PYSPARK_PYTHON=./environment/bin/python
CMD=(
  "$SPARK_SUBMIT"
  --master "$MASTER"
  --deploy-mode client
  --archives "$ARCHIVE#environment"
  --conf spark.pyspark.python=./environment/bin/python
  --conf "spark.pyspark.driver.python=$DRIVER_PYTHON"
  ${SPARK_CONFS[@]+"${SPARK_CONFS[@]}"}
  "$ROOT/jobs/nightly_risk.py"
  ${VERBOSE[@]+"${VERBOSE[@]}"} run
)
for c in "${CONFIGS[@]}"; do CMD+=(--config "$c"); done
CMD+=(${JOB_ARGS[@]+"${JOB_ARGS[@]}"})
echo "submit.sh: ${CMD[*]}" >&2
exec "${CMD[@]}"
