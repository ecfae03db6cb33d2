"""deploy/k8s manifests against the Spark operator's CRD schemas kept in deploy/k8s/crds/.

The schemas are the operator's OpenAPI v3 ``openAPIV3Schema`` (release named in each file's
header), checked with ``jsonschema`` as ``kubectl apply`` checks them with strict field
validation (its default): wrong types, missing required fields, out-of-range values and
unknown fields are errors.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib.util
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = {
    "SparkApplication": K8S / "crds" / "sparkoperator.k8s.io_sparkapplications.yaml",
    "ScheduledSparkApplication":
        K8S / "crds" / "sparkoperator.k8s.io_scheduledsparkapplications.yaml",
}


def _strict(schema: Any) -> Any:
    """The schema with unknown properties rejected where Kubernetes rejects them: every
    object schema that lists ``properties`` and neither allows extra ones
    (``additionalProperties``) nor preserves unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~0.8 MB each
    crd = yaml.load(CRDS[kind].read_text(), Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # OpenAPI v3.0 schema objects are JSON Schema draft 4 in their validation keywords
    # (boolean exclusiveMinimum); the x-kubernetes-* extensions are ignored.
    return jsonschema.Draft4Validator(schema)


def _manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())


def _errors(doc: dict[str, Any]) -> list[str]:
    assert doc["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(doc["kind"]).iter_errors(doc)]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_files_name_their_release(kind: str) -> None:
    head = CRDS[kind].read_text().splitlines()[:2]
    assert "kubeflow/spark-operator/blob/v2.5.2/" in head[0]
    assert "43afb8bbd32463037d8fb6e414e252c69081882b" in head[1]


@pytest.mark.parametrize("name", ["sparkapplication.yaml", "scheduledsparkapplication.yaml"])
def test_manifest_is_valid(name: str) -> None:
    assert _errors(_manifest(name)) == []


def test_schedule_settings() -> None:
    spec = _manifest("scheduledsparkapplication.yaml")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "UTC"
    assert spec["schedule"] == "30 1 * * 2-6"
    assert spec["successfulRunHistoryLimit"] >= 1 and spec["failedRunHistoryLimit"] >= 1
    # A failed run (maybe exit 2, a data error) is never restarted by the operator.
    assert spec["template"]["restartPolicy"]["onFailureRetries"] == 0


def test_schedule_template_is_the_one_off_spec_without_as_of() -> None:
    one_off = _manifest("sparkapplication.yaml")["spec"]
    template = _manifest("scheduledsparkapplication.yaml")["spec"]["template"]
    args = one_off.pop("arguments")
    i = args.index("--as-of")
    assert args[:i] + args[i + 2:] == template.pop("arguments")
    assert one_off == template


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(("name", "path", "value", "expected"), [
    ("scheduledsparkapplication.yaml", "spec.successfulRunHistoryLimit", "5", "is not of type"),
    ("scheduledsparkapplication.yaml", "spec.template.driver.cores", "two", "is not of type"),
    ("scheduledsparkapplication.yaml", "spec.template.sparkVersion", _DELETE,
     "'sparkVersion' is a required property"),
    ("scheduledsparkapplication.yaml", "spec.schedule", _DELETE,
     "'schedule' is a required property"),
    ("scheduledsparkapplication.yaml", "spec.template.restartPolicy.type", "Sometimes",
     "is not one of"),
    ("scheduledsparkapplication.yaml", "spec.concurency", "Forbid",
     "Additional properties are not allowed"),
    ("sparkapplication.yaml", "spec.executor.instances", "8", "is not of type"),
    ("sparkapplication.yaml", "spec.mainApplicationFile", _DELETE,
     "'mainApplicationFile' is a required property"),
    ("sparkapplication.yaml", "spec.restartPolicy.onFailureRetries", -1,
     "is less than the minimum"),
])
def test_broken_manifest_is_rejected(name: str, path: str, value: Any, expected: str) -> None:
    errors = _errors(_set(_manifest(name), path, value))
    assert any(expected in e for e in errors), errors


def _entry() -> Any:
    spec = importlib.util.spec_from_file_location("nightly_previous_day",
                                                  K8S / "nightly_previous_day.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scheduled_entry_runs_the_previous_utc_day() -> None:
    entry = _entry()
    args = ["run", "--config", "/etc/risk-engine/cluster.yaml"]
    # Saturday 01:30 UTC (= Friday 20:30 in New York): Friday's run.
    saturday = dt.datetime(2026, 11, 21, 1, 30, tzinfo=dt.timezone.utc)
    assert entry.with_default_as_of(args, saturday) == [*args, "--as-of", "2026-11-20"]
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert entry.with_default_as_of(args, saturday.astimezone(ny))[-1] == "2026-11-20"
    # An explicit date is kept (a re-run of one day).
    assert entry.with_default_as_of([*args, "--as-of", "2026-11-18"], saturday) == \
        [*args, "--as-of", "2026-11-18"]
    assert entry.with_default_as_of([*args, "--as-of=2026-11-18"], saturday)[-1] == \
        "--as-of=2026-11-18"
