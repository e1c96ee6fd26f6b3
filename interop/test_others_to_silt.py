"""others -> silt: silt reads tables written by delta-rs and Spark.

A session fixture writes every table below into one fixture directory (same
layout as silt's: manifest.json, tables/<name>/, expected/<name>/v<N>.*), with
what the writing engine itself reads at each version. Then
`go test ./internal/delta/interop -run TestReadForeign -args -foreign DIR`
reads each table with silt and compares; each Go subtest is reported here as
one pytest case. Tables using a feature silt does not implement must be
refused naming it (expect_error: reading; expect_write_error: writing).
"""

import datetime as dt
import decimal
import json
import math
import subprocess
import traceback
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import REPO, deltars_read, go_binary, spark_read, write_expectation

WRITERS = {}  # name -> (engine, fn(path, spark) -> dict of manifest extras)


def writer(name, engine, **extra):
    def register(fn):
        WRITERS[name] = (engine, fn, extra)
        return fn
    return register


# ---------------------------------------------------------------- delta-rs


def _pa_rows(schema, rows):
    return pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)


@writer("rs_append_overwrite", "delta-rs")
def _(path, spark):
    from deltalake import write_deltalake

    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
    write_deltalake(path, _pa_rows(schema, [(1, "a", 1.0), (2, "b", None)]))
    write_deltalake(path, _pa_rows(schema, [(3, "c", -0.0), (4, None, math.inf)]), mode="append")
    write_deltalake(path, _pa_rows(schema, [(10, "over", 10.0)]), mode="overwrite")
    write_deltalake(path, _pa_rows(schema, [(11, "after", math.nan)]), mode="append")


SPECIAL = ["plain", "with space", "a/b", "100%", "k=v", "ünïcødé", "日本語", "#?&:*", "%20x", None]


@writer("rs_partitioned", "delta-rs")
def _(path, spark):
    from deltalake import write_deltalake

    schema = pa.schema([("id", pa.int64()), ("p_str", pa.string()), ("p_int", pa.int32()),
                        ("p_date", pa.date32()), ("v", pa.string())])
    ints = [1, -5, 2147483647, None]
    dates = [dt.date(2024, 2, 29), dt.date(1970, 1, 1), None]
    rows = [(i, s, ints[i % 4], dates[i % 3], f"v{i}") for i, s in enumerate(SPECIAL)]
    write_deltalake(path, _pa_rows(schema, rows[:5]), partition_by=["p_str", "p_int", "p_date"])
    write_deltalake(path, _pa_rows(schema, rows[5:]), mode="append")


