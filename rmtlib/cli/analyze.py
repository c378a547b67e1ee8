"""``rmtlib analyze MODEL``: per-layer MP table of a model, as CSV and optional figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from rmtlib.atomic import write_or_rescue
from rmtlib.cli.args import (
    DEVICE,
    FIT,
    OUTPUT,
    add_command,
    build_model,
    check_input_file,
    check_io,
    check_output_dir,
    check_output_file,
    fit_config_from_args,
    model_inputs,
    write_csv_atomic,
)
from rmtlib.plots.spectra import plot_depth_summary, plot_esd_grid, save_figure
from rmtlib.runtime import get_device
from rmtlib.spectral.analyze import fits_table, layer_fits
from rmtlib.spectral.fit import POOR_FIT_MU

FIGURES = ("esd_grid.png", "depth_summary.png")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "analyze", "fit the Marchenko-Pastur law to every layer of a model", [DEVICE, FIT, OUTPUT])
    p.add_argument("model", help="timm model name or project model (mnist_vit: the committed MNIST ViT, fc:784-256-10)")
    p.add_argument("--checkpoint", help="local weights (safetensors or torch state dict)")
    p.add_argument("--split-qkv", action="store_true", help="analyse a fused qkv as three matrices")
    p.add_argument("--out", help="write the table as CSV here")
    p.add_argument("--plots", help="folder for figures (esd_grid.png, depth_summary.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    check_output_dir(args.plots, "--plots")
    figures = [(str(Path(args.plots) / name), f"--plots' {name}") for name in FIGURES] if args.plots else []
    # the same name means the same model in every command: mnist_vit is the committed, trained one
    pretrained = args.model == "mnist_vit" and not args.checkpoint
    check_io(
        model_inputs(args.model, args.checkpoint, pretrained), [(args.out, "--out"), *figures], overwrite=args.overwrite
    )
    device = get_device(args.device)
    if not args.checkpoint and not pretrained:  # the same random network, and so the same table, on every run
        torch.manual_seed(0)
        print(f"note: no --checkpoint, so {args.model} is randomly initialised (seed 0)", file=sys.stderr)
    model = build_model(args.model, args.checkpoint, pretrained=pretrained)
    settings = dict(device=device, split_qkv=args.split_qkv, fit_config=fit_config_from_args(args))
    fits = layer_fits(model, progress=not args.quiet, **settings)  # once: the table and the plots share them
    table = fits_table(fits)
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
        print(table.drop(columns=["block"]).to_string(index=False))
    ok = table["status"] == "ok"
    print(
        f"\n{len(table)} matrices, {int(ok.sum())} fitted; mean gamma {table.loc[ok, 'gamma'].mean():.3f}, "
        f"spikes {int(table['n_spikes'].sum())}"
    )
    poor = table.loc[table["poor_fit"], "layer"].tolist()
    if poor:
        print(
            f"poor fits (mu above max({POOR_FIT_MU}, 4/p): the bulk does not look like MP, so gamma and the "
            f"edge mean little): {', '.join(poor)}"
        )
    if args.out:
        write_or_rescue(lambda path: write_csv_atomic(table, path), args.out, "--out")
        print(f"table written to {args.out}")
    if args.plots:
        fitted = [(name, fit) for name, _, _, fit, status in fits if status == "ok"]
        source = args.checkpoint or ("committed weights" if pretrained else "random init, seed 0")
        title = f"{args.model} ({source})"
        for figure, name in (
            (plot_esd_grid(fitted, title=title), FIGURES[0]),
            (plot_depth_summary(table, title=title), FIGURES[1]),
        ):
            save_figure(figure, Path(args.plots) / name)
            plt.close(figure)
        print(f"figures written to {args.plots}")
    return 0
