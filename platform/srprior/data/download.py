"""``srprior data download div2k|benchmarks --root DIR``: fetch, verify and unpack the public SR datasets.

Downloads resume (HTTP Range into ``<archive>.part``), are checked against the size and SHA256
in :data:`DATASETS` before anything is unpacked, and a mismatch deletes the partial file so a
rerun starts clean. Archives are unpacked so that :func:`srprior.data.datasets.div2k` and
:func:`~srprior.data.datasets.benchmark` read ``DIR`` directly (EDSR's ``benchmark/`` prefix is
stripped and its ``B100`` renamed ``BSD100``), never outside ``DIR``: a member path with ``..`` or a symbolic
link under ``DIR`` that leads elsewhere is refused. Stdlib ``urllib`` only; ``tqdm`` draws the bar.

Checksums: DIV2K sizes/SHA256 are those recorded by TensorFlow Datasets
(``tensorflow_datasets/url_checksums/div2k.txt``); the EDSR ``benchmark.tar`` size/SHA256 are
as published alongside a MATLAB-parity test suite. An archive without a known hash is verified by size
only and its computed SHA256 is printed so it can be added to the table.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from srprior.errors import UserError

STATE_DIR = ".srprior-downloads"  # under --root: partial/complete archives and per-archive done markers


class DownloadError(UserError, RuntimeError):
    """A download or unpack failure; the message says whether rerunning resumes."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the table; the partial file has been deleted."""


