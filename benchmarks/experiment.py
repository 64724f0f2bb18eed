"""The paper's Table 6 with classical baselines (issue 7); same code as ``geochem-sr experiment``.

Usage::

    python benchmarks/experiment.py --profile cpu            # about an hour on 2 CPU cores
    python benchmarks/experiment.py --profile gpu --resume   # the paper's 1000 epochs

Writes ``benchmarks/results/experiment-<profile>.md``, ``.json`` and ``.png``.
``--resume`` keeps finished rows in ``<out>/.experiment-<profile>-cache`` and reuses them
when the command is run again with the same settings (for time-limited machines).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geochem_sr.experiment import PROFILES, run_experiment


def main(argv: list[str] | None = None) -> int:
    """Run one profile and print the results file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    md = run_experiment(profile=args.profile, out_dir=Path(args.out), seed=args.seed,
                        resume=args.resume)
    print(md.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
