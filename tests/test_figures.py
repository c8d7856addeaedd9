"""Per-trial figures: the bicubic | SR | HR strip zooms tiny crops so their pixels are visible."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from srprior.data.imresize import bicubic_lr
from srprior.method.figures import lambda_text, sr_comparison, zoom


def test_sr_comparison_zooms_a_tiny_crop_and_checks_shapes(tmp_path):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    lr = bicubic_lr(hr, 2)
    out = sr_comparison(lr, hr, hr, 2, tmp_path / "fig" / "sr.png", title="edsr-t-micro")
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width >= 3 * 96 * 3 and png.height >= 96 * 3  # 3 panels at >= 3x
    assert zoom(96) == 3 and zoom(48) == 6 and zoom(512) == 1
    with pytest.raises(ValueError, match="×2 crop"):
        sr_comparison(lr, hr[:90], hr, 2, tmp_path / "bad.png")


def test_lambda_text_prints_like_the_tables():
    assert [lambda_text(v) for v in (0.0, 1e-4, 5e-3, 3.2e-4)] == ["0", "1e-4", "5e-3", "3.2e-4"]
