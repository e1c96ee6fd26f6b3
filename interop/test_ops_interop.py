"""silt's MERGE, OPTIMIZE, Z-ORDER and VACUUM, read by delta-rs and Spark.

The tables come from `go run ./internal/delta/ops/cmd/opsfixtures`, which
also records what silt reads at every version (expected/<table>/v<N>) and
the operation of every commit (ops.json). Both engines must read the same
rows and schema at each version, see the same history (versions and
operations), see OPTIMIZE's actions as data-neutral, and, after silt's
VACUUM, find nothing left to vacuum and no file the table needs missing.
"""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, deltars_read, diff_rows, go_binary, read_expectation, schema_shape, spark_read

TABLES = ["ops_merge", "ops_optimize", "ops_zorder", "ops_vacuum"]


@pytest.fixture(scope="session")
def ops_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("silt-ops")
    subprocess.run([go_binary(), "run", "./internal/delta/ops/cmd/opsfixtures", "-out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def ops_manifest(ops_dir):
    return {t["name"]: t for t in json.loads((ops_dir / "ops.json").read_text())["tables"]}


def test_fixture_lists_every_table(ops_manifest):
    assert sorted(ops_manifest) == sorted(TABLES)


def _check(engine, name, v, rows, schema, meta, want):
    d = diff_rows(rows, want)
    assert not d, f"{engine} reading silt table {name} at v{v}: {d}"
    assert schema_shape(schema) == schema_shape(meta["schema"]), f"{engine}: {name} v{v}: schema differs"


@pytest.mark.parametrize("name", TABLES)
def test_deltars_reads_ops_tables(name, ops_dir, ops_manifest):
    from deltalake import DeltaTable

    t = ops_manifest[name]
    path = ops_dir / "tables" / name
    latest = DeltaTable(str(path))
    assert latest.version() == t["latest"]
    hist = sorted(latest.history(), key=lambda h: h["version"])
    assert [h["version"] for h in hist] == list(range(t["latest"] + 1))
    assert [h["operation"] for h in hist] == t["operations"]
    for v in t["versions"]:
        meta, want = read_expectation(ops_dir, name, v)
        rows, schema, nfiles, _ = deltars_read(path, v)
        _check("delta-rs", name, v, rows, schema, meta, want)
        assert nfiles == meta["num_files"], f"{name} v{v}: delta-rs sees {nfiles} files, silt {meta['num_files']}"


def test_optimize_is_data_neutral(ops_dir, ops_manifest):
    """OPTIMIZE commits carry dataChange=false on every add and remove."""
    for name in ("ops_optimize", "ops_zorder"):
        t = ops_manifest[name]
        log = ops_dir / "tables" / name / "_delta_log"
        for v, op in enumerate(t["operations"]):
            if op != "OPTIMIZE":
                continue
            for line in (log / f"{v:020d}.json").read_text().splitlines():
                a = json.loads(line)
                for kind in ("add", "remove"):
                    if kind in a:
                        assert a[kind]["dataChange"] is False, f"{name} v{v}: {kind} with dataChange=true"


def test_vacuum_left_nothing_behind(ops_dir, ops_manifest):
    """After silt's VACUUM: the deleted files are gone, every file of the
    latest version exists, and delta-rs finds nothing more to vacuum."""
    from deltalake import DeltaTable

    t = ops_manifest["ops_vacuum"]
    path = ops_dir / "tables" / "ops_vacuum"
    assert t["vacuumed"], "silt's VACUUM deleted nothing"
    for f in t["vacuumed"]:
        assert not (path / f).exists(), f"{f} still exists"
    dt = DeltaTable(str(path))
    for uri in dt.file_uris():
        assert Path(uri.removeprefix("file://")).exists(), f"{uri} is referenced but missing"
    # full=True lists the directory (the default "lite" mode only walks
    # tombstones, whose files silt already deleted).
    left = dt.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False, full=True)
    assert [f for f in left if (path / f).exists()] == [], f"delta-rs would still vacuum {left}"


@pytest.mark.parametrize("name", TABLES)
def test_spark_reads_ops_tables(name, ops_dir, ops_manifest, spark):
    from delta.tables import DeltaTable

    t = ops_manifest[name]
    path = ops_dir / "tables" / name
    hist = sorted(DeltaTable.forPath(spark, str(path)).history().collect(), key=lambda r: r.version)
    assert [r.version for r in hist] == list(range(t["latest"] + 1))
    assert [r.operation for r in hist] == t["operations"]
    for v in t["versions"]:
        meta, want = read_expectation(ops_dir, name, v)
        rows, schema = spark_read(spark, path, v)
        _check("spark", name, v, rows, schema, meta, want)
