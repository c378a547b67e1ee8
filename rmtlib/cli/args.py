"""Argument parsing and output helpers shared by the ``rmtlib`` sub-commands.

``KEY=VALUE`` options, sparsity levels and comma lists are parsed here once, so every command
reports bad input the same way (an :class:`~rmtlib.errors.InputError` naming the flag, exit 2),
and tables are written atomically (a crash leaves no half-written file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from matplotlib.backend_bases import FigureCanvasBase

from rmtlib.atomic import name_max, write_text_atomic
from rmtlib.errors import CheckpointError, InputError
from rmtlib.nn.checkpoints import is_checkpoint_file
from rmtlib.nn.models import MNIST_VIT_CARD, MNIST_VIT_CHECKPOINT, create_model, recorded_kwargs
from rmtlib.pruning import METHODS
from rmtlib.pruning.calibration import draw_calibration
from rmtlib.spectral.fit_config import BEMA_QUANTILES, DEFAULT_FIT_CONFIG, FitConfig, check_alpha, check_beta
from rmtlib.theory.tracy_widom import EDGE_CENTRINGS
from rmtlib.train.data import load_dataset

#: calibration images taken when ``--calibration`` gives no count (and the default for ``mnist_vit``)
CALIBRATION_COUNT = 256


def parse_value(text: str) -> Any:
    """A JSON value when ``text`` is one (``3``, ``0.1``, ``true``, ``[1, 2]``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b-c=x"]`` -> ``{"a": 1, "b_c": "x"}`` (dashes in keys become underscores)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def sparsity_level(text: str) -> float:
    """An argparse ``type``: a sparsity in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _comma_list(text: str, example: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expects at least one value, e.g. {example}")
    return parts


def sparsity_levels(text: str) -> list[float]:
    """An argparse ``type``: comma-separated sparsities in [0, 1), e.g. ``0.3,0.5,0.7``."""
    return [sparsity_level(part) for part in _comma_list(text, "0.3,0.5,0.7")]


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0 (process counts, epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seed_value(text: str) -> int:
    """An argparse ``type``: a random seed, an integer in [0, 2**32 - 1] (what numpy's seeding takes;
    -1 or 2**32 was a traceback after the model was built)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32 - 1], got {value}")
    return value


MAX_WORKERS = 4 * (os.cpu_count() or 1)


def worker_count(text: str) -> int:
    """An argparse ``type``: data-loading processes, 0 (load in the main process) to 4 per CPU core
    (:data:`MAX_WORKERS`); 99999999999 tried to start that many processes."""
    value = non_negative_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WORKERS} (4 per CPU core of this machine), got {value}")
    return value


def names(text: str) -> list[str]:
    """An argparse ``type``: a non-empty comma-separated list of names."""
    return _comma_list(text, "rmt,magnitude")


def check_input_file(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` is given but is not an existing file."""
    if path and not Path(path).is_file():
        raise InputError(
            f"{flag}: {path} is a folder, not a file" if Path(path).is_dir() else f"{flag}: no such file {path}"
        )


def _check_writable(folder: Path, path: str, flag: str) -> None:
    """The nearest existing folder must let us create entries (a read-only one fails only at the end)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: cannot write into {folder} (permission denied), so {path} cannot be written")


def check_output_file(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` cannot be a file to write (empty, a name longer than the file
    system takes, a folder, under a file, or in a folder this process may not write into)."""
    if path is None:
        return
    if not str(path).strip():
        raise InputError(f"{flag}: an empty file name; give a path, or leave {flag} out")
    target = Path(path)
    if len(target.name.encode()) > name_max(target.parent):
        raise InputError(
            f"{flag}: the file name is {len(target.name.encode())} bytes, longer than this file system takes "
            f"({name_max(target.parent)}); give a shorter one"
        )
    if target.is_dir() or str(path).endswith(os.sep):
        raise InputError(f"{flag}: {path} is a folder; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag}: {parent} is a file, so {path} cannot be written")
            _check_writable(parent, path, flag)
            break


def check_figure_file(path: str | None, flag: str) -> None:
    """:func:`check_output_file`, and a suffix matplotlib can write (``x.txt`` failed after a whole sweep)."""
    check_output_file(path, flag)
    if path is None:
        return
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise InputError(
            f"{flag}: {path} has no figure format matplotlib writes (its suffix must be one of "
            f"{', '.join('.' + f for f in sorted(formats))})"
        )


def check_output_dir(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` cannot be a folder to write into (a file, under a file, or
    not writable)."""
    if path is None:
        return
    if not str(path).strip():
        raise InputError(f"{flag}: an empty folder name; give a path, or leave {flag} out")
    target = Path(path)
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"{flag}: {folder} is a file, so {path} cannot be a folder to write into")
            _check_writable(folder, path, flag)
            return


