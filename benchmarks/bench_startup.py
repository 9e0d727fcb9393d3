"""Issue 12 item 3: `pairsift --help`, `--version` and argument errors answer at once (<= 0.5 s
quiet); `info` and `subsets` cost little more than the store library's own import.

    python benchmarks/bench_startup.py [--repeat 7] [--compare-tree /path/to/other/checkout]

Every command runs in a fresh interpreter (`python -m pairsift.cli ...`, what the console script
does), --repeat times; the table shows the median and best wall time and the median CPU time of
the child. Baselines in the same run:

- `python -c pass`: the interpreter's own start, the floor of anything;
- `python -c "import lancedb"`: the floor of any command that opens a store;
- with --compare-tree, the same pairsift commands from another checkout (e.g. the commit before
  this change), run with that tree as the working directory and first on PYTHONPATH.

The store for `info` / `subsets` (the bundled HH sample, its pair features and one subset) is
built once before timing, with the library, in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_store(root: Path) -> str:
    """The sample store for `info` / `subsets`, built with the library of this checkout."""
    code = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from pairsift import open_store
from pairsift.demo import sample_path
from pairsift.features.pairs import build_pairs
from pairsift.ingest.pipeline import ingest
from pairsift.select.subsets import select
store = open_store({str(root / "store")!r})
ingest(store, sample_path())
build_pairs(store)
select(store, "random-half", "r")
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return str(root / "store")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], repeat: int) -> dict[str, float]:
    """Median/best wall seconds and median child CPU seconds of `cmd`, `repeat` fresh runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if proc.returncode not in (0, 2):  # 2: the argument-error case, on purpose
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"median_s": statistics.median(walls), "best_s": min(walls), "cpu_s": statistics.median(cpus)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--compare-tree", type=Path, default=None,
                    help="another pairsift checkout to time the same commands from (the 'before').")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="pairsift-startup-") as tmp:
        store = build_store(Path(tmp))
        commands = {
            "--help": ["--help"],
            "--version": ["--version"],
            "argument error (select nope)": ["select", "nope", "--name", "x"],
            "info": ["info", "--store", store],
            "subsets": ["subsets", "--store", store],
        }
        trees = {"ours": REPO}
        if args.compare_tree:
            trees["compare"] = args.compare_tree.resolve()
        load_before = os.getloadavg()
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        rows = {
            ("floor", "python -c pass"): timed([py, "-c", "pass"], REPO, base_env, args.repeat),
            ("floor", "python -c 'import lancedb'"): timed([py, "-c", "import lancedb"], REPO, base_env, args.repeat),
        }
        # Interleave trees per command so that a load change hits both sides alike.
        for label, cli_args in commands.items():
            for tree_name, tree in trees.items():
                env = {**base_env, "PYTHONPATH": str(tree)}
                rows[(tree_name, f"pairsift {label}")] = timed([py, "-m", "pairsift.cli", *cli_args], tree, env,
                                                               args.repeat)
        load_after = os.getloadavg()

    lancedb = rows[("floor", "python -c 'import lancedb'")]["median_s"]
    result = {
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "trees": {k: str(v) for k, v in trees.items()},
        "rows": [{"tree": t, "command": c, **r, "vs_import_lancedb": r["median_s"] / lancedb}
                 for (t, c), r in rows.items()],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f}, {os.cpu_count()} CPUs, "
          f"{args.repeat} fresh runs each")
    print(f"{'tree':<8} {'command':<40} {'median s':>9} {'best s':>8} {'CPU s':>7} {'/ import lancedb':>17}")
    for row in result["rows"]:
        print(f"{row['tree']:<8} {row['command']:<40} {row['median_s']:>9.3f} {row['best_s']:>8.3f} "
              f"{row['cpu_s']:>7.3f} {row['vs_import_lancedb']:>16.2f}x")
    if "compare" in trees:
        print("\nours / compare (median):")
        for label in commands:
            ours = rows[("ours", f"pairsift {label}")]["median_s"]
            other = rows[("compare", f"pairsift {label}")]["median_s"]
            print(f"  pairsift {label:<38} {ours / other:6.2f}x  ({other / ours:.1f}x faster)")


if __name__ == "__main__":
    main()
