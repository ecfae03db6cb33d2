"""Parquet I/O with the declared schemas, checked at both edges."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from risk_engine.errors import DataError, SchemaError
from risk_engine.schemas import Table, check_columns

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


def read_table(
    spark: SparkSession, root: str, table: Table, *, required: bool = True
) -> DataFrame | None:
    """Read a declared input table with its explicit schema, after checking the file's own.

    Raises
    ------
    DataError
        If a required table is missing (naming the paths tried).
    SchemaError
        If a declared column is missing or has another type (naming table, column, expected
        and actual type). Extra columns are allowed and dropped.
    """
    path = table_path(root, table.name)
    if path is None:
        if required:
            raise DataError(f"input table {table.name} not found: tried "
                            f"{os.path.join(root, table.name + '.parquet')} and "
                            f"{os.path.join(root, table.name)}/")
        return None
    try:
        found = spark.read.parquet(path).schema
    except Exception as exc:  # noqa: BLE001 - Spark raises several JVM-backed types here
        raise DataError(f"input table {table.name} at {path} cannot be read as Parquet: "
                        f"{str(exc).splitlines()[0]}") from exc
    actual = {f.name: _LOGICAL.get(f.dataType.simpleString(), f.dataType.simpleString())
              for f in found.fields}
    # Integral quantities/strikes written as integers are accepted and widened to double.
    widened = {k: ("double" if v in ("int", "long", "float") and table.column(k).type == "double"
                   else v) for k, v in actual.items() if k in table.names}
    widened.update({k: v for k, v in actual.items() if k not in table.names})
    check_columns(table, widened)
    df = spark.read.parquet(path)
    return df.select([F.col(c.name).cast(_SPARK_TYPES[c.type]).alias(c.name)
                      for c in table.columns])


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """Collect a (small) frame through Arrow; date columns stay ``datetime.date``."""
    return df.toPandas()


def read_dated(spark: SparkSession, root: str, table: Table, as_of: dt.date,
               *, required: bool = True) -> pd.DataFrame | None:
    """Rows of a dated input table for one as-of date, as pandas."""
    df = read_table(spark, root, table, required=required)
    if df is None:
        return None
    return to_pandas(df.where(F.col("as_of_date") == F.lit(as_of)))


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
    body = frame[cols].assign(as_of_date=as_of)
    df = spark.createDataFrame(body, schema=spark_schema(table))
    path = f"{root.rstrip('/')}/{table.name}"
    (df.coalesce(1).write.mode("overwrite").partitionBy("as_of_date")
       .option("partitionOverwriteMode", "dynamic").parquet(path))
    return path
