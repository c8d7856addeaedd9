"""HR/LR pairs from folders (EDSR benchmark and DIV2K layouts) and the in-memory training patch sampler.

Missing LR images are made with the MATLAB-exact :func:`bicubic_lr` and cached as PNG, because the
data folders may be read-only and some benchmarks ship only one scale (Urban100: X4 only).
The cache lives under ``$SRPRIOR_CACHE`` (default ``$XDG_CACHE_HOME/srprior`` or ``~/.cache/srprior``);
a cached file is reused only while it is newer than its HR file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srprior.data.imresize import bicubic_lr, modcrop
from srprior.data.io import IMAGE_SUFFIXES, ImageError, not_a_file, read_image
from srprior.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset folder or pairing problem; the message names the folder/file and the fix."""


@dataclass
class ImagePair:
    """One image: ``hr`` (k*h, k*w, 3) is already modcropped to exactly ``scale`` times ``lr`` (h, w, 3)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray

    def __post_init__(self) -> None:
        for what, arr in (("hr", self.hr), ("lr", self.lr)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise DatasetError(f"ImagePair {self.name!r}: {what} must be a uint8 (H,W,3) array, got "
                                   f"{getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
        (hh, hw), (lh, lw) = self.hr.shape[:2], self.lr.shape[:2]
        if hh % lh or hw % lw or hh // lh != hw // lw:
            raise DatasetError(f"ImagePair {self.name!r}: HR {hw}x{hh} is not an integer multiple of LR {lw}x{lh}; "
                               "modcrop the HR to scale*LR")

    @property
    def scale(self) -> int:
        return self.hr.shape[0] // self.lr.shape[0]


def cache_root() -> Path:
    """Writable cache for generated LR images ($SRPRIOR_CACHE, else the user cache dir)."""
    if os.environ.get("SRPRIOR_CACHE"):
        return Path(os.environ["SRPRIOR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srprior"


def _image_files(folder: Path) -> list[Path]:
    """The images of a folder; an entry named like one that is no file (a directory or FIFO `x.png`, a broken
    link) is an error naming it, not a silently missing image."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    for p in files:
        if (kind := not_a_file(p)) is not None:
            raise DatasetError(f"{p}: {kind}; replace it with the image or remove it")
    return files


def _skipped(folder: Path, shown: int = 5) -> str:
    """What `_image_files` passed over in `folder` (hidden files, other formats, sub-folders), for the error that
    it found nothing: the image may be there under a name or in a folder the user did not expect."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return " (the folder is empty)"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f" (skipped: {', '.join(names[:shown])}{more})"


def _lr_suffixes(k: int) -> tuple[str, ...]:
    """LR stems accepted for HR stem S: S, Sx2, S_x2, SX2, S_X2 (EDSR, BasicSR and DIV2K namings)."""
    return ("", f"x{k}", f"_x{k}", f"X{k}", f"_X{k}")


def _write_png_atomic(arr: np.ndarray, path: Path) -> None:
    """Write via a temp file + rename so concurrent workers never read a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(arr).save(tmp, compress_level=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_pair(hr_path: Path, k: int, lr_path: Path | None, cache_dir: Path | None) -> ImagePair:
    hr_full = read_image(hr_path)
    h, w = hr_full.shape[:2]
    if min(h, w) < 2 * k:
        raise ImageError(hr_path, f"{w}x{h} is too small for x{k} SR (both sides must be >= {2 * k})",
                         "remove it from the HR folder")
    hr = modcrop(hr_full, k)
    expected = (h // k, w // k)
    if lr_path is not None:
        lr = read_image(lr_path)
        if lr.shape[:2] != expected:
            raise DatasetError(f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]} but HR {hr_path.name} ({w}x{h}) at x{k} "
                               f"needs {expected[1]}x{expected[0]} (= HR // {k}); check the scale or delete the LR "
                               "file so it is regenerated with MATLAB bicubic")
        return ImagePair(hr_path.stem, np.ascontiguousarray(hr), lr)
    cached = cache_dir / f"{hr_path.stem}x{k}.png" if cache_dir is not None else None
    if cached is not None and cached.is_file() and cached.stat().st_mtime >= hr_path.stat().st_mtime:
        lr = read_image(cached)
        if lr.shape[:2] == expected:
            return ImagePair(hr_path.stem, np.ascontiguousarray(hr), lr)
    lr = bicubic_lr(hr, k)
    if cached is not None:
        _write_png_atomic(lr, cached)
    return ImagePair(hr_path.stem, np.ascontiguousarray(hr), lr)


