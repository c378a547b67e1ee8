"""``rmtlib analyze MODEL``: per-layer MP table of a model, as CSV and optional figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from rmtlib.cli.args import check_input_file, check_output_dir, check_output_file, write_csv_atomic
from rmtlib.nn.models import create_model
from rmtlib.plots.spectra import plot_depth_summary, plot_esd_grid, save_figure
from rmtlib.spectral.analyze import analyze, layer_fits
from rmtlib.theory.tracy_widom import EDGE_CENTRINGS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="fit the Marchenko-Pastur law to every layer of a model")
    p.add_argument("model", help="timm model name or project model (mnist_vit, fc:784-256-10)")
    p.add_argument("--checkpoint", help="local weights (safetensors or torch state dict)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--split-qkv", action="store_true", help="analyse a fused qkv as three matrices")
    p.add_argument("--alpha", type=float, default=0.25, help="BEMA trimming fraction (default 0.25)")
    p.add_argument("--beta", type=float, default=0.8, help="Tracy-Widom level: edge at TW1 quantile 1-beta")
    p.add_argument(
        "--edge-centring",
        choices=EDGE_CENTRINGS,
        default="paper",
        help="finite-size centring of the edge: paper (default), johnstone or ma (their false-alarm "
        "rate is close to beta at small sizes; see chapter 1)",
    )
    p.add_argument("--out", help="write the table as CSV here")
    p.add_argument("--plots", help="folder for figures (ESD grid, depth summary)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    check_output_dir(args.plots, "--plots")
    if not args.checkpoint:  # the same random network, and so the same table, on every run
        torch.manual_seed(0)
        print(f"note: no --checkpoint, so {args.model} is randomly initialised (seed 0)", file=sys.stderr)
    model = create_model(args.model, checkpoint=args.checkpoint)
    table = analyze(
        model,
        device=args.device,
        split_qkv=args.split_qkv,
        alpha=args.alpha,
        beta=args.beta,
        edge_centring=args.edge_centring,
        progress=not args.quiet,
    )
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
        print(table.drop(columns=["block"]).to_string(index=False))
    ok = table["status"] == "ok"
    print(
        f"\n{len(table)} matrices, {int(ok.sum())} fitted; mean gamma {table.loc[ok, 'gamma'].mean():.3f}, "
        f"spikes {int(table['n_spikes'].sum())}"
    )
    if args.out:
        write_csv_atomic(table, args.out)
        print(f"table written to {args.out}")
    if args.plots:
        fits = [
            (name, fit)
            for name, _, _, fit, status in layer_fits(
                model,
                device=args.device,
                split_qkv=args.split_qkv,
                alpha=args.alpha,
                beta=args.beta,
                edge_centring=args.edge_centring,
                progress=False,
            )
            if status == "ok"
        ]
        save_figure(plot_esd_grid(fits), Path(args.plots) / "esd_grid.png")
        save_figure(plot_depth_summary(table), Path(args.plots) / "depth_summary.png")
        print(f"figures written to {args.plots}")
    return 0
