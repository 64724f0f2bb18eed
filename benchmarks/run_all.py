"""Run every benchmark in its quick form; each writes benchmarks/results/<name>.md + .json.

Usage: ``python benchmarks/run_all.py [--full]``. The full forms (``--full``) take long on a
2-core CPU (the experiment alone is up to an hour); see each script's ``--help``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_gridding.py", "bench_training.py", "bench_epochs.py", "bench_inference.py",
           "trust_figure.py"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--full", action="store_true", help="full sizes, plus the cpu experiment")
    args = p.parse_args()
    failed = []
    runs = [[s] + ([] if args.full or s == "trust_figure.py" else ["--quick"]) for s in SCRIPTS]
    if args.full:
        runs.append(["experiment.py", "--profile", "cpu"])
    for cmd in runs:
        t0 = time.perf_counter()
        print(f"== {' '.join(cmd)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        print(f"== {cmd[0]}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(cmd[0])
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
