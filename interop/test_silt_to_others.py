"""silt -> others: delta-rs and Spark read the tables silt writes.

The tables and what silt reads from each version come from
`go run ./internal/delta/interop/cmd/writefixtures` (see conftest.silt_dir).
For every table and every version both engines must read the same rows
(multiset, normalised as in conftest), the same schema (names and types),
and see the same latest version and history length.
"""

import pytest

from conftest import check_deltars_versions, compare_read, manifest_table, read_expectation, spark_read

# Must list every table the Go fixture writer produces (checked below), so a
# new fixture cannot go untested.
SILT_TABLES = [
    "appends",
    "partitioned",
    "merge_cow",
    "schema_evolution",
    "checkpointed",
    "all_types",
    "timestamp_ntz",
    "nested",
    "ancient_dates",
]

def _table(manifest, name):
    return manifest_table(manifest, name, "silt's")


def test_manifest_lists_every_table(silt_manifest):
    assert sorted(t["name"] for t in silt_manifest["tables"]) == sorted(SILT_TABLES)


def test_checkpoint_written(silt_dir, silt_manifest):
    t = _table(silt_manifest, "checkpointed")
    assert t["checkpoint"], "silt wrote no checkpoint for a table with more than 10 commits"
    log = silt_dir / "tables" / "checkpointed" / "_delta_log"
    assert (log / "00000000000000000010.checkpoint.parquet").exists()
    assert (log / "_last_checkpoint").exists()


def _compare(engine, name, version, got_rows, got_schema, meta, want_rows):
    compare_read(engine, "silt", name, version, got_rows, got_schema, meta, want_rows)


@pytest.mark.parametrize("name", SILT_TABLES)
def test_deltars_reads_silt(name, silt_dir, silt_manifest):
    from deltalake import DeltaTable

    t = _table(silt_manifest, name)
    path = silt_dir / "tables" / name
    latest = DeltaTable(str(path))
    assert latest.version() == t["latest"]
    assert len(latest.history()) == t["history"]
    check_deltars_versions(silt_dir, name, t["versions"], "silt")


@pytest.mark.parametrize("name", SILT_TABLES)
def test_spark_reads_silt(name, spark, silt_dir, silt_manifest):
    from delta.tables import DeltaTable

    t = _table(silt_manifest, name)
    path = silt_dir / "tables" / name
    hist = DeltaTable.forPath(spark, str(path)).history().select("version").collect()
    assert max(r.version for r in hist) == t["latest"]
    assert len(hist) == t["history"]
    for v in t["versions"]:
        meta, want = read_expectation(silt_dir, name, v)
        rows, schema = spark_read(spark, path, v)
        _compare("spark", name, v, rows, schema, meta, want)
