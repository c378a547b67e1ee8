"""How well each finite-size centring of the edge matches Tracy-Widom on pure noise (not a timing).

For several shapes, draws pure-noise Gaussian matrices, standardizes their top eigenvalue with the
``paper``, ``johnstone`` and ``ma`` centrings (rmtlib.theory.tracy_widom.tw_centre_scale) and prints the
mean (TW1: -1.2065) and the false-alarm rates at beta = 0.8, 0.5, 0.1, each against its target.
Chapter 1 quotes it. Seeded: the same arguments give the same numbers (about 5 minutes on 2 cores).

    python benchmarks/tw_centring.py [--trials 3000] [--json benchmarks/results/tw_centring.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from rmtlib.experiments.spiked import noise_top_eigenvalues, tw_standardize
from rmtlib.theory.tracy_widom import EDGE_CENTRINGS, tw1_ppf

TW1_MEAN = -1.2065
BETAS = (0.8, 0.5, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="100x50,400x200,1600x800", help="comma-separated MxN")
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args()
    rows = []
    for index, shape in enumerate(args.shapes.split(",")):
        m, n = (int(v) for v in shape.split("x"))
        top = noise_top_eigenvalues(m, n, args.trials, rng=np.random.default_rng([args.seed, index]))
        for centring in EDGE_CENTRINGS:
            x = tw_standardize(top, m, n, centring)
            rows.append(
                {
                    "shape": shape,
                    "trials": args.trials,
                    "centring": centring,
                    "mean": float(x.mean()),
                    "mean_minus_tw1": float(x.mean()) - TW1_MEAN,
                    "sd": float(x.std(ddof=1)),
                    **{f"above_edge_beta_{b:g}": float(np.mean(x > tw1_ppf(1 - b))) for b in BETAS},
                }
            )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    print(
        f"TW1 mean {TW1_MEAN}; false-alarm targets {', '.join(f'{b:g}' for b in BETAS)} "
        f"(standard error of a rate over {args.trials} trials: <= {0.5 / np.sqrt(args.trials):.3f})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"trials": args.trials, "seed": args.seed, "rows": rows}, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