def _pair_files(hr_dir: str | Path, scale: int, lr_dir: str | Path | None) -> tuple[int, list]:
    """(scale, [(HR file, its LR file or None)]) of a folder, validated as `load_folder` documents."""
    if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
        raise DatasetError(f"scale must be a positive integer, got {scale!r}")
    k = int(scale)
    hr_dir = Path(hr_dir)
    if not hr_dir.is_dir():
        raise DatasetError(f"{hr_dir}: HR folder does not exist; point hr_dir at the folder holding the HR images")
    hr_files = _image_files(hr_dir)
    if not hr_files:
        raise DatasetError(f"{hr_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found{_skipped(hr_dir)}; "
                           "point hr_dir at the folder holding the HR images")
    dupes = sorted(stem for stem, n in Counter(p.stem for p in hr_files).items() if n > 1)
    if dupes:
        raise DatasetError(f"{hr_dir}: several HR files share the stem(s) {dupes}; keep one file per image")
    lr_index: dict[str, Path] = {}
    if lr_dir is not None:
        lr_dir = Path(lr_dir)
        if not lr_dir.is_dir():
            raise DatasetError(f"{lr_dir}: LR folder does not exist; pass lr_dir=None to generate LR images")
        lr_index = {p.stem: p for p in _image_files(lr_dir)}
    jobs = []
    for hr_path in hr_files:
        matches = [lr_index[hr_path.stem + s] for s in _lr_suffixes(k) if hr_path.stem + s in lr_index]
        if len(matches) > 1:
            raise DatasetError(f"{hr_path}: several LR files match ({', '.join(m.name for m in matches)}); keep one")
        jobs.append((hr_path, matches[0] if matches else None))
    return k, jobs


def load_folder(hr_dir: str | Path, scale: int, lr_dir: str | Path | None = None,
                cache_dir: str | Path | None = None) -> list[ImagePair]:
    """Pair every HR image in ``hr_dir`` with its LR (same stem or stem+``x{scale}``) in ``lr_dir``.

    HR is modcropped to a multiple of ``scale``; LR files must be exactly HR // scale. HR images
    without an LR file get ``bicubic_lr(HR)``, cached as ``{stem}x{scale}.png`` in ``cache_dir``
    when given. Images are decoded in a few threads (Pillow and numpy release the GIL).
    """
    k, jobs = _pair_files(hr_dir, scale, lr_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda job: _load_pair(job[0], k, job[1], cache), jobs))


def check_folder(hr_dir: str | Path, scale: int, lr_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, limit: int = 0, min_lr_side: int = 0) -> int:
    """Read the first `limit` (0: all) pairs exactly as `load_folder` does, keeping none of them (so a whole
    DIV2K fits in memory); a bad file raises here, naming it. Also refuses an LR side below `min_lr_side` (the
    training patch, as PatchSampler would). Returns how many pairs were read."""
    k, jobs = _pair_files(hr_dir, scale, lr_dir)
    jobs = jobs[:limit] if limit else jobs
    cache = Path(cache_dir) if cache_dir is not None else None

    def one(job: tuple[Path, Path | None]) -> None:
        pair = _load_pair(job[0], k, job[1], cache)
        h, w = pair.lr.shape[:2]
        if min(h, w) < min_lr_side:
            raise DatasetError(f"{job[0]}: LR {w}x{h} is smaller than the {min_lr_side}x{min_lr_side} training "
                               "patch; use a smaller patch (--set lr_patch=N) or remove the image")

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(one, jobs))
    return len(jobs)


def _find_dir(root: Path, name: str) -> Path:
    """``root/name``, matched case-insensitively (metric names use ``set5``, folders ``Set5``)."""
    if (root / name).is_dir():
        return root / name
    if not root.is_dir():
        raise DatasetError(f"{root}: data root does not exist; "
                           "download with `srprior data download benchmarks --root DIR`")
    found = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    if len(found) != 1:
        have = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise DatasetError(f"{root}: no dataset folder {name!r} (found: {have}); "
                           "download with `srprior data download benchmarks --root DIR`")
    return found[0]


