"""silt vs delta-rs: MERGE and OPTIMIZE on identical data, in one run.

Usage (from the repo root, after scripts/setup.sh has made .venv):
    .venv/bin/python bench/deltaops/bench.py [--rows 10000000] [--keys 100000]
        [--small-files 1000] [--work DIR] [--scenarios uniform,tail] [--repeat 3]

--scenarios none runs OPTIMIZE only (`silt bench --only delta --delta-scenarios none`).

MERGE: a target table of --rows rows (id, grp, val, note, lsn; ids ascending,
written once by delta-rs with 128 MiB files) is copied twice; a source of
--keys distinct keys (80% updates of existing ids, 10% inserts of new ids,
10% deletes) is applied by delta-rs's merge (when_matched_delete /
when_matched_update / when_not_matched_insert) to one copy and by silt
(bench/deltaops merge, ops.Merge) to the other. "uniform" draws the keys from
the whole id range; "tail" from the newest 1% of ids (a CDC workload's hot
rows), where min/max pruning can skip files.

OPTIMIZE: a table of --small-files small files (written by silt) is copied
twice and compacted by delta-rs's optimize.compact and by silt's
ops.Optimize, both with a 128 MiB target.

Each engine runs in its own process: wall time of the operation (including
reading the source and the commit) and peak RSS (VmHWM of each process) are
printed, and the two results are checked to hold the same rows.

Same work on both sides: both write zstd level 3 (silt's default codec;
delta-rs's merge defaults to snappy and its optimize to zstd level 4, so
delta-rs is given WriterProperties(compression="ZSTD", compression_level=3)),
and neither fsyncs (delta-rs's local object store does not by default, so
silt's local store runs with DELTAOPS_NOSYNC=1).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_SIZE = 128 << 20
ZSTD_LEVEL = 3


def writer_properties():
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD", compression_level=ZSTD_LEVEL)


def peak_mb():
    # VmHWM, as the Go side reports: ru_maxrss of a forked child starts at
    # the parent's high-water mark on Linux.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------ subprocess modes


def rs_merge(table, source):
    from deltalake import DeltaTable

    t0, c0 = time.perf_counter(), cpu_s()
    src = DeltaTable(source).to_pyarrow_table()
    dt = DeltaTable(table)
    cols = ["id", "grp", "val", "note", "lsn"]
    sets = {c: f"s.{c}" for c in cols}
    metrics = (
        dt.merge(src, predicate="t.id = s.id", source_alias="s", target_alias="t",
                 writer_properties=writer_properties())
        .when_matched_delete(predicate="s.op = 'D'")
        .when_matched_update(updates=sets, predicate="s.op <> 'D'")
        .when_not_matched_insert(updates=sets, predicate="s.op <> 'D'")
        .execute()
    )
    secs = time.perf_counter() - t0
    print(json.dumps({"op": "merge", "seconds": secs, "cpu_seconds": cpu_s() - c0, "peak_rss_mb": peak_mb(),
                      "files_added": metrics.get("num_target_files_added"),
                      "files_removed": metrics.get("num_target_files_removed"),
                      "files_scanned": metrics.get("num_target_files_scanned"),
                      "files_skipped": metrics.get("num_target_files_skipped_during_scan"),
                      "rows_copied": metrics.get("num_target_rows_copied")}))


def rs_optimize(table):
    from deltalake import DeltaTable

    t0, c0 = time.perf_counter(), cpu_s()
    m = DeltaTable(table).optimize.compact(target_size=TARGET_SIZE, writer_properties=writer_properties())
    secs = time.perf_counter() - t0
    print(json.dumps({"op": "optimize", "seconds": secs, "cpu_seconds": cpu_s() - c0, "peak_rss_mb": peak_mb(),
                      "files_removed": m.get("numFilesRemoved"), "files_added": m.get("numFilesAdded")}))


# ------------------------------------------------------------ orchestration


def run_json(cmd):
    env = dict(os.environ, DELTAOPS_NOSYNC="1")
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_target(path, rows):
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    ids = pa.array(range(rows), pa.int64())
    notes = pa.array([f"note-{i}" for i in range(1000)]).take(pc.remainder(ids, 1000))
    tbl = pa.table({"id": ids, "grp": pc.cast(pc.remainder(ids, 100), pa.int32()), "val": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
                    "note": notes, "lsn": pa.array([1] * rows, pa.int64())})
    write_deltalake(str(path), tbl, target_file_size=TARGET_SIZE)


def make_source(path, rows, keys, scenario, seed=42):
    import random

    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    rng = random.Random(seed)
    lo = 0 if scenario == "uniform" else rows - rows // 100
    n_ins = keys // 10
    n_del = keys // 10
    existing = rng.sample(range(lo, rows), keys - n_ins)
    dels, upd = existing[:n_del], existing[n_del:]
    ins = list(range(rows, rows + n_ins))
    ids = pa.array(upd + ins + dels, pa.int64())
    ops = ["U"] * (len(upd) + len(ins)) + ["D"] * len(dels)
    tbl = pa.table({"id": ids, "grp": pc.cast(pc.remainder(ids, 100), pa.int32()),
                    "val": pc.add(pc.multiply(pc.cast(ids, pa.float64()), 0.25), 1.0),
                    "note": pa.array([f"changed-{i % 977}" for i in ids.to_pylist()]),
                    "lsn": pa.array([2] * len(ops), pa.int64()), "op": ops})
    write_deltalake(str(path), tbl)
    return len(upd), len(ins), len(dels)


def summary(path):
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    t = DeltaTable(str(path)).to_pyarrow_table()
    return {"rows": t.num_rows, "sum_id": pc.sum(t["id"]).as_py(), "sum_val": round(pc.sum(t["val"]).as_py(), 3),
            "sum_lsn": pc.sum(t["lsn"]).as_py(), "notes": pc.count_distinct(t["note"]).as_py()}


def live_mb(path):
    """MiB of the data files in the table's latest version."""
    from deltalake import DeltaTable

    from urllib.parse import unquote, urlparse

    uris = DeltaTable(str(path)).file_uris()
    return sum(Path(unquote(urlparse(u).path) if "://" in u else u).stat().st_size for u in uris) / (1 << 20)


