"""Read and write the Parquet tables atomically, validating their schemas."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dsan_core.errors import SchemaError, StageError, StorageError
from storage.atomic import atomic_path
from storage.layout import DataLayout
from storage.schemas import SCHEMAS


def schema_of(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise StorageError(f"unknown table {name!r}; known: {sorted(SCHEMAS)}") from None


def to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """Convert with the table's schema; column mismatches raise SchemaError."""
    schema = schema_of(name)
    expected, found = list(schema.names), list(frame.columns)
    if sorted(expected) != sorted(found):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        raise SchemaError(f"table {name!r}: missing columns {missing}, unexpected columns {extra}")
    try:
        table = pa.Table.from_pandas(frame[expected], schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise SchemaError(f"table {name!r}: values do not fit the schema: {error}") from None
    return table.replace_schema_metadata(None)


def write_table(layout: DataLayout, name: str, frame: pd.DataFrame) -> str:
    """Write `frame` atomically as table `name`; returns the file's sha256."""
    return write_table_file(layout.table(name), name, frame)


def write_table_file(destination: Path, name: str, frame: pd.DataFrame) -> str:
    """Write `frame` with table `name`'s schema to `destination` (a part of a table kept
    beside a model, say); returns the file's sha256."""
    from storage.hashing import sha256_file

    table = to_arrow(name, frame)
    with atomic_path(destination) as temp:
        pq.write_table(table, temp, compression="zstd")
    return sha256_file(destination)


def read_table_file(path: Path, name: str) -> pd.DataFrame:
    """Read a file written by `write_table_file` with table `name`'s schema."""
    return _read_validated(path, name, f"{name} file {path.name}")


def read_table(layout: DataLayout, name: str) -> pd.DataFrame:
    """Read table `name`; raise SchemaError when its schema is not the expected one."""
    path = layout.table(name)
    if not path.exists():
        raise StorageError(f"table {name!r} does not exist yet (run the stage that writes it)")
    return _read_validated(path, name, f"table {name!r}")


def _read_validated(path: Path, name: str, what: str) -> pd.DataFrame:
    return conform(pq.read_table(path), schema_of(name), what).to_pandas(
        types_mapper=_types_mapper)


def conform(table: pa.Table, expected: pa.Schema, what: str) -> pa.Table:
    """`table` with the expected schema, when every column casts losslessly to it.

    A table edited with pandas comes back with other types (large_string for string,
    double for a nullable integer, a saved index column): those are accepted when no
    value changes. A missing column, an extra one, or a value that does not fit raises
    SchemaError naming the column.
    """
    found = table.schema.remove_metadata()
    if found.equals(expected):
        return table.replace_schema_metadata(None)
    index_columns = set(_pandas_index_columns(table.schema))
    names = [n for n in table.column_names if n not in index_columns]
    missing = [n for n in expected.names if n not in names]
    extra = [n for n in names if n not in expected.names]
    if missing or extra:
        raise SchemaError(f"{what}: missing columns {missing}, unexpected columns {extra}")
    columns = []
    for field in expected:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise SchemaError(f"{what}: column {field.name!r} is {found.field(field.name).type}"
                                  f", expected {field.type}, and its values do not convert "
                                  f"without loss ({str(error).splitlines()[0]})") from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=expected)


def _pandas_index_columns(schema: pa.Schema) -> list[str]:
    metadata = schema.pandas_metadata or {}
    return [c for c in metadata.get("index_columns", []) if isinstance(c, str)]


def read_split_version(layout: DataLayout, prefix: str) -> tuple[str, pd.DataFrame]:
    """The stored split version whose id starts with `prefix` (unique), and its table."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise StorageError(f"expected a split version (hex digits), found {prefix!r}")
    found = layout.split_versions(prefix)
    if len(found) != 1:
        known = ", ".join(v[:12] for v in layout.split_versions()) or "none"
        what = "no stored split version" if not found else f"{len(found)} split versions"
        raise StorageError(f"{what} start(s) with {prefix!r}; stored versions: {known}")
    path = layout.split_version(found[0])
    return found[0], _read_validated(path, "splits", f"split version {found[0][:12]}")


def table_exists(layout: DataLayout, name: str) -> bool:
    return layout.table(name).exists()


def require_tables(layout: DataLayout, *names: str) -> None:
    """Raise StageError naming the first of the tables `names` that is not written yet."""
    for name in names:
        if not table_exists(layout, name):
            raise StageError(f"table {name!r} is missing: run the stage that writes it first")


def _types_mapper(arrow_type: pa.DataType) -> object | None:
    # Nullable integers stay integers (pandas would turn them into floats).
    if pa.types.is_integer(arrow_type):
        return pd.api.types.pandas_dtype(f"Int{arrow_type.bit_width}")
    return None
