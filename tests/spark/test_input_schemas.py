"""Input files that valid writers produce, read by the real local Spark session.

Each case is a Parquet file written by pyarrow or pandas as a data provider would: integer
quantities beside double ones in one date, an integer partition of another date, an
equity-only book whose option columns are all null (Arrow null type), a pandas category
``desk``. What is unambiguous is read; the rest is a SchemaError naming table, column,
type and file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from risk_engine import schemas
from risk_engine.errors import SchemaError
from risk_engine.spark.io import read_dated
from tests.helpers import D1, D2


def _positions_dir(root, day):
    return root / "positions" / f"as_of_date={day}"


@pytest.fixture
def root(snapshot_root, tmp_path):
    dest = tmp_path / "in"
    shutil.copytree(snapshot_root, dest)
    return dest


def _book(root, day):
    return pq.read_table(_positions_dir(root, day) / "part-00000.parquet").to_pandas()


def _replace(root, day, frames):
    folder = _positions_dir(root, day)
    for f in folder.glob("*.parquet"):
        f.unlink()
    for i, frame in enumerate(frames):
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
        pq.write_table(table, folder / f"part-{i:05d}.parquet")


def _expected(book):
    return book.sort_values("position_id").reset_index(drop=True)


def _read(spark, root, day=D2):
    got = read_dated(spark, str(root), schemas.POSITIONS, day)
    return got.sort_values("position_id").reset_index(drop=True)


def test_int_and_double_quantities_in_one_date_are_read_as_double(spark, root):
    book = _book(root, D2)
    book["quantity"] = np.round(book["quantity"])
    ints = book.iloc[:150].astype({"quantity": "int64"})
    _replace(root, D2, [ints, book.iloc[150:]])
    assert pq.read_schema(_positions_dir(root, D2) / "part-00000.parquet").field(
        "quantity").type == pa.int64()
    got = _read(spark, root)
    assert len(got) == len(book) and got["quantity"].dtype == np.float64
    np.testing.assert_array_equal(got["quantity"].to_numpy(),
                                  _expected(book)["quantity"].to_numpy())


def test_int_quantities_in_another_date_do_not_break_this_one(spark, root):
    other = _book(root, D1)
    other["quantity"] = np.round(other["quantity"]).astype("int64")
    _replace(root, D1, [other])
    got = _read(spark, root)
    pd.testing.assert_series_equal(got["quantity"], _expected(_book(root, D2))["quantity"])
    back = _read(spark, root, D1)  # and the integer date itself reads as double
    assert back["quantity"].dtype == np.float64 and len(back) == len(other)


def test_equity_only_book_with_all_null_option_columns(spark, root):
    book = _book(root, D2)
    eq = book[book["instrument_type"] == "equity"].copy()
    eq["strike"], eq["expiry"], eq["book"] = None, None, None  # pandas: Arrow null type
    table = pa.Table.from_pandas(eq, preserve_index=False)
    assert pa.types.is_null(table.schema.field("strike").type)
    assert pa.types.is_null(table.schema.field("expiry").type)
    _replace(root, D2, [table])
    got = _read(spark, root)
    assert len(got) == len(eq) and got["strike"].isna().all() and got["expiry"].isna().all()
    assert got["strike"].dtype == np.float64
    # beside a file with real options, the nulls stay nulls and the options keep theirs
    opts = book[book["instrument_type"] != "equity"]
    _replace(root, D2, [table, opts])
    got = _read(spark, root).set_index("position_id")
    assert got.loc[eq["position_id"], "strike"].isna().all()
    np.testing.assert_array_equal(got.loc[opts["position_id"], "strike"].to_numpy(),
                                  opts["strike"].to_numpy())
    assert list(got.loc[opts["position_id"], "expiry"]) == list(opts["expiry"])


def test_category_desk_is_read_as_string(spark, root):
    book = _book(root, D2)
    cat = book.astype({"desk": "category"})
    table = pa.Table.from_pandas(cat, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("desk").type)
    _replace(root, D2, [table.slice(0, 100), book.iloc[100:]])
    got = _read(spark, root)
    assert list(got["desk"]) == list(_expected(book)["desk"])


def test_ambiguous_types_are_refused_naming_table_column_type_and_file(spark, root):
    book = _book(root, D2)
    text = book.iloc[200:].astype({"quantity": "str"})
    _replace(root, D2, [book.iloc[:200], text])
    with pytest.raises(SchemaError, match=r"table positions: wrong type: quantity \(expected "
                                          r"double, got string\).*\(file .*part-00001"):
        _read(spark, root)
    stamped = book.assign(expiry=pd.to_datetime(book["expiry"]))  # timestamp, not date
    _replace(root, D2, [stamped])
    with pytest.raises(SchemaError, match=r"expiry \(expected date, got timestamp\).*"
                                          r"\(file .*part-00000"):
        _read(spark, root)
