"""Parquet I/O with the declared schemas, checked at both edges."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from risk_engine.errors import DataError, SchemaError
from risk_engine.schemas import RUN_MANIFEST, Table, check_columns
from risk_engine.spark.publication import JOURNAL_DIR, StepHook, commit_date
from risk_engine.storage import write_atomic

_SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "double": T.DoubleType(),
    "long": T.LongType(),
    "int": T.IntegerType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
    "array<double>": T.ArrayType(T.DoubleType()),
}
_LOGICAL = {v.simpleString(): k for k, v in _SPARK_TYPES.items()}

#: One as-of date, several, or none (every row).
Dates = dt.date | Sequence[dt.date] | None


def spark_schema(table: Table, *, drop: tuple[str, ...] = ()) -> T.StructType:
    """The Spark ``StructType`` of a declared table."""
    return T.StructType([
        T.StructField(c.name, _SPARK_TYPES[c.type], c.nullable)
        for c in table.columns if c.name not in drop
    ])


def _is_remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def table_path(root: str, name: str) -> str | None:
    """``<root>/<name>.parquet`` or ``<root>/<name>/`` if either exists (remote: the folder)."""
    if _is_remote(root):
        return f"{root.rstrip('/')}/{name}"
    base = Path(root.removeprefix("file://"))
    for candidate in (base / f"{name}.parquet", base / name):
        if candidate.exists():
            return str(candidate)
    return None


def _value_type(t: pa.DataType) -> pa.DataType:
    """The values' type of a dictionary-encoded column (a pandas category), else ``t``."""
    return t.value_type if pa.types.is_dictionary(t) else t