def repeated(n, fresh, run_silt, run_rs, check):
    """Runs both engines n times on fresh copies, alternating which goes
    first (the machine's load drifts), and returns each engine's median run
    by time, with every run's seconds in "runs" and the highest peak RSS."""
    silt_runs, rs_runs = [], []
    for i in range(n):
        fresh()
        if i % 2 == 0:
            rs_runs.append(run_rs())
            silt_runs.append(run_silt())
        else:
            silt_runs.append(run_silt())
            rs_runs.append(run_rs())
        check(i == 0)

    def median(runs):
        m = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])
        m["runs"] = [round(r["seconds"], 3) for r in runs]
        m["cpu_runs"] = [round(r["cpu_seconds"], 3) for r in runs]
        m["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        return m

    return median(silt_runs), median(rs_runs)


def fmt_runs(r):
    return "/".join(f"{x:.2f}" for x in r["runs"]) + " s (CPU " + "/".join(f"{x:.2f}" for x in r["cpu_runs"]) + " s)"


def row(name, silt, rs):
    ratio = rs["seconds"] / silt["seconds"] if silt["seconds"] else float("inf")
    cpu = rs["cpu_seconds"] / silt["cpu_seconds"] if silt["cpu_seconds"] else float("inf")
    print(f"{name:<28} silt {silt['seconds']:8.2f} s  peak {silt['peak_rss_mb']:7.0f} MiB | "
          f"delta-rs {rs['seconds']:8.2f} s  peak {rs['peak_rss_mb']:7.0f} MiB | "
          f"delta-rs/silt time {ratio:5.2f}x, CPU {cpu:5.2f}x")
    return ratio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--small-files", type=int, default=1000)
    ap.add_argument("--small-rows", type=int, default=1000)
    ap.add_argument("--scenarios", default="uniform,tail")
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench-deltaops"))
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine and operation; the median is reported")
    ap.add_argument("--json", default="", help="also write the results as JSON to this file")
    a = ap.parse_args()

    import deltalake

    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    binary = work / "deltaops"
    subprocess.run(["go", "build", "-o", str(binary), "./bench/deltaops"], cwd=REPO, check=True)
    py = sys.executable
    print(f"deltalake {deltalake.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; target table {a.rows:,} rows, "
          f"{a.keys:,} changed keys (80% updates, 10% inserts, 10% deletes); median of {a.repeat} runs per engine")

    scenarios = [s for s in a.scenarios.split(",") if s and s != "none"]
    base = work / "target"
    if scenarios:
        t0 = time.perf_counter()
        make_target(base, a.rows)
        nfiles = len(deltalake.DeltaTable(str(base)).file_uris())
        print(f"target written by delta-rs in {time.perf_counter() - t0:.1f} s: {nfiles} files")

    results = []
    for sc in scenarios:
        src = work / f"source-{sc}"
        upd, ins, dels = make_source(src, a.rows, a.keys, sc)
        silt_t, rs_t = work / f"silt-{sc}", work / f"rs-{sc}"

        def fresh():
            for d in (silt_t, rs_t):
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(base, d)

        def check(first):
            if first:
                s1, s2 = summary(silt_t), summary(rs_t)
                if s1 != s2:
                    sys.exit(f"MERGE results differ ({sc}): silt {s1} delta-rs {s2}")
                print(f"MERGE {sc}: {upd} updates, {ins} inserts, {dels} deletes; both engines: {s1['rows']:,} rows, same sums")

        silt, rs = repeated(a.repeat, fresh,
                            lambda: run_json([str(binary), "merge", "-table", str(silt_t), "-source", str(src)]),
                            lambda: run_json([py, __file__, "_rs_merge", str(rs_t), str(src)]), check)
        print(f"  silt: files candidate {silt['files_candidate']}/{silt['files_total']}, rewritten {silt['files_rewritten']}, "
              f"added {silt['files_added']}, rows copied {silt['rows_copied']:,}; runs {fmt_runs(silt)}")
        print(f"  delta-rs: files scanned {rs['files_scanned']}, skipped {rs['files_skipped']}, removed {rs['files_removed']}, "
              f"added {rs['files_added']}, rows copied {rs['rows_copied']}; runs {fmt_runs(rs)}")
        results.append((f"MERGE ({sc} keys)", silt, rs, {"scenario": sc, "rows": a.rows, "keys": a.keys,
                                                         "updates": upd, "inserts": ins, "deletes": dels}))
        shutil.rmtree(silt_t)
        shutil.rmtree(rs_t)

    small = work / "small"
    prep = run_json([str(binary), "small", "-table", str(small), "-files", str(a.small_files), "-rows", str(a.small_rows)])
    silt_o, rs_o = work / "silt-small", work / "rs-small"

    def fresh_small():
        for d in (silt_o, rs_o):
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(small, d)

    def check_small(first):
        if first:
            s1, s2 = summary(silt_o), summary(rs_o)
            if s1 != s2:
                sys.exit(f"OPTIMIZE results differ: silt {s1} delta-rs {s2}")

    silt, rs = repeated(a.repeat, fresh_small,
                        lambda: run_json([str(binary), "optimize", "-table", str(silt_o), "-target", str(TARGET_SIZE)]),
                        lambda: run_json([py, __file__, "_rs_optimize", str(rs_o)]), check_small)
    print(f"OPTIMIZE: {prep['files']} files of {a.small_rows} rows; silt {silt['files_removed']} -> {silt['files_added']} files, "
          f"delta-rs {rs['files_removed']} -> {rs['files_added']} files; same rows; silt runs {fmt_runs(silt)}, delta-rs runs {fmt_runs(rs)}")
    # Both write zstd level 3; encodings are each engine's own (silt: e.g.
    # DELTA_BINARY_PACKED for columns ascending in runs, see DESIGN.md).
    print(f"OPTIMIZE output (last run): silt {live_mb(silt_o):.2f} MiB, delta-rs {live_mb(rs_o):.2f} MiB")
    results.append((f"OPTIMIZE ({prep['files']} files)", silt, rs, {"files": prep["files"], "rows": prep["rows"]}))

    print(f"\nload average now {os.getloadavg()[0]:.1f}")
    for name, s, r, _ in results:
        row(name, s, r)
    if a.json:
        out = {"deltalake": deltalake.__version__, "cpus": os.cpu_count(), "repeat": a.repeat,
               "results": [{"name": n, "silt": s, "delta_rs": r, "size": z,
                            "time_ratio_delta_rs_over_silt": r["seconds"] / s["seconds"] if s["seconds"] else None}
                           for n, s, r, z in results]}
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_rs_merge":
        rs_merge(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_rs_optimize":
        rs_optimize(sys.argv[2])
    else:
        main()