@writer("rs_merge", "delta-rs")
def _(path, spark):
    from deltalake import DeltaTable, write_deltalake

    schema = pa.schema([("id", pa.int64()), ("v", pa.string()), ("n", pa.int32())])
    write_deltalake(path, _pa_rows(schema, [(1, "a", 1), (2, "b", 2), (3, "c", 3), (4, "d", 4)]))
    src = _pa_rows(schema, [(2, "b2", 20), (5, "e", 5)])
    (DeltaTable(path).merge(src, predicate="t.id = s.id", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())
    DeltaTable(path).delete("id = 3")


@writer("rs_optimize_checkpoint", "delta-rs", checkpoint=True)
def _(path, spark):
    from deltalake import DeltaTable, write_deltalake

    schema = pa.schema([("id", pa.int64()), ("batch", pa.int32())])
    for b in range(5):
        write_deltalake(path, _pa_rows(schema, [(b * 10 + 1, b), (b * 10 + 2, b)]), mode="append")
    DeltaTable(path).optimize.compact()
    DeltaTable(path).create_checkpoint()
    write_deltalake(path, _pa_rows(schema, [(99, 99)]), mode="append")


@writer("rs_schema_evolution", "delta-rs")
def _(path, spark):
    from deltalake import write_deltalake

    s1 = pa.schema([("id", pa.int64()), ("a", pa.string())])
    write_deltalake(path, _pa_rows(s1, [(1, "x"), (2, None)]))
    s2 = pa.schema([("id", pa.int64()), ("a", pa.string()), ("b", pa.int32()),
                    ("s", pa.struct([("x", pa.int64()), ("y", pa.string())]))])
    write_deltalake(path, _pa_rows(s2, [(3, "y", 30, {"x": 1, "y": "one"}), (4, None, None, None)]),
                    mode="append", schema_mode="merge")


ALL_TYPES = pa.schema([
    ("row", pa.int32()), ("str", pa.string()), ("long", pa.int64()), ("int", pa.int32()),
    ("short", pa.int16()), ("byte", pa.int8()), ("float", pa.float32()), ("double", pa.float64()),
    ("bool", pa.bool_()), ("bin", pa.binary()), ("dec9_2", pa.decimal128(9, 2)),
    ("dec38_10", pa.decimal128(38, 10)), ("dec38_0", pa.decimal128(38, 0)), ("date", pa.date32()),
    ("ts", pa.timestamp("us", tz="UTC")),
])
D = decimal.Decimal
UTC = dt.timezone.utc
ALL_TYPES_ROWS = [
    (1, "hello", 42, -7, 300, -3, 1.5, 2.75, True, b"abc", D("1234.56"),
     D("1234567890123456789012345678.0123456789"), D("12345678901234567890"), dt.date(2024, 2, 29),
     dt.datetime(2024, 2, 29, 0, 0, 0, 123456, tzinfo=UTC)),
    (2, "", -2**63, -2**31, -2**15, -2**7, -math.inf, -math.inf, False, b"", D("-9999999.99"),
     D("-9999999999999999999999999999.9999999999"), D("-" + "9" * 38), dt.date(1900, 1, 1),
     dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (3, "ünïcødé 日本語 🚀 \"q\" <t> & \\", 2**63 - 1, 2**31 - 1, 2**15 - 1, 2**7 - 1, math.nan, math.nan, True,
     b"\x00\xff", D("9999999.99"), D("9999999999999999999999999999.9999999999"), D("9" * 38),
     dt.date(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (4, "zero", 0, 0, 0, 0, -0.0, -0.0, False, b"\x00", D("0.00"), D("0E-10"), D("0"), dt.date(1970, 1, 1),
     dt.datetime(1970, 1, 1, tzinfo=UTC)),
    (5, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
]


@writer("rs_all_types", "delta-rs")
def _(path, spark):
    from deltalake import write_deltalake

    write_deltalake(path, _pa_rows(ALL_TYPES, ALL_TYPES_ROWS))


@writer("rs_nested_ntz", "delta-rs")
def _(path, spark):
    from deltalake import write_deltalake

    schema = pa.schema([
        ("id", pa.int64()),
        ("st", pa.struct([("a", pa.int32()), ("b", pa.string())])),
        ("arr", pa.list_(pa.int32())),
        ("m", pa.map_(pa.string(), pa.int64())),
        ("ntz", pa.timestamp("us")),
    ])
    rows = [
        (1, {"a": 1, "b": "one"}, [1, None, 3], [("b", 2), ("a", None)], dt.datetime(2024, 2, 29, 12, 0, 0, 1)),
        (2, None, [], [], None),
        (3, {"a": None, "b": None}, None, None, dt.datetime(1969, 12, 31, 23, 59, 59, 999999)),
    ]
    write_deltalake(path, _pa_rows(schema, rows))


# ---------------------------------------------------------------- Spark


def _sql(spark, stmt):
    spark.sql(stmt).collect()


SPARK_ALL_TYPES_DDL = ("row INT, str STRING, long BIGINT, int INT, short SMALLINT, byte TINYINT, float FLOAT, "
                       "double DOUBLE, bool BOOLEAN, bin BINARY, dec9_2 DECIMAL(9,2), dec38_10 DECIMAL(38,10), "
                       "dec38_0 DECIMAL(38,0), date DATE, ts TIMESTAMP")


@writer("spark_append", "spark")
def _(path, spark):
    for rows in ([(1, "a", 1.0), (2, "b", None)], [(3, None, -0.0)], [(4, "d", float("inf"))]):
        spark.createDataFrame(rows, "id BIGINT, name STRING, score DOUBLE").write.format("delta").mode("append").save(path)


@writer("spark_partitioned", "spark")
def _(path, spark):
    ints = [1, -5, 2147483647, None]
    dates = [dt.date(2024, 2, 29), dt.date(1970, 1, 1), None]
    rows = [(i, s, ints[i % 4], dates[i % 3], f"v{i}") for i, s in enumerate(SPECIAL)]
    df = spark.createDataFrame(rows, "id BIGINT, p_str STRING, p_int INT, p_date DATE, v STRING")
    df.write.format("delta").partitionBy("p_str", "p_int", "p_date").save(path)
    spark.createDataFrame([(100, "plain", 1, dt.date(2024, 2, 29), "again")], df.schema) \
        .write.format("delta").mode("append").save(path)


@writer("spark_merge", "spark")
def _(path, spark):
    spark.createDataFrame([(1, "a", 1), (2, "b", 2), (3, "c", 3), (4, "d", 4)], "id BIGINT, v STRING, n INT") \
        .write.format("delta").save(path)
    spark.createDataFrame([(2, "b2", 20), (3, None, None), (5, "e", 5)], "id BIGINT, v STRING, n INT") \
        .createOrReplaceTempView("merge_src")
    _sql(spark, f"""MERGE INTO delta.`{path}` t USING merge_src s ON t.id = s.id
        WHEN MATCHED AND s.v IS NULL THEN DELETE
        WHEN MATCHED THEN UPDATE SET *
        WHEN NOT MATCHED THEN INSERT *""")


@writer("spark_all_types", "spark")
def _(path, spark):
    # Spark writes TIMESTAMP as INT96, 9999-12-31 included (row 3).
    spark.createDataFrame(ALL_TYPES_ROWS, SPARK_ALL_TYPES_DDL).write.format("delta").save(path)


@writer("spark_timestamp_extremes", "spark")
def _(path, spark):
    rows = [(1, dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
            (2, dt.datetime(1, 1, 1, tzinfo=UTC)),
            (3, dt.datetime(2024, 2, 29, 0, 0, 0, 123456, tzinfo=UTC))]
    spark.createDataFrame(rows, "id INT, ts TIMESTAMP").write.format("delta").save(path)


@writer("spark_nested", "spark")
def _(path, spark):
    ddl = "id BIGINT, st STRUCT<a: INT, b: STRING>, arr ARRAY<INT>, m MAP<STRING, BIGINT>, ntz TIMESTAMP_NTZ"
    rows = [
        (1, (1, "one"), [1, None, 3], {"b": 2, "a": None}, dt.datetime(2024, 2, 29, 12, 0, 0, 1)),
        (2, None, [], {}, None),
    ]
    spark.createDataFrame(rows, ddl).write.format("delta").save(path)


@writer("spark_deletion_vectors", "spark", expect_write_error="deletionVectors")
def _(path, spark):
    _sql(spark, f"CREATE TABLE delta.`{path}` (id BIGINT, v STRING) USING delta "
                "TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.range(0, 50).selectExpr("id", "cast(id AS STRING) AS v").coalesce(1) \
        .write.format("delta").mode("append").save(path)
    _sql(spark, f"DELETE FROM delta.`{path}` WHERE id % 3 = 0")
    _sql(spark, f"UPDATE delta.`{path}` SET v = 'updated' WHERE id = 10")
    _sql(spark, f"DELETE FROM delta.`{path}` WHERE id = 11")


@writer("spark_optimize_checkpoint", "spark", checkpoint=True)
def _(path, spark):
    for b in range(11):  # version 10 gets a checkpoint (delta.checkpointInterval = 10)
        spark.createDataFrame([(b * 10 + 1, b), (b * 10 + 2, b)], "id BIGINT, batch INT") \
            .write.format("delta").mode("append").save(path)
    _sql(spark, f"OPTIMIZE delta.`{path}`")


@writer("spark_column_mapping", "spark", expect_write_error="columnMapping")
def _(path, spark):
    _sql(spark, f"CREATE TABLE delta.`{path}` (id BIGINT, old_name STRING, dropped INT) USING delta "
                "TBLPROPERTIES ('delta.columnMapping.mode' = 'name')")
    _sql(spark, f"INSERT INTO delta.`{path}` VALUES (1, 'a', 10), (2, NULL, 20)")
    _sql(spark, f"ALTER TABLE delta.`{path}` RENAME COLUMN old_name TO new_name")
    _sql(spark, f"ALTER TABLE delta.`{path}` DROP COLUMN dropped")
    _sql(spark, f"INSERT INTO delta.`{path}` VALUES (3, 'c')")


# Row tracking needs domainMetadata too; silt names the first unsupported one.
@writer("spark_row_tracking", "spark", expect_write_error="rowTracking|domainMetadata")
def _(path, spark):
    _sql(spark, f"CREATE TABLE delta.`{path}` (id BIGINT, v STRING) USING delta "
                "TBLPROPERTIES ('delta.enableRowTracking' = 'true')")
    _sql(spark, f"INSERT INTO delta.`{path}` VALUES (1, 'a'), (2, 'b')")


@writer("spark_v2_checkpoint", "spark", expect_error="v2Checkpoint")
def _(path, spark):
    _sql(spark, f"CREATE TABLE delta.`{path}` (id BIGINT) USING delta "
                "TBLPROPERTIES ('delta.checkpointPolicy' = 'v2', 'delta.checkpointInterval' = '2')")
    for i in range(3):
        _sql(spark, f"INSERT INTO delta.`{path}` VALUES ({i})")


@writer("spark_type_widening", "spark", expect_error="typeWidening")
def _(path, spark):
    _sql(spark, f"CREATE TABLE delta.`{path}` (id BIGINT, n INT) USING delta "
                "TBLPROPERTIES ('delta.enableTypeWidening' = 'true')")
    _sql(spark, f"INSERT INTO delta.`{path}` VALUES (1, 1)")
    _sql(spark, f"ALTER TABLE delta.`{path}` ALTER COLUMN n TYPE BIGINT")
    _sql(spark, f"INSERT INTO delta.`{path}` VALUES (2, 9999999999)")


# ---------------------------------------------------------------- dumps and Go


def _dump(out, name, engine, path, spark):
    """What the writing engine reads at each version, in silt's expectation layout."""
    if engine == "delta-rs":
        from deltalake import DeltaTable

        t = DeltaTable(str(path))
        latest, history = t.version(), len(t.history())
        for v in range(latest + 1):
            rows, schema, nfiles, tv = deltars_read(path, v)
            write_expectation(out, name, v, schema, tv.metadata().partition_columns, rows, nfiles)
    else:
        from delta.tables import DeltaTable

        hist = DeltaTable.forPath(spark, str(path)).history().select("version").collect()
        latest, history = max(r.version for r in hist), len(hist)
        # No table here changes its partitioning, so the latest holds for all versions.
        parts = list(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0].partitionColumns)
        for v in range(latest + 1):
            rows, schema = spark_read(spark, path, v)
            write_expectation(out, name, v, schema, parts, rows)
    return {"versions": list(range(latest + 1)), "latest": latest, "history": history}


@pytest.fixture(scope="session")
def foreign_dir(spark, tmp_path_factory):
    """Writes every table of WRITERS; returns (dir, {name: writer traceback})."""
    out = tmp_path_factory.mktemp("foreign")
    manifest = {"engine": "mixed", "tables": []}
    errors = {}
    for name, (engine, fn, extra) in WRITERS.items():
        path = out / "tables" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fn(str(path), spark)
            entry = {"name": name, "engine": engine, **extra}
            entry.update(_dump(out, name, engine, path, spark))
        except Exception:
            errors[name] = traceback.format_exc()
            continue
        manifest["tables"].append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out, errors


@pytest.fixture(scope="session")
def silt_results(foreign_dir):
    """Runs TestReadForeign over the foreign tables; {subtest: (action, output)}."""
    out, _ = foreign_dir
    proc = subprocess.run(
        [go_binary(), "test", "-json", "-count=1", "-run", "^TestReadForeign$", "./internal/delta/interop",
         "-args", "-foreign", str(out)],
        cwd=REPO, capture_output=True, text=True)
    results, outputs = {}, {}
    for line in proc.stdout.splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        test = ev.get("Test")
        if not test:
            continue
        if ev.get("Action") == "output":
            outputs.setdefault(test, []).append(ev.get("Output", ""))
        elif ev.get("Action") in ("pass", "fail", "skip"):
            results[test] = ev["Action"]
    if "TestReadForeign" not in results:
        pytest.fail(f"go test did not run TestReadForeign (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return {t: (a, "".join(outputs.get(t, []))) for t, a in results.items()}


# Known silt bugs: strict xfail, so CI turns red when one is fixed. Each has a
# Go reproduction in internal/delta/interop/bugs_test.go.
KNOWN_BUGS = {}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n])) if n in KNOWN_BUGS else n
    for n in WRITERS
])
def test_silt_reads(name, foreign_dir, silt_results):
    _, errors = foreign_dir
    if name in errors:
        pytest.fail(f"{WRITERS[name][0]} could not write {name}:\n{errors[name]}")
    action, output = silt_results.get(f"TestReadForeign/{name}", ("missing", ""))
    assert action == "pass", f"silt reading {name} ({WRITERS[name][0]}): {action}\n{output}"


def test_go_run_covered_every_table(foreign_dir, silt_results):
    out, _ = foreign_dir
    names = [t["name"] for t in json.loads((Path(out) / "manifest.json").read_text())["tables"]]
    assert sorted(n for n in names if f"TestReadForeign/{n}" not in silt_results) == []
