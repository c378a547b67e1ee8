"""Model factories: FC nets from widths, the MNIST ViT, any timm model by name, checkpoints.

One-line way to get the committed, trained MNIST ViT::

    from rmtlib.nn.models import load_mnist_vit; model = load_mnist_vit()
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Sequence

import timm
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from rmtlib.errors import CheckpointError, InputError
from rmtlib.nn.checkpoints import load_checkpoint, read_record

#: Architecture of the project's MNIST ViT: 16 patches of 7x7, width 192 (qkv 576x192, fc1 768x192).
MNIST_VIT_CONFIG: dict[str, Any] = dict(
    img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0
)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
MNIST_VIT_CHECKPOINT = ASSETS / "mnist_vit.safetensors"
MNIST_VIT_CARD = ASSETS / "mnist_vit.json"

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def fc_net(widths: Sequence[int], activation: str = "relu", bias: bool = True) -> nn.Sequential:
    """Fully connected net ``widths[0] -> ... -> widths[-1]`` (input flattened, no activation at the end).

    Linear layers sit at indices 1, 3, 5, ... of the returned ``nn.Sequential``.
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise InputError(f"fc_net needs at least two positive widths, got {widths}")
    if activation not in _ACTIVATIONS:
        raise InputError(f"fc_net activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def parse_fc_name(name: str) -> list[int]:
    """Widths from a project name like ``fc:784-256-10``."""
    try:
        return [int(w) for w in name.split(":", 1)[1].split("-")]
    except (IndexError, ValueError) as exc:
        raise InputError(f"FC model name must look like 'fc:784-256-10', got {name!r}") from exc


def mnist_vit(**overrides: Any) -> nn.Module:
    """The project's MNIST ViT (a timm ``VisionTransformer``), randomly initialized.

    ``overrides`` change entries of :data:`MNIST_VIT_CONFIG` (e.g. ``depth=4``).
    """

    return VisionTransformer(**{**MNIST_VIT_CONFIG, **overrides})


def load_state(model: nn.Module, path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load a checkpoint into ``model``: rmtlib's safetensors (low-rank layers restored) or a torch state dict."""

    return load_checkpoint(path, model)


def model_card() -> dict:
    """The committed MNIST ViT's model card (config, seed, data, epochs, accuracy, sha256)."""
    if not MNIST_VIT_CARD.is_file():
        raise CheckpointError(
            f"MNIST ViT model card {MNIST_VIT_CARD} is missing; train it with `rmtlib train mnist_vit`"
        )
    return json.loads(MNIST_VIT_CARD.read_text())


def load_mnist_vit(checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """The trained MNIST ViT committed under ``rmtlib/assets`` (or ``checkpoint``), in eval mode."""
    path = Path(checkpoint) if checkpoint else MNIST_VIT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"MNIST ViT checkpoint {path} is missing; train it with `rmtlib train mnist_vit`")
    model, _ = load_state(mnist_vit(**mnist_vit_config(checkpoint)), path)
    return model.eval()


def mnist_vit_config(
    checkpoint: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The architecture of an ``mnist_vit`` built from ``checkpoint`` (its recorded ``config``; without
    one, the committed model's card) with ``overrides`` on top: what a checkpoint's metadata must record."""
    config = dict(MNIST_VIT_CONFIG)
    if checkpoint is not None:
        config.update(_saved_config(checkpoint, "mnist_vit"))
    elif MNIST_VIT_CARD.is_file():
        config.update(model_card().get("config", {}))
    config.update(overrides or {})
    return config


def create_model(
    name: str, checkpoint: str | os.PathLike | None = None, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """A model by name: ``mnist_vit``, ``fc:784-256-10`` or any timm model name.

    ``checkpoint`` loads local weights (rmtlib safetensors or a torch/timm state dict). The
    architecture keywords an rmtlib checkpoint of this model records (``model_kwargs``, or
    ``config``: what ``--set`` changed when it was made) are applied first, ``kwargs`` on top,
    so a saved model comes back with its own activation, depth, head, ...
    ``pretrained=True`` means the committed weights for ``mnist_vit`` (with ``kwargs``: loaded into
    the changed architecture, which must keep every weight's shape) and the Hugging Face hub for
    timm models (opt-in; fails fast offline with a hint to pass a checkpoint instead). A keyword
    the architecture does not take raises :class:`InputError` naming the model.
    """
    if name == "mnist_vit" and pretrained and checkpoint is None:
        if not kwargs:
            return load_mnist_vit()
        if not MNIST_VIT_CHECKPOINT.is_file():
            raise CheckpointError(
                f"MNIST ViT checkpoint {MNIST_VIT_CHECKPOINT} is missing; train it with `rmtlib train mnist_vit`"
            )
        checkpoint = MNIST_VIT_CHECKPOINT  # the committed weights, not a silently random model
    kwargs = recorded_kwargs(checkpoint, name, kwargs)  # the recorded architecture, the caller's changes on top
    try:
        if name == "mnist_vit":
            model = mnist_vit(**kwargs)
        elif name.startswith("fc:"):
            model = fc_net(parse_fc_name(name), **kwargs)
        else:
            model = _timm_model(name, pretrained and checkpoint is None, **kwargs)
    except TypeError as err:  # e.g. --set foo=1
        raise InputError(f"{name}: {err}") from err
    except (ValueError, RuntimeError, AssertionError) as err:  # e.g. --set depth=-1
        if not kwargs:
            raise
        raise InputError(f"{name} with {kwargs}: {err}") from err
    if checkpoint is not None:
        model, _ = load_state(model, checkpoint)
    return model


def recorded_kwargs(
    checkpoint: str | os.PathLike | None, name: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The architecture keywords :func:`create_model` builds ``name`` with from ``checkpoint``: those the
    checkpoint records, ``overrides`` on top. What a checkpoint made from it must record as ``model_kwargs``,
    so that a model loaded, pruned and saved again still comes back with its own architecture."""
    return {**(_saved_config(checkpoint, name) if checkpoint is not None else {}), **(overrides or {})}


def _saved_config(checkpoint: str | os.PathLike, name: str = "mnist_vit") -> dict[str, Any]:
    """The architecture keywords an rmtlib checkpoint records for model ``name`` ({} if none).

    ``rmtlib prune``/``sweep`` record ``model`` and ``model_kwargs`` (and, for ``mnist_vit``, the
    whole ``config``); ``rmtlib train`` records ``config`` (for other models with their ``name``).
    A checkpoint recorded for another model name contributes nothing. Only the safetensors
    header is read; a torch state dict or a file without a record gives {}.
    """
    metadata = _recorded_metadata(checkpoint)
    if metadata.get("model", name) != name:
        return {}
    config = metadata.get("config")
    config = dict(config) if isinstance(config, dict) else {}
    if name == "mnist_vit":
        accepted = _vit_keywords()
        return {k: v for k, v in config.items() if k in accepted}
    kwargs = metadata.get("model_kwargs")
    if isinstance(kwargs, dict):
        return dict(kwargs)
    if config.get("name") == name:
        return {k: v for k, v in config.items() if k != "name"}
    return {}


def _recorded_metadata(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The caller's metadata in an rmtlib checkpoint's record (:func:`rmtlib.nn.checkpoints.read_record`),
    {} if none."""

    try:
        metadata = read_record(checkpoint).get("metadata")
    except CheckpointError:  # unreadable: loading the weights will say so
        return {}
    return dict(metadata) if isinstance(metadata, dict) else {}


def _vit_keywords() -> set[str]:
    """The keyword arguments timm's ``VisionTransformer`` takes (what an ``mnist_vit`` config may set)."""

    return {k for k in inspect.signature(VisionTransformer.__init__).parameters if k != "self"}


def _timm_model(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:

    if not timm.is_model(name):
        raise InputError(f"unknown model {name!r}: not 'mnist_vit', 'fc:W1-W2-...', or a timm model name")
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # hub unreachable / offline mode: any error means no weights
        raise CheckpointError(
            f"could not fetch pretrained weights for {name!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Offline, download the weights elsewhere and pass them with "
            f"--checkpoint PATH (create_model({name!r}, checkpoint=PATH))."
        ) from exc
