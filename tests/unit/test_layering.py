"""The layering rule: the numerical core never imports pyspark (DESIGN.md, rule 1)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import risk_engine


def _core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(risk_engine.__path__, "risk_engine."):
        # __main__ modules run a command when imported; the Spark layer may import pyspark.
        if not (info.name.startswith("risk_engine.spark") or info.name.endswith("__main__")):
            names.append(info.name)
    return sorted(names)


def test_every_core_module_imports_without_pyspark():
    modules = _core_modules()
    assert "risk_engine.pipeline" in modules and "risk_engine.engine" in modules
    # A fresh interpreter: this test process may have imported pyspark already.
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'pyspark' or m.startswith('pyspark.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_spark_layer_does_import_pyspark():
    # The check above can fail: the same probe sees pyspark behind the Spark layer.
    code = ("import sys, risk_engine.spark.engine\n"
            "print('pyspark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"


def test_what_executors_import_needs_no_solver():
    # Executors' environments carry no cvxpy (deploy/build_env.sh): the modules a task
    # unpickles must not pull it in.
    code = ("import sys\n"
            "import risk_engine.simulation, risk_engine.sample_moments, risk_engine.engine\n"
            "import risk_engine.config, risk_engine.schemas\n"
            "print(sorted(m for m in ('cvxpy', 'clarabel', 'scs') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