def positive_counts(*pairs: tuple[Any, str]) -> None:
    """Each (value, flag): ``None`` or an integer >= 1, else :class:`InputError` naming the flag."""
    for value, flag in pairs:
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")


def write_csv_atomic(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` as CSV (no index), atomically (:mod:`rmtlib.atomic`)."""
    write_text_atomic(table.to_csv(index=False), path)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON (numpy scalars as floats), atomically."""
    write_text_atomic(json.dumps(obj, indent=2, default=float) + "\n", path)


def calibration_spec(text: str) -> tuple[str, int]:
    """An argparse ``type``: ``DATA[:COUNT]`` -> (dataset spec, count), e.g. ``mnist:256``,
    ``imagefolder:/data/imagenet:128``; without a count, 256 images."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.strip().isdigit():
        spec, count = head, int(tail)
    else:
        spec, count = text, CALIBRATION_COUNT
    if not spec or count < 1:
        raise argparse.ArgumentTypeError(f"expects DATA[:COUNT] with COUNT >= 1, e.g. mnist:256, got {text!r}")
    return spec, count


def default_calibration(
    given: tuple[str, int] | None, methods: Sequence[str], model_name: str, data: str | None
) -> tuple[str, int] | None:
    """The calibration set a command uses: ``--calibration`` when given; for a method that needs data,
    256 MNIST training images on ``mnist_vit`` or 256 training images of ``--data``; else none."""
    if given is not None:
        return given
    needing = [m for m in methods if m in METHODS and METHODS[m].needs_calibration]
    if not needing:
        return None
    if model_name == "mnist_vit":
        return "mnist", CALIBRATION_COUNT
    if data:
        return data, CALIBRATION_COUNT
    raise InputError(f"--calibration DATA[:COUNT] is needed by {', '.join(needing)} (e.g. --calibration mnist:256)")


def load_calibration(spec: tuple[str, int], model: torch.nn.Module, seed: int) -> torch.Tensor:
    """``count`` training images of dataset ``spec`` (all of them when it holds fewer), drawn with ``seed``
    as ``rmtlib sweep`` draws them (:func:`rmtlib.pruning.calibration.draw_calibration`), as one input tensor."""
    name, count = spec
    data = load_dataset(name, "train", model=model)
    if len(data) == 0:  # type: ignore[arg-type]
        raise InputError(f"--calibration {name}: the training split holds no samples")
    return draw_calibration(data, min(count, len(data)), seed)  # type: ignore[arg-type]


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file after resolving links (and, for existing files, hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == root or root in real.parents


def data_folder(spec: str | None) -> Path | None:
    """The local folder a ``--data`` spec reads (``fashion-mnist:DIR``, ``imagefolder:DIR``, ``DIR``), if any."""
    if not spec or spec.lower() in ("mnist", "synthetic"):  # built in, not a folder
        return None
    kind, sep, arg = spec.partition(":")
    folder = Path(arg) if sep and kind.lower() != "mnist" else Path(spec)
    return folder if folder.is_dir() else None


def check_io(
    inputs: Sequence[tuple[str | os.PathLike | None, str]],
    outputs: Sequence[tuple[str | os.PathLike | None, str]],
    *,
    overwrite: bool = False,
    data: str | None = None,
) -> None:
    """The data-loss rule of every command, before any work: no output may be one of the inputs (the
    same file after resolving links), lie inside the ``--data`` folder, or replace an existing
    checkpoint unless ``overwrite`` (``--overwrite``) asks for it; two outputs may not share a file.
    ``inputs`` and ``outputs`` are (path or None, what it is: a flag) pairs."""
    given_inputs = [(Path(path), flag) for path, flag in inputs if path]
    given_outputs = [(Path(path), flag) for path, flag in outputs if path]
    folder = data_folder(data)
    for out, flag in given_outputs:
        for source, source_flag in given_inputs:
            if _same_file(out, source):
                raise InputError(
                    f"{flag}: {out} is {source_flag} ({source}), which this command reads; writing it would "
                    "destroy the input. Give another file"
                )
        if folder is not None and _inside(out, folder):
            raise InputError(f"{flag}: {out} lies inside the --data folder {folder}; write it elsewhere")
        if not overwrite and is_checkpoint_file(out):
            raise InputError(
                f"{flag}: {out} exists and holds model weights; pass --overwrite to replace it, or give another file"
            )
    for i, (out, flag) in enumerate(given_outputs):
        for other, other_flag in given_outputs[:i]:
            if _same_file(out, other):
                raise InputError(f"{other_flag} and {flag} name the same file {out}; give each its own")


def dataset_classes(dataset: Any) -> int | None:
    """How many classes a dataset's labels index (image folders: their class folders; tensor datasets:
    the largest label + 1); None when that cannot be read without a pass over the data."""
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_classes(dataset.dataset)
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) >= 2:
        labels = dataset.tensors[1]
        if labels.numel() and not labels.is_floating_point():
            return int(labels.max()) + 1
    return None


def model_outputs(model: torch.nn.Module, dataset: Any) -> int | None:
    """The width of ``model``'s output on one sample of ``dataset`` (its number of classes)."""
    x = torch.utils.data.default_collate([dataset[0]])[0]
    param = next(model.parameters(), None)
    if param is not None and isinstance(x, torch.Tensor) and x.is_floating_point():
        x = x.to(device=param.device, dtype=param.dtype)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for module, training in modes.items():
            module.training = training
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.ndim >= 1 else None


def check_classes(model: torch.nn.Module, dataset: Any, spec: str, *, what: str = "the model") -> None:
    """Data with more classes than ``model``'s head are an InputError naming both counts (an IndexError
    after the pruning, before); a head with more outputs than the data's classes is a warning (a
    1000-class model on a two-class folder scores by folder order, likely near 0%)."""
    classes, outputs = dataset_classes(dataset), model_outputs(model, dataset)
    if classes is None or outputs is None:
        return
    if classes > outputs:
        raise InputError(
            f"--data {spec}: its labels index {classes} classes, but {what} has {outputs} outputs; "
            "give data with at most that many classes, or a model with a matching head"
        )
    if classes < outputs:
        print(
            f"warning: --data {spec} has {classes} classes and {what} {outputs} outputs; top-1 counts a "
            f"prediction right only when output i is the data's class i (class folders in sorted order)",
            file=sys.stderr,
        )


def build_model(name: str, checkpoint: str | None, *, pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
    """:func:`rmtlib.nn.models.create_model`, with an architecture that a checkpoint records but that does
    not build (a damaged or hand-edited header) reported as a CheckpointError naming the file."""
    try:
        return create_model(name, checkpoint=checkpoint, pretrained=pretrained, **kwargs)
    except InputError as err:
        if checkpoint is None or not recorded_kwargs(checkpoint, name):
            raise
        raise CheckpointError(
            f"{checkpoint}: the architecture it records ({recorded_kwargs(checkpoint, name)}) does not build "
            f"{name}{' with --set ' + str(kwargs) if kwargs else ''}: {err}"
        ) from None


def model_inputs(name: str, checkpoint: str | None, pretrained: bool) -> list[tuple[str | None, str]]:
    """The files a command reads for model ``name``: ``--checkpoint``, or the committed MNIST ViT and its card."""
    files: list[tuple[str | None, str]] = [(checkpoint, "--checkpoint")]
    if name == "mnist_vit" and checkpoint is None:
        files += [(str(MNIST_VIT_CARD), "the committed MNIST ViT's card")]
        if pretrained:
            files += [(str(MNIST_VIT_CHECKPOINT), "the committed MNIST ViT")]
    return files


# ---- argument groups shared between the commands (argparse ``parents=``), built once ----


def alpha_value(text: str) -> float:
    """An argparse ``type``: BEMA's trimming fraction, in [0, 0.5) (:data:`rmtlib.spectral.fit_config.ALPHA_RANGE`)."""
    return _checked(text, lambda v: check_alpha(v, "the value"))


def beta_value(text: str) -> float:
    """An argparse ``type``: the Tracy-Widom level (:data:`rmtlib.spectral.fit_config.BETA_RANGE`)."""
    return _checked(text, lambda v: check_beta(v, "the value"))


def min_dim_value(text: str) -> int:
    """An argparse ``type``: the smallest min(m, n) fitted, an integer >= 2 (:class:`rmtlib.FitConfig`)."""
    try:
        return FitConfig(min_dim=int(text)).min_dim
    except ValueError:  # int() of a non-integer; FitConfig's InputError is a ValueError too
        raise argparse.ArgumentTypeError(f"an integer >= 2, got {text!r}") from None


def _checked(text: str, check: Callable[[float], Any]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        check(value)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def _device_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("device")
    g.add_argument("--device", default="auto", help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N")
    return p


def _fit_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("Marchenko-Pastur fit")
    g.add_argument(
        "--alpha", type=alpha_value, default=DEFAULT_FIT_CONFIG.alpha, help="BEMA trimming fraction, in [0, 0.5)"
    )
    g.add_argument(
        "--beta",
        type=beta_value,
        default=DEFAULT_FIT_CONFIG.beta,
        help="Tracy-Widom level: the edge is TW1's 1-beta quantile; in [1e-9, 1-1e-9]",
    )
    g.add_argument(
        "--edge-centring",
        choices=EDGE_CENTRINGS,
        default=DEFAULT_FIT_CONFIG.edge_centring,
        help="finite-size centring of the edge: paper, johnstone or ma (their false-alarm rate is close to "
        "beta at small sizes; see chapter 1)",
    )
    g.add_argument(
        "--min-dim",
        type=min_dim_value,
        default=DEFAULT_FIT_CONFIG.min_dim,
        help="layers with min(rows, columns) below this are not fitted (status too_small); at least 2",
    )
    g.add_argument(
        "--bema-quantile",
        choices=tuple(BEMA_QUANTILES),
        default=DEFAULT_FIT_CONFIG.bema_quantile,
        help="BEMA's quantile convention: midpoint ((k - 1/2)/p), paper (k/p) or reference ((k - 1)/p)",
    )
    return p


def fit_config_from_args(args: argparse.Namespace) -> FitConfig:
    """The one :class:`~rmtlib.FitConfig` the ``Marchenko-Pastur fit`` group's flags describe (one flag per
    setting); commands pass it on as ``fit_config=``."""
    return FitConfig(
        alpha=args.alpha,
        beta=args.beta,
        edge_centring=args.edge_centring,
        min_dim=args.min_dim,
        bema_quantile=args.bema_quantile,
    )


def _data_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="mnist | fashion-mnist:FOLDER | imagefolder:FOLDER | FOLDER | synthetic (train and eval: mnist "
        "when left out)",
    )
    g.add_argument(
        "--workers", type=worker_count, default=0, help="data-loading processes (ImageNet on a GPU: 8 or more)"
    )
    return p


def _output_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs; without it an existing checkpoint (and sweep's --out table) is refused",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


#: the shared groups, passed as ``parents=`` to the sub-commands that take them
DEVICE, FIT, DATA, OUTPUT = _device_parent(), _fit_parent(), _data_parent(), _output_parent()


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after each option's help, except where there is nothing to say (None, off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == []:
            return action.help or ""
        return super()._get_help_string(action) or ""


def add_command(sub: argparse._SubParsersAction, name: str, help: str, parents: Sequence[argparse.ArgumentParser] = ()):
    """A sub-command parser that shows every option's default in ``--help`` and takes the shared ``parents``."""
    return sub.add_parser(
        name, help=help, description=help, parents=list(parents), formatter_class=DefaultsHelpFormatter
    )
