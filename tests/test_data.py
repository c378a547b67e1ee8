"""Data loaders: MNIST checksum/splits, Fashion-MNIST IDX parsing and errors, synthetic sets, sharding."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from rmtlib.errors import DataError, InputError
from rmtlib.train import data


def test_mnist_checksum_and_splits():
    assert data.sha256_file(data.mnist_file()) == data.MNIST_SHA256
    sizes = {s: len(data.load_mnist(s)) for s in data.MNIST_SPLITS}
    assert sizes == {"train": 50000, "val": 10000, "test": 10000}
    x, y = data.load_mnist("test").tensors
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.unique().tolist()) == set(range(10))
    raw = data.load_mnist("train", normalize=False, flatten=True).tensors[0]
    assert raw.shape == (50000, 784) and 0.0 <= float(raw.min()) and float(raw.max()) < 1.0
    # the normalization constants are the training-set mean / std
    assert abs(raw.mean().item() - data.MNIST_MEAN) < 1e-3 and abs(raw.std().item() - data.MNIST_STD) < 1e-3


def test_mnist_bad_checksum_and_split(tmp_path):
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="sha256"):
        data.load_mnist("test", path=fake)
    with pytest.raises(InputError, match="split"):
        data.load_mnist("validation")


def _write_idx(path, array, gz):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    ext = ".gz" if gz else ""
    imgs, lbls = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    _write_idx(raw / f"t10k-images-idx3-ubyte{ext}", imgs, gz)
    _write_idx(raw / f"t10k-labels-idx1-ubyte{ext}", lbls, gz)
    ds = data.load_fashion_mnist(tmp_path, "test", normalize=False)
    x, y = ds.tensors
    assert x.shape == (7, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0].numpy(), imgs / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), lbls)
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):  # the train files are missing
        data.load_fashion_mnist(tmp_path, "train")


def test_missing_folders_name_the_layout(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        data.load_fashion_mnist(tmp_path / "nope", "test")
    with pytest.raises(DataError, match="<class name>"):
        data.image_folder(tmp_path)
    with pytest.raises(DataError, match="not a known dataset"):
        data.load_dataset(str(tmp_path / "missing"))


def test_image_folder_uses_timm_transform(tmp_path):
    import timm
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((300, 350, 3), np.uint8)).save(tmp_path / cls / "x.png")
    model = timm.create_model("resnet18", pretrained=False)
    ds = data.image_folder(tmp_path, model)
    x, y = ds[1]
    cfg = model.pretrained_cfg
    assert tuple(x.shape) == tuple(cfg["input_size"]) and y == 1
    # a black image becomes (0 - mean) / std in each channel: the model's own normalization
    expected = -torch.tensor(cfg["mean"]) / torch.tensor(cfg["std"])
    torch.testing.assert_close(x.mean(dim=(1, 2)), expected.float(), rtol=1e-4, atol=1e-4)


def test_imagenet_layout_splits(tmp_path):
    """``imagefolder:ROOT`` with train/ and val/: test reads val/, train reads train/; a missing split
    is an error, never a dataset whose classes are the split folders."""
    from PIL import Image

    for split, classes in (("train", ("n01", "n02", "n03")), ("val", ("n01", "n02", "n03"))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / split / cls / "x.png")
    for split, folder in (("test", "val"), ("val", "val"), ("train", "train")):
        ds = data.load_dataset(f"imagefolder:{tmp_path}", split)
        assert ds.classes == ["n01", "n02", "n03"] and Path(ds.root) == tmp_path / folder
    (tmp_path / "train").rename(tmp_path / "other")
    with pytest.raises(DataError, match=r"holds split folder\(s\) val/ but no train/"):
        data.load_dataset(f"imagefolder:{tmp_path}", "train")
    ds = data.load_dataset(str(tmp_path / "val"), "test")  # a folder of classes: evaluated as it is
    assert ds.classes == ["n01", "n02", "n03"]
    # but never trained on: top-1 would then be measured on the training images
    for spec in (str(tmp_path / "val"), f"imagefolder:{tmp_path / 'val'}"):
        with pytest.raises(DataError, match="no train/ folder"):
            data.load_dataset(spec, "train")


def test_a_subset_of_an_image_folder_spans_its_classes(tmp_path):
    """ImageFolder samples are sorted by class: the first 6 of 3 x 10 would all be class a."""
    from PIL import Image

    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = data.image_folder(tmp_path)
    loader = data.make_loader(ds, 6, subset=6, seed=0)
    picked = [ds.targets[i] for i in loader.dataset.indices]
    assert len(picked) == 6 and len(set(picked)) > 1
    assert loader.dataset.indices == data.make_loader(ds, 6, subset=6, seed=0).dataset.indices  # seeded
    assert data.make_loader(ds, 6, subset=6, seed=1).dataset.indices != loader.dataset.indices
    tensors = data.synthetic_classification(30, 4, 3, seed=0)
    assert data.make_loader(tensors, 6, subset=6).dataset.indices == list(range(6))  # tensor sets: the first ones


def test_editing_a_loaded_split_does_not_change_the_next_load():
    for normalize in (True, False):
        first = data.load_mnist("test", normalize=normalize)
        labels, image = first.tensors[1][:5].clone(), first.tensors[0][0].clone()
        first.tensors[1][:5] = 0
        first.tensors[0][0] = 7.0
        again = data.load_mnist("test", normalize=normalize)
        assert torch.equal(again.tensors[1][:5], labels) and torch.equal(again.tensors[0][0], image)


def test_split_names_are_checked():
    with pytest.raises(DataError, match="train, val or test"):
        data.load_dataset("synthetic", "trian")
    with pytest.raises(DataError, match="not val"):
        data.load_dataset("synthetic", "val")
    assert len(data.load_dataset("mnist", "val")) == 10_000


def test_synthetic_is_seeded_and_balanced():
    a, b = data.synthetic_classification(90, 5, 3, seed=1), data.synthetic_classification(90, 5, 3, seed=1)
    assert torch.equal(a.tensors[0], b.tensors[0])
    assert torch.bincount(a.tensors[1]).tolist() == [30, 30, 30]
    assert data.synthetic_images(20, 10).tensors[0].shape == (20, 1, 28, 28)


def test_shard_sampler_covers_each_index_once():
    shards = [list(data.ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.4])
def test_label_noise_flips_exactly_the_fraction_asked(fraction):
    base = data.synthetic_classification(1000, 4, 5, seed=0)
    subset = torch.utils.data.Subset(base, range(100, 900))
    noisy = data.with_label_noise(subset, fraction, seed=3)
    clean = torch.stack([subset[i][1] for i in range(len(subset))])
    got = torch.stack([noisy[i][1] for i in range(len(noisy))])
    wrong = got != clean
    assert int(wrong.sum()) == round(fraction * 800)  # a new label is always a different class
    assert int(got.min()) >= 0 and int(got.max()) <= 4
    assert torch.equal(noisy[7][0], subset[7][0])  # inputs untouched
    again = torch.stack([data.with_label_noise(subset, fraction, seed=3)[i][1] for i in range(800)])
    assert torch.equal(got, again)
    if fraction:
        other = torch.stack([data.with_label_noise(subset, fraction, seed=4)[i][1] for i in range(800)])
        assert not torch.equal(got, other)
        # wrong labels spread over the other classes: every (true, new) pair with true != new occurs
        pairs = {(int(c), int(g)) for c, g in zip(clean[wrong], got[wrong])}
        assert len(pairs) == 5 * 4


def test_label_noise_refuses_bad_fractions_and_labels():
    base = data.synthetic_classification(30, 4, 3, seed=0)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(InputError, match="label_noise"):
            data.with_label_noise(base, bad)
    with pytest.raises(InputError, match="0..1"):
        data.with_label_noise(base, 0.2, num_classes=2)  # labels go up to 2


def test_an_unreadable_image_is_named(tmp_path):
    from rmtlib.train.data import image_folder

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "x.png").write_text("not an image")
    data = image_folder(tmp_path)
    with pytest.raises(DataError, match=r"image .*x.png cannot be read"):
        data[0]


def test_broken_fashion_mnist_files_report_their_own_error(tmp_path):
    """A folder with the four IDX files, unreadable, was reported as an image folder without classes."""
    from rmtlib.train.data import load_dataset

    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / name).write_bytes(b"junk")
    with pytest.raises(DataError) as info:
        load_dataset(str(tmp_path), "test")
    assert "class subfolders" not in str(info.value) and "idx" in str(info.value).lower()


def test_a_model_that_cannot_take_the_data_is_named_with_the_shape():
    from torch import nn

    from rmtlib.train.data import check_model_input, load_dataset

    images = load_dataset("synthetic", "test")  # 1 x 28 x 28
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 10)).train()
    with pytest.raises(
        DataError, match=r"data 'synthetic' gives inputs of shape \(1, 1, 28, 28\), which Sequential cannot take"
    ):
        check_model_input(model, images, "synthetic")
    assert model.training  # left as it was
    check_model_input(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), images, "synthetic")


def test_model_input_check_keeps_integer_inputs_and_each_modules_mode():
    from torch import nn
    from torch.utils.data import TensorDataset

    from rmtlib.train.data import check_model_input

    tokens = TensorDataset(torch.randint(0, 50, (4, 7)), torch.zeros(4, dtype=torch.long))
    model = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Dropout(0.1), nn.Linear(56, 2)).train()
    model[2].eval()  # a submodule in its own mode
    check_model_input(model, tokens, "tokens")  # integer indices were cast to float and refused
    assert model.training and not model[2].training and model[3].training
    with pytest.raises(DataError, match="holds no samples"):
        check_model_input(model, TensorDataset(torch.zeros(0, 7, dtype=torch.long)), "empty")