def _cache_dir(folder: Path, k: int) -> Path:
    """Per-source cache folder, keyed by the resolved path so two roots with a 'Set5' never collide."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    return cache_root() / "lr" / f"{folder.name}-{digest}" / f"X{k}"


def benchmark_dirs(root: str | Path, name: str, scale: int) -> tuple[Path, Path | None, Path]:
    """(HR folder, LR folder or None, LR cache) of benchmark `name` under `root` (EDSR layout)."""
    folder = _find_dir(Path(root), name)
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    return folder / "HR", lr_dir if lr_dir.is_dir() else None, _cache_dir(folder, scale)


def benchmark(root: str | Path, name: str, scale: int) -> list[ImagePair]:
    """EDSR benchmark layout ``root/NAME/HR`` + ``root/NAME/LR_bicubic/X{k}/{stem}x{k}.png``."""
    hr_dir, lr_dir, cache = benchmark_dirs(root, name, scale)
    return load_folder(hr_dir, scale, lr_dir, cache)


def div2k(root: str | Path, split: str = "train", scale: int = 2) -> list[ImagePair]:
    """DIV2K layout ``root/DIV2K_{split}_HR`` + ``root/DIV2K_{split}_LR_bicubic/X{k}/{id}x{k}.png``.

    ``root`` may also be the parent of a ``DIV2K/`` folder (EDSR's layout).
    """
    hr_dir, lr_dir, cache = div2k_dirs(root, split, scale)
    return load_folder(hr_dir, scale, lr_dir, cache)


def div2k_dirs(root: str | Path, split: str, scale: int) -> tuple[Path, Path | None, Path]:
    """(HR folder, LR folder or None, LR cache) of a DIV2K split (see `div2k`)."""
    if split not in ("train", "valid"):
        raise DatasetError(f"DIV2K split must be 'train' or 'valid', got {split!r}")
    root = Path(root)
    if not (root / f"DIV2K_{split}_HR").is_dir() and (root / "DIV2K" / f"DIV2K_{split}_HR").is_dir():
        root = root / "DIV2K"
    hr_dir = root / f"DIV2K_{split}_HR"
    if not hr_dir.is_dir():
        raise DatasetError(f"{hr_dir}: DIV2K folder missing; run `srprior data download div2k --root {root}`")
    lr_dir = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}"
    return hr_dir, lr_dir if lr_dir.is_dir() else None, _cache_dir(hr_dir, scale)


class PatchSampler:
    """Endless stream of aligned random (LR, HR) training patches from images held in memory.

    Each batch draws, per sample, an image (uniformly), an LR crop position and one of the 8
    flip/rotate variants (random h-flip, v-flip and transpose, i.e. the thesis' flips plus
    90/180/270 rotations); the HR crop is the same region at ``scale`` times the coordinates.
    All images are copied once into two flat uint8 buffers, so a batch is a single fancy-index
    gather (no per-patch Python loop). Drop the ``pairs`` afterwards if memory is tight.
    Randomness comes only from the sampler's own ``numpy`` PCG64 generator: the same seed gives
    the same batches, and ``state_dict``/``load_state_dict`` continue a stream exactly.
    Images whose LR side is smaller than ``patch`` raise :class:`DatasetError`, because silently
    skipping them changes the training distribution; ``drop_small=True`` opts into dropping them
    with a warning that names them (e.g. T91 has 78-pixel images, 39 px in LR at x2).
    """

    def __init__(self, pairs: list[ImagePair], scale: int, patch: int = 48, batch: int = 16,
                 seed: int = 0, augment: bool = True, drop_small: bool = False):
        if patch < 1 or batch < 1:
            raise DatasetError(f"patch and batch must be >= 1, got patch={patch} batch={batch}")
        for p in pairs:
            if p.scale != scale:
                raise DatasetError(f"image {p.name!r} is a x{p.scale} pair but the sampler is x{scale}")
        small = [p for p in pairs if min(p.lr.shape[:2]) < patch]
        if small and not drop_small:
            p = small[0]
            raise DatasetError(f"image {p.name!r}: LR {p.lr.shape[1]}x{p.lr.shape[0]} is smaller than the "
                               f"{patch}x{patch} patch ({len(small)} such images); use a smaller patch, "
                               "drop_small=True, or remove the image")
        if small:
            warnings.warn(f"PatchSampler: dropped {len(small)} images smaller than the {patch}x{patch} LR patch: "
                          f"{', '.join(p.name for p in small)}", stacklevel=2)
            pairs = [p for p in pairs if min(p.lr.shape[:2]) >= patch]
        if not pairs:
            raise DatasetError(f"PatchSampler has no image with an LR side >= {patch} to sample from")
        self.scale, self.patch, self.batch, self.seed, self.augment = scale, patch, batch, seed, augment
        self._lr_h = np.array([p.lr.shape[0] for p in pairs], dtype=np.int64)
        self._lr_w = np.array([p.lr.shape[1] for p in pairs], dtype=np.int64)
        sizes = self._lr_h * self._lr_w
        self._lr_off = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._hr_off = self._lr_off * scale * scale
        self._lr_buf = np.concatenate([p.lr.reshape(-1, 3) for p in pairs])
        self._hr_buf = np.concatenate([p.hr.reshape(-1, 3) for p in pairs])
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.batches = 0

    def __len__(self) -> int:
        return len(self._lr_h)

    @staticmethod
    def _gather(buf, off, width, y, x, size, aug) -> np.ndarray:
        """(B, size, size, 3) crops at (y, x) of row ``width`` images, with flip/transpose codes ``aug``."""
        r = np.arange(size, dtype=np.int64)
        rows = np.where((aug & 2)[:, None] > 0, size - 1 - r, r)  # v-flip
        cols = np.where((aug & 1)[:, None] > 0, size - 1 - r, r)  # h-flip
        rows = (y[:, None] + rows) * width[:, None] + off[:, None]
        cols = x[:, None] + cols
        transpose = (aug & 4)[:, None] > 0  # output (i, j) reads source (j, i)
        first, second = np.where(transpose, cols, rows), np.where(transpose, rows, cols)
        return np.take(buf, first[:, :, None] + second[:, None, :], axis=0)

    @staticmethod
    def _to_tensor(patches: np.ndarray) -> torch.Tensor:
        """uint8 (B,h,w,3) -> float32 (B,3,h,w) / 255 in numpy: torch's threaded casts crawl on busy CPUs."""
        b, h, w, c = patches.shape
        out = np.empty((b, c, h, w), dtype=np.float32)
        np.divide(patches.transpose(0, 3, 1, 2), np.float32(255), out=out)
        return torch.from_numpy(out)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: LR (B,3,p,p) and HR (B,3,p*s,p*s), float32 in [0, 1]."""
        rng, p, s = self._rng, self.patch, self.scale
        img = rng.integers(0, len(self._lr_h), self.batch)
        y = rng.integers(0, self._lr_h[img] - p + 1)
        x = rng.integers(0, self._lr_w[img] - p + 1)
        aug = rng.integers(0, 8, self.batch) if self.augment else np.zeros(self.batch, dtype=np.int64)
        lr = self._gather(self._lr_buf, self._lr_off[img], self._lr_w[img], y, x, p, aug)
        hr = self._gather(self._hr_buf, self._hr_off[img], self._lr_w[img] * s, y * s, x * s, p * s, aug)
        self.batches += 1
        return self._to_tensor(lr), self._to_tensor(hr)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next()

    def _fingerprint(self) -> list[int]:
        return [len(self._lr_h), int(self._lr_buf.shape[0]), self.scale, self.patch, self.batch, int(self.augment)]

    def state_dict(self) -> dict:
        """Plain-Python state (JSON/torch.save friendly) to resume the exact same stream."""
        return {"seed": self.seed, "batches": self.batches, "rng": self._rng.bit_generator.state,
                "fingerprint": self._fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        if list(state["fingerprint"]) != self._fingerprint():
            raise DatasetError(f"PatchSampler state is for [images, LR pixels, scale, patch, batch, augment] = "
                               f"{list(state['fingerprint'])}, this sampler is {self._fingerprint()}; "
                               "resume with the same data and settings")
        self._rng.bit_generator.state = state["rng"]
        self.seed, self.batches = state["seed"], int(state["batches"])
