"""Shared fixtures and the row normalisation for silt's interop tests.

Row normalisation (must match internal/delta/interop/rows.go): every row is a
JSON object keyed by column name; null -> null, boolean -> bool, integers ->
int, float -> "f32:<8 hex bits>", double -> "f64:<16 hex bits>" (every NaN is
"NaN"), string -> str, binary -> "hex:<hex>", decimal(p,s) -> exact text with s
fraction digits, date -> "YYYY-MM-DD", timestamp -> int microseconds UTC,
timestamp_ntz -> int microseconds of the wall clock, struct -> object, array ->
list, map -> list of [key, value] sorted by the canonical text of the key.
Rows are compared as multisets of canonical JSON text (sorted keys).
"""

import datetime as dt
import decimal
import json
import os
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parent.parent
# Delta's jars are fetched from Maven Central on first use; cached per user so
# that fresh clones (CI) on the same machine reuse them.
IVY_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "silt" / "ivy"

_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)


# ---------------------------------------------------------------- normalisation


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def norm_value(v, t):
    """Normalise one value of pyarrow type t, as produced by to_pylist()."""
    if v is None:
        return None
    if pa.types.is_boolean(t):
        return bool(v)
    if pa.types.is_integer(t):
        return int(v)
    if pa.types.is_float32(t):
        return "NaN" if v != v else "f32:" + struct.pack(">f", v).hex()
    if pa.types.is_float64(t):
        return "NaN" if v != v else "f64:" + struct.pack(">d", v).hex()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return v
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)
            or pa.types.is_fixed_size_binary(t)):
        return "hex:" + bytes(v).hex()
    if pa.types.is_decimal(t):
        q = decimal.Decimal(1).scaleb(-t.scale)
        return format(v.quantize(q, context=decimal.Context(prec=80)), "f")
    if pa.types.is_date(t):
        return v.isoformat()
    if pa.types.is_timestamp(t):
        if isinstance(v, int):  # cast path: already in t.unit
            return v
        if v.tzinfo is None:
            return (v - _EPOCH) // _US
        return (v - _EPOCH_UTC) // _US
    if pa.types.is_struct(t):
        return {t.field(i).name: norm_value(v.get(t.field(i).name), t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_map(t):
        pairs = [[norm_value(k, t.key_type), norm_value(x, t.item_type)] for k, x in v]
        pairs.sort(key=lambda p: canonical(p[0]))
        return pairs
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_fixed_size_list(t):
        return [norm_value(x, t.value_type) for x in v]
    if pa.types.is_null(t):
        return None
    raise TypeError(f"no normalisation for Arrow type {t}")


def _timestamps_to_int(col):
    """Top-level timestamps as integers in microseconds: exact for any year."""
    t = col.type
    if not pa.types.is_timestamp(t):
        return col, t
    ints = col.cast(pa.int64())
    factor = {"s": 1_000_000, "ms": 1000, "us": 1, "ns": None}[t.unit]
    if factor is None:
        vals = [None if x is None else x // 1000 for x in ints.to_pylist()]
    else:
        vals = [None if x is None else x * factor for x in ints.to_pylist()]
    return pa.array(vals, pa.int64()), t


def norm_table(table):
    """Normalised rows (list of dicts) of a pyarrow Table."""
    cols = {}
    for name, col in zip(table.column_names, table.columns):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = col.type
        if pa.types.is_timestamp(t):
            ints, _ = _timestamps_to_int(col)
            cols[name] = ints.to_pylist()
        else:
            cols[name] = [norm_value(v, t) for v in col.to_pylist()]
    n = table.num_rows
    return [{name: cols[name][i] for name in cols} for i in range(n)]


def multiset(rows):
    return Counter(canonical(r) for r in rows)


def diff_rows(got, want):
    g, w = multiset(got), multiset(want)
    if g == w:
        return ""
    extra = sorted((g - w).elements())
    missing = sorted((w - g).elements())
    return (f"rows differ: got {sum(g.values())}, want {sum(w.values())}\n"
            f"  unexpected ({len(extra)}):\n    " + "\n    ".join(extra[:8]) +
            f"\n  missing ({len(missing)}):\n    " + "\n    ".join(missing[:8]))


def schema_shape(s):
    """Names and types of a Delta/Spark JSON schema (nullability and metadata dropped)."""
    if isinstance(s, str):
        if s.startswith("decimal"):
            return s.replace(" ", "")
        return s
    kind = s["type"]
    if kind == "struct":
        return [[f["name"], schema_shape(f["type"])] for f in s["fields"]]
    if kind == "array":
        return ["array", schema_shape(s["elementType"])]
    if kind == "map":
        return ["map", schema_shape(s["keyType"]), schema_shape(s["valueType"])]
    return schema_shape(kind)


# ---------------------------------------------------------------- dumps


def write_expectation(out, table, version, schema_json, partition_columns, rows, num_files=-1, txns=None):
    """Writes expected/<table>/v<version>.{json,rows.jsonl} in silt's layout."""
    d = Path(out) / "expected" / table
    d.mkdir(parents=True, exist_ok=True)
    meta = {"version": version, "schema": schema_json, "partition_columns": list(partition_columns),
            "num_files": num_files, "num_rows": len(rows)}
    if txns:
        meta["txns"] = txns
    (d / f"v{version}.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = sorted(canonical(r) for r in rows)
    (d / f"v{version}.rows.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_expectation(out, table, version):
    d = Path(out) / "expected" / table
    meta = json.loads((d / f"v{version}.json").read_text())
    rows = [json.loads(line) for line in (d / f"v{version}.rows.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return meta, rows


# ---------------------------------------------------------------- engines


def go_binary():
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: run scripts/setup.sh")
    return go


@pytest.fixture(scope="session")
def silt_dir(tmp_path_factory):
    """Tables written by silt (go run ./internal/delta/interop/cmd/writefixtures)."""
    out = tmp_path_factory.mktemp("silt")
    subprocess.run([go_binary(), "run", "./internal/delta/interop/cmd/writefixtures", "-out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def silt_manifest(silt_dir):
    return json.loads((silt_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local Spark session with Delta for the whole pytest session."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    IVY_DIR.mkdir(parents=True, exist_ok=True)
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("silt-interop")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.jars.ivy", str(IVY_DIR))
        .config("spark.driver.memory", "2g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
    )
    session = configure_spark_with_delta_pip(builder).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def spark_read(spark, path, version):
    """Rows, schema JSON of a Delta table at version, read by Spark."""
    df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
    return norm_table(df.toArrow()), df.schema.jsonValue()


def deltars_read(path, version):
    """Rows, schema JSON and live file count at version, read by delta-rs."""
    from deltalake import DeltaTable

    t = DeltaTable(str(path), version=version)
    return norm_table(t.to_pyarrow_table()), json.loads(t.schema().to_json()), len(t.file_uris()), t


# ---------------------------------------------------------------- checks


def manifest_table(manifest, name, whose):
    """The entry of table name in a manifest (whose: for the failure message)."""
    for t in manifest["tables"]:
        if t["name"] == name:
            return t
    pytest.fail(f"table {name} is not in {whose} manifest")


def compare_read(engine, what, name, version, got_rows, got_schema, meta, want_rows):
    """An engine read the rows and schema silt reads (what: "silt", "pipeline")."""
    d = diff_rows(got_rows, want_rows)
    assert not d, f"{engine} reading {what} table {name} at v{version}: {d}"
    assert schema_shape(got_schema) == schema_shape(meta["schema"]), (
        f"{engine} reading {what} table {name} at v{version}: schema differs")


def check_deltars_versions(out, name, versions, what):
    """delta-rs reads table name of out (tables/<name>) at each of versions as
    silt does: rows, schema, live files, partition columns, app transactions."""
    path = Path(out) / "tables" / name
    for v in versions:
        meta, want = read_expectation(out, name, v)
        rows, schema, nfiles, dt = deltars_read(path, v)
        compare_read("delta-rs", what, name, v, rows, schema, meta, want)
        assert nfiles == meta["num_files"], f"v{v}: delta-rs sees {nfiles} files, silt {meta['num_files']}"
        assert dt.metadata().partition_columns == meta["partition_columns"]
        for app, ver in (meta.get("txns") or {}).items():
            assert dt.transaction_version(app) == ver, f"v{v}: txn {app}"