def _arrow_logical(t: pa.DataType) -> str:
    t = _value_type(t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _widen(table: Table, actual: dict[str, str]) -> dict[str, str]:
    """Accept what is unambiguous: integers where a double is declared, all-null columns.

    Integers are widened on read; an all-null column (Arrow type null, e.g. pandas' all-None
    ``strike`` of an equity-only book) is read as nulls of the declared type. A dictionary-
    encoded column counts as its values' type (:func:`_arrow_logical`).
    """
    out = {}
    for k, v in actual.items():
        declared = table.column(k).type if k in table.names else None
        if declared is not None and (v == "null" or (v in ("int", "long")
                                                     and declared == "double")):
            v = declared
        out[k] = v
    return out


def _local_files(path: Path, as_of: Dates) -> tuple[Path, list[Path]]:
    """The folder (or file) a run reads for ``as_of``, and the Parquet files in it.

    Several dates: the files of those dates' partitions (the table's folder is the base).
    """
    if path.is_file():
        return path, [path]

    def files(base: Path) -> list[Path]:
        return sorted(f for f in base.rglob("*.parquet")
                      if not any(p.startswith((".", "_")) for p in f.relative_to(base).parts))

    if as_of is None or isinstance(as_of, dt.date):
        part = path / f"as_of_date={as_of.isoformat()}" if as_of is not None else None
        base = part if part is not None and part.is_dir() else path
        return base, files(base)
    parts = [path / f"as_of_date={d.isoformat()}" for d in sorted(set(as_of))]
    parts = [p for p in parts if p.is_dir()]
    if not parts:
        return path, files(path)
    return path, [f for p in parts for f in files(p)]


def _check_local_files(table: Table, path: Path,
                       as_of: Dates) -> dict[tuple[tuple[str, str], ...], list[Path]]:
    """Check the footer of every Parquet file that the run will read (pyarrow, no data).

    Returns the files grouped by the physical types of their declared columns (dictionary
    encoding aside): Spark reads each group with one schema.
    """
    _, files = _local_files(path, as_of)
    groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # noqa: BLE001 - any unreadable footer
            raise DataError(f"input table {table.name}: file {f} is not readable Parquet: "
                            f"{exc}") from exc
        actual = {name: _arrow_logical(schema.field(name).type) for name in schema.names}
        if "as_of_date" not in actual and "as_of_date=" in str(f):
            actual["as_of_date"] = "date"  # hive partition column
        try:
            check_columns(table, _widen(table, actual))
        except SchemaError as exc:
            raise SchemaError(f"{exc} (file {f})") from None
        key = tuple((c, str(_value_type(schema.field(c).type))) for c in table.names
                    if c in schema.names)
        groups.setdefault(key, []).append(f)
    return groups


def _read_local(spark: SparkSession, table: Table, path: Path, as_of: Dates,
                groups: dict[tuple[tuple[str, str], ...], list[Path]]) -> DataFrame:
    """Read checked local files, each group of like files with its own schema.

    Files whose declared columns have different physical types (int64 and double
    quantities, say) cannot be read by Spark as one; all-null columns are not read at all
    (Spark would read them as int, which does not cast to date).
    """
    base, files = _local_files(path, as_of)
    several = as_of is not None and not isinstance(as_of, dt.date)  # files of some dates
    frames = []
    for key, group in groups.items():
        nulls = {c for c, t in key if t == "null"}
        reader = spark.read if path.is_file() else spark.read.option("basePath", str(path))
        src = (reader.parquet(str(base)) if len(group) == len(files) and not several
               else reader.parquet(*[str(f) for f in group]))
        frames.append(src.select([
            (F.col(c.name) if c.name in src.columns and c.name not in nulls else F.lit(None))
            .cast(_SPARK_TYPES[c.type]).alias(c.name) for c in table.columns]))
    if not frames:  # no file: let Spark say so, as before
        return spark.read.parquet(str(path))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _on_date(as_of: dt.date | Sequence[dt.date]) -> Column:
    """Rows of ``as_of`` and rows with no date (the core rejects those, with the reason)."""
    day = F.col("as_of_date")
    on = (day == F.lit(as_of)) if isinstance(as_of, dt.date) else day.isin(
        [F.lit(d) for d in sorted(set(as_of))])
    return on | day.isNull()


def read_table(
    spark: SparkSession, root: str, table: Table, *, required: bool = True,
    as_of: Dates = None,
) -> DataFrame | None:
    """Read a declared input table with its explicit schema, after checking the files' own.

    ``as_of``: the rows of that date (or of those dates) and the rows without a date; a
    hive-partitioned table reads only those dates' partitions.

    Local tables have every file's footer checked (the as-of partition's files only, for a
    hive-partitioned table, and only those are read); remote ones the schema Spark infers.
    Integer columns where a double is declared, all-null columns and dictionary-encoded
    (pandas category) columns are accepted, also when files of one table differ in this.

    Raises
    ------
    DataError
        If a required table is missing (naming the paths tried) or a file is unreadable.
    SchemaError
        If a declared column is missing or has another type (naming table, column, expected
        and actual type, and the file). Extra columns are allowed and dropped.
    """
    path = table_path(root, table.name)
    if path is None:
        if required:
            raise DataError(f"input table {table.name} not found: tried "
                            f"{os.path.join(root, table.name + '.parquet')} and "
                            f"{os.path.join(root, table.name)}/")
        return None
    local = _local(path)
    if local is not None:
        groups = _check_local_files(table, local, as_of)
        try:
            df = _read_local(spark, table, local, as_of, groups)
        except Exception as exc:  # noqa: BLE001 - Spark raises several JVM-backed types here
            raise DataError(f"input table {table.name} at {path} cannot be read as Parquet: "
                            f"{str(exc).splitlines()[0]}") from exc
        if as_of is not None and "as_of_date" in df.columns:
            df = df.where(_on_date(as_of))
        return df
    try:
        found = spark.read.parquet(path).schema
    except Exception as exc:  # noqa: BLE001 - Spark raises several JVM-backed types here
        raise DataError(f"input table {table.name} at {path} cannot be read as Parquet: "
                        f"{str(exc).splitlines()[0]}") from exc
    actual = {f.name: _LOGICAL.get(f.dataType.simpleString(), f.dataType.simpleString())
              for f in found.fields}
    check_columns(table, _widen(table, actual))
    df = spark.read.parquet(path)
    if as_of is not None and "as_of_date" in found.fieldNames():
        df = df.where(_on_date(as_of))
    return df.select([F.col(c.name).cast(_SPARK_TYPES[c.type]).alias(c.name)
                      for c in table.columns])


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """Collect a (small) frame through Arrow; date columns stay ``datetime.date``."""
    return df.toPandas()


def read_dated(spark: SparkSession, root: str, table: Table, as_of: dt.date,
               *, required: bool = True) -> pd.DataFrame | None:
    """Rows of a dated input table for one as-of date, as pandas."""
    df = read_table(spark, root, table, required=required, as_of=as_of)
    if df is None:
        return None
    return to_pandas(df)


def read_dates(spark: SparkSession, root: str, table: Table, days: Sequence[dt.date],
               *, required: bool = True) -> pd.DataFrame | None:
    """Rows of a dated input table for several as-of dates (and rows without one), as pandas.

    A date's rows, cut from them (``as_of_date`` that date or null), are the rows
    :func:`read_dated` reads for it.
    """
    df = read_table(spark, root, table, required=required, as_of=list(days))
    if df is None:
        return None
    return to_pandas(df)


def _arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a frame to Arrow with the declared schema.

    NaN in a double column stays NaN (a value, e.g. a check that could not be evaluated);
    only None is null.
    """
    arrays = []
    for f in schema:
        col = frame[f.name]
        if pa.types.is_floating(f.type):
            arrays.append(pa.array(col.to_numpy(dtype=float, na_value=np.nan), type=f.type,
                                   from_pandas=False))
        else:
            arrays.append(pa.Array.from_pandas(col, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def as_published(frame: pd.DataFrame, table: Table, as_of: dt.date, run_id: str
                 ) -> pd.DataFrame:
    """``frame`` as a read of the partition :func:`write_partition` writes gives it back.

    The declared columns through the files' Arrow conversion, with ``run_id`` and
    ``as_of_date`` (a ``datetime.date``) set, as :func:`to_pandas` returns a read.
    """
    cols = [c for c in table.names if c != "as_of_date"]
    arrow = table.arrow_schema()
    arrow = arrow.remove(arrow.get_field_index("as_of_date"))
    out = _arrow_table(frame.assign(run_id=run_id)[cols], arrow).to_pandas()
    out["as_of_date"] = pd.Series([as_of] * len(out), dtype=object)
    return out


def write_partition(
    spark: SparkSession, frame: pd.DataFrame, table: Table, root: str, as_of: dt.date
) -> str:
    """Write ``frame`` as the ``as_of_date`` partition of ``table`` under ``root``.

    Dynamic partition overwrite: this date's previous results are replaced, other dates are
    left alone. ``frame`` must hold every declared column but ``as_of_date``.
    """
    cols = [c for c in table.names if c != "as_of_date"]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise SchemaError(f"output {table.name}: missing column(s) {missing}")
    local = _local(root)
    if local is not None:
        # Small driver-side frames: pyarrow writes them in milliseconds, Spark in seconds.
        arrow = table.arrow_schema()
        arrow = arrow.remove(arrow.get_field_index("as_of_date"))
        folder = local / _part(table.name, as_of)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(_arrow_table(frame[cols], arrow), folder / "part-00000.parquet")
        return str(folder)
    body = frame[cols].assign(as_of_date=as_of)
    df = spark.createDataFrame(body, schema=spark_schema(table))
    path = f"{root.rstrip('/')}/{table.name}"
    (df.coalesce(1).write.mode("overwrite").partitionBy("as_of_date")
       .option("partitionOverwriteMode", "dynamic").parquet(path))
    return path


# ----------------------------------------------------------------------------- publication


def local_root(root: str) -> Path | None:
    """The local path of ``root``, or None for a remote URI (hdfs://, s3a://, ...)."""
    if _is_remote(root):
        return None
    return Path(root.removeprefix("file://"))


_local = local_root


def _hadoop_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(conf), jvm


def _part(table: str, as_of: dt.date) -> str:
    return f"{table}/as_of_date={as_of.isoformat()}"


def publish_partitions(
    spark: SparkSession, staging: str, root: str, as_of: dt.date, produced: list[str],
    tables: list[str], *, run_id: str = "", manifest: Path | None = None,
    hook: StepHook | None = None,
) -> None:
    """Move every staged ``<table>/as_of_date=<date>`` into ``root``, replacing the old one.

    Tables in ``tables`` that this run did not produce lose their old partition for the
    date, so a date never mixes two runs. Local roots publish the date as one journaled
    commit (:func:`risk_engine.spark.publication.commit_date`, which also installs the run's
    staged final ``manifest`` file): a failure undoes it, a kill at any point is finished by
    the next run of the date (:func:`~risk_engine.spark.publication.recover_date`). Remote
    roots use Hadoop FileSystem delete and rename per table folder (atomic per folder on
    HDFS, not on object stores; a run killed midway can leave the date mixed until the next
    run publishes it).
    """
    local_root, local_staging = _local(root), _local(staging)
    if local_root is not None and local_staging is not None:
        commit_date(local_root, local_staging, as_of, run_id, tables, manifest=manifest,
                    hook=hook)
        discard_staging(staging)
        return
    fs, jvm = _hadoop_fs(spark, root)
    for table in tables:
        src = jvm.org.apache.hadoop.fs.Path(f"{staging}/{_part(table, as_of)}")
        dst = jvm.org.apache.hadoop.fs.Path(f"{root.rstrip('/')}/{_part(table, as_of)}")
        if fs.exists(dst):
            fs.delete(dst, True)
        if table in produced and fs.exists(src):
            fs.mkdirs(dst.getParent())
            fs.rename(src, dst)
    discard_staging(staging, spark)


def discard_staging(staging: str, spark: SparkSession | None = None) -> None:
    """Delete a run's staging folder (best effort), and its parents once empty.

    Kept while the date's publication journal exists: the folder may then hold the
    previous results that the next run's recovery puts back.
    """
    local = _local(staging)
    if local is not None:
        date_dir = local.parent
        if (date_dir.parent.parent / JOURNAL_DIR / f"{date_dir.name}.json").exists():
            return
        shutil.rmtree(local, ignore_errors=True)
        for parent in (local.parent, local.parent.parent):
            if parent.name.startswith(("as_of_date=", "_staging")):
                try:
                    parent.rmdir()  # the date's and the root's _staging folder, once unused
                except OSError:
                    break
    elif spark is not None:
        fs, jvm = _hadoop_fs(spark, staging)
        fs.delete(jvm.org.apache.hadoop.fs.Path(staging), True)


def _manifest_table(row: pd.DataFrame) -> pa.Table:
    schema = RUN_MANIFEST.arrow_schema()
    return pa.Table.from_pandas(row, schema=schema.remove(schema.get_field_index("as_of_date")),
                                preserve_index=False)


def stage_manifest(row: pd.DataFrame, staging: str, run_id: str) -> Path:
    """Write a run's final manifest row into its (local) staging folder, for the commit."""
    local = _local(staging)
    assert local is not None, "staged manifests are for local roots"
    path = local / "_manifest" / f"{run_id}.parquet"
    table = _manifest_table(row)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_manifest(
    spark: SparkSession, row: pd.DataFrame, root: str, as_of: dt.date, run_id: str
) -> None:
    """Write one run's manifest as ``run_manifest/as_of_date=<date>/<run_id>.parquet``.

    Each run has its own file (replaced atomically as the run progresses), so the manifest
    table holds one row per run and a reader can tell complete runs from the rest.
    """
    table = _manifest_table(row)
    name = f"{_part(RUN_MANIFEST.name, as_of)}/{run_id}.parquet"
    local = _local(root)
    if local is not None:
        write_atomic(local / name, lambda tmp: pq.write_table(table, tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{run_id}.parquet"
        pq.write_table(table, path)
        fs, jvm = _hadoop_fs(spark, root)
        fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(str(path)),
                             jvm.org.apache.hadoop.fs.Path(f"{root.rstrip('/')}/{name}"))


def mark_interrupted(spark: SparkSession, root: str, as_of: dt.date) -> list[str]:
    """Mark manifests of ``as_of`` still ``running`` as ``interrupted``; return their run ids.

    A run's manifest says ``running`` until the run ends; if a new run of the same date finds
    one, that run died without finishing (killed driver, lost machine). Runs of one date
    never overlap (the date's lock). Local roots only (remote manifests are left as they are).
    """
    local = _local(root)
    if local is None:
        return []
    folder = local / _part(RUN_MANIFEST.name, as_of)
    marked = []
    for path in sorted(folder.glob("*.parquet")) if folder.exists() else []:
        frame = pq.read_table(path).to_pandas()
        if len(frame) and (frame["status"] == "running").all():
            stage = json.loads(frame["stage_timings"].iloc[0] or "{}").get("current", "?")
            frame["status"] = "interrupted"
            frame["message"] = (f"the run ended without recording completion during stage "
                                f"{stage} (process killed?); its results were not published")
            table = pa.Table.from_pandas(frame, schema=pq.read_schema(path),
                                         preserve_index=False)
            write_atomic(path, partial(pq.write_table, table))
            marked.append(str(frame["run_id"].iloc[0]))
    return marked
