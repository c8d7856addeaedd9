"""The one file checksum: SHA-256 (and, for archives that publish one, MD5) read in blocks, so a multi-GB archive or
checkpoint never sits in memory. Downloads verify with it, checkpoints carry it, HardCases-R's manifest records it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digest per hashlib algorithm name of the file at `path`, in one pass."""
    found = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            for digest in found.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in found.items()}


def sha256_file(path: str | Path) -> str:
    return file_digests(path)["sha256"]