@dataclass(frozen=True)
class Archive:
    """One downloadable archive: where it is, how to check it, and how to lay it out under the root."""

    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    strip: str = ""  # member-path prefix removed on unpack ("benchmark/")
    rename: tuple[tuple[str, str], ...] = ()  # (old prefix, new prefix) applied after strip
    scale: int | None = None  # LR scale the archive holds, None for HR

    def __post_init__(self) -> None:
        if not self.url or "/" not in self.url:
            raise ValueError(f"Archive url must be a URL, got {self.url!r}")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"{self.url}: sha256 must have 64 hex digits")

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_ETH = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
DATASETS: dict[str, tuple[Archive, ...]] = {
    "div2k": (
        Archive(_ETH + "DIV2K_train_HR.zip", 3530603713,
                "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
        Archive(_ETH + "DIV2K_valid_HR.zip", 448993893,
                "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
        Archive(_ETH + "DIV2K_train_LR_bicubic_X2.zip", 925390592,
                "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850", scale=2),
        Archive(_ETH + "DIV2K_valid_LR_bicubic_X2.zip", 117763600,
                "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57", scale=2),
        Archive(_ETH + "DIV2K_train_LR_bicubic_X3.zip", 427847282,
                "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a", scale=3),
        Archive(_ETH + "DIV2K_valid_LR_bicubic_X3.zip", 54513392,
                "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3", scale=3),
        Archive(_ETH + "DIV2K_train_LR_bicubic_X4.zip", 246914039,
                "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a", scale=4),
        Archive(_ETH + "DIV2K_valid_LR_bicubic_X4.zip", 31505881,
                "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553", scale=4),
    ),
    "benchmarks": (
        Archive("https://cv.snu.ac.kr/research/EDSR/benchmark.tar", 250112000,
                "80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8",
                strip="benchmark/", rename=(("B100/", "BSD100/"),)),
    ),
}


def _hashes(path: Path, archive: Archive) -> dict[str, str]:
    from srprior.checksum import file_digests

    return file_digests(path, ("sha256", "md5") if archive.md5 else ("sha256",))


def _stream(archive: Archive, part: Path, progress: bool, timeout: float) -> None:
    """Append the missing bytes of ``archive`` to ``part`` (restarting if the server ignores Range)."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    if archive.size is not None and have > archive.size:
        part.unlink()
        have = 0
    if archive.size is not None and have == archive.size:
        return
    request = urllib.request.Request(archive.url, headers={"User-Agent": "srprior"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is already complete
            return
        raise DownloadError(f"{archive.url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{archive.url}: {exc}; check the network and rerun (the download resumes)") from exc
    with response:
        if have and response.status != 206:  # server ignored Range: start over
            have = 0
        total = archive.size or (have + int(response.headers.get("Content-Length") or 0)) or None
        with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                            desc=archive.filename, disable=not progress) as bar:
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
            except OSError as exc:
                raise DownloadError(f"{archive.url}: connection lost after {out.tell()} bytes ({exc}); "
                                    "rerun to resume") from exc


def fetch(archive: Archive, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``archive`` into ``dest`` (resuming ``.part``), verify it and return the final path."""
    dest.mkdir(parents=True, exist_ok=True)
    final, part = dest / archive.filename, dest / (archive.filename + ".part")
    if final.exists():
        return final
    _stream(archive, part, progress, timeout)
    got = part.stat().st_size
    if archive.size is not None and got < archive.size:
        raise DownloadError(f"{archive.url}: only {got} of {archive.size} bytes arrived; rerun to resume")
    if archive.size is not None and got != archive.size:
        part.unlink()
        raise ChecksumError(f"{archive.url}: got {got} bytes, expected {archive.size}; partial file deleted, rerun")
    hashes = _hashes(part, archive)
    for algo in ("sha256", "md5"):
        want = getattr(archive, algo)
        if want and hashes[algo] != want.lower():
            part.unlink()
            raise ChecksumError(f"{archive.url}: {algo} {hashes[algo]} != expected {want}; the download was "
                                "corrupted or the file changed upstream; partial file deleted, rerun")
    if not archive.sha256:
        print(f"{archive.filename}: size {got} bytes; sha256 {hashes['sha256']} (no checksum on record)")
    os.replace(part, final)
    return final


def _target(name: str, archive: Archive, root: Path) -> Path | None:
    """Where archive member ``name`` goes under ``root`` (None for the stripped top folder itself)."""
    rel = name.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if archive.strip and rel.startswith(archive.strip):
        rel = rel[len(archive.strip):]
    for old, new in archive.rename:
        if rel.startswith(old):
            rel = new + rel[len(old):]
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or ".." in parts:
        raise DownloadError(f"{archive.filename}: member {name!r} would escape {root}; refusing to unpack")
    return _inside(root.joinpath(*parts), root, f"{archive.filename}: member {name!r}") if parts else None


def _inside(target: Path, root: Path, what: str) -> Path:
    """`target` if it resolves inside `root`: a symbolic link already under the root (`root/Set5` -> elsewhere,
    or the file itself) would make unpacking write outside it. Links that stay inside are followed."""
    real_root = root.resolve()
    if target.resolve().is_relative_to(real_root):
        return target
    path = root
    for part in target.relative_to(root).parts:  # name the link that leaves
        path = path / part
        if path.is_symlink() and not path.resolve().is_relative_to(real_root):
            break
    link = f", through the symbolic link {path} -> {os.readlink(path)}" if path.is_symlink() else ""
    raise DownloadError(f"{what} would be written to {target.resolve()}, outside {root}{link}; remove the link (or "
                        "unpack into another --root) and rerun")


def check_root(root: Path) -> None:
    """The root is (or can become) a folder we can write in: found before any byte is fetched, as one line."""
    import tempfile

    if root.exists() and not root.is_dir():
        raise DownloadError(f"--root {root}: exists and is not a folder; choose a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise DownloadError(f"--root {root}: cannot write there ({exc.strerror or exc}); choose a folder you can "
                            "write to") from None


def unpack(path: Path, archive: Archive, root: Path) -> int:
    """Extract regular files of a zip/tar ``path`` under ``root`` laid out per ``archive``; returns the count.
    Every member's target is checked before any is written: a refused archive leaves nothing unpacked."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            plan = [(i, t) for i in zf.infolist() if (t := _target(i.filename, archive, root)) and not i.is_dir()]
            return _write(plan, zf.open)
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:  # links/devices are never needed for image sets
            plan = [(m, t) for m in tf.getmembers() if (t := _target(m.name, archive, root)) and m.isfile()]
            return _write(plan, tf.extractfile)
    raise DownloadError(f"{path}: neither zip nor tar; delete it and rerun")


def _write(plan: list[tuple[Any, Path]], open_member: Callable[[Any], Any]) -> int:
    for member, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return len(plan)


def download(table: Iterable[Archive], root: str | Path, keep_archives: bool = False, progress: bool = True,
             timeout: float = 60.0) -> list[Path]:
    """Fetch, verify and unpack every archive of ``table`` under ``root``; skips archives already done."""
    root = Path(root)
    check_root(root)
    state = _inside(root / STATE_DIR, root, f"the download folder {STATE_DIR}")
    done = []
    for archive in table:
        marker = state / (archive.filename + ".done")
        if marker.exists():
            continue
        path = fetch(archive, state, progress=progress, timeout=timeout)
        n = unpack(path, archive, root)
        marker.write_text(f"{archive.url}\n{n} files\n")
        if not keep_archives:
            path.unlink()
        done.append(path)
    return done
