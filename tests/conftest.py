"""Shared fixtures. Real benchmark data comes from $SRPRIOR_DATA (CI points it at ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the benchmark folders (Set5/, Set14/, ...). Skips locally when absent; fails on CI."""
    value = os.environ.get("SRPRIOR_DATA")
    if value and Path(value, "Set5").is_dir():
        return Path(value)
    message = f"SRPRIOR_DATA={value!r} does not hold the benchmark folders (Set5/HR, ...)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must set it to ../shared/data")
    pytest.skip(message)
