"""Folder/benchmark/DIV2K loading, LR generation + caching, the embedded split and the patch sampler."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srprior.data import embedded
from srprior.data.datasets import DatasetError, ImagePair, PatchSampler, benchmark, div2k, load_folder
from srprior.data.imresize import bicubic_lr
from srprior.data.io import ImageError, read_image


def _rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(arr, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SRPRIOR_CACHE", str(root))
    return root


# ---------------------------------------------------------------- load_folder


def test_load_folder_pairs_both_namings_and_generates_missing(tmp_path):
    hr = {n: _rand((21, 26, 3), i) for i, n in enumerate(["a", "b", "c"])}
    for n, img in hr.items():
        _save(img, tmp_path / "HR" / f"{n}.png")
    lr_a = bicubic_lr(hr["a"], 2)
    lr_b = _rand((10, 13, 3), 9)  # any content of the right size is accepted as given
    _save(lr_a, tmp_path / "LR" / "a.png")  # same stem
    _save(lr_b, tmp_path / "LR" / "bx2.png")  # stem + x{k}
    pairs = load_folder(tmp_path / "HR", 2, lr_dir=tmp_path / "LR", cache_dir=tmp_path / "cache")
    assert [p.name for p in pairs] == ["a", "b", "c"]
    for p in pairs:
        assert p.hr.shape == (20, 26, 3) and p.lr.shape == (10, 13, 3) and p.scale == 2
        np.testing.assert_array_equal(p.hr, hr[p.name][:20])
    np.testing.assert_array_equal(pairs[0].lr, lr_a)
    np.testing.assert_array_equal(pairs[1].lr, lr_b)
    np.testing.assert_array_equal(pairs[2].lr, bicubic_lr(hr["c"], 2))
    assert sorted(os.listdir(tmp_path / "cache")) == ["cx2.png"]  # only the missing one was generated
    np.testing.assert_array_equal(read_image(tmp_path / "cache" / "cx2.png"), pairs[2].lr)


def test_cached_lr_is_reused_and_regenerated_when_hr_changes(tmp_path):
    hr_path = _save(_rand((16, 16, 3)), tmp_path / "HR" / "a.png")
    cached = tmp_path / "cache" / "ax2.png"
    load_folder(tmp_path / "HR", 2, cache_dir=tmp_path / "cache")
    marker = np.full((8, 8, 3), 7, np.uint8)  # a recognisable cache content proves the cache is read
    _save(marker, cached)
    np.testing.assert_array_equal(load_folder(tmp_path / "HR", 2, cache_dir=tmp_path / "cache")[0].lr, marker)
    new_hr = _rand((16, 16, 3), 5)
    _save(new_hr, hr_path)
    os.utime(hr_path, (cached.stat().st_mtime + 10,) * 2)  # HR newer than the cache -> regenerate
    pair = load_folder(tmp_path / "HR", 2, cache_dir=tmp_path / "cache")[0]
    np.testing.assert_array_equal(pair.lr, bicubic_lr(new_hr, 2))
    np.testing.assert_array_equal(read_image(cached), pair.lr)


def test_lr_of_wrong_size_names_the_file(tmp_path):
    _save(_rand((20, 20, 3)), tmp_path / "HR" / "a.png")
    _save(_rand((9, 10, 3)), tmp_path / "LR" / "ax2.png")
    with pytest.raises(DatasetError, match=r"ax2\.png: LR is 10x9 but HR a\.png \(20x20\) at x2 needs 10x10"):
        load_folder(tmp_path / "HR", 2, lr_dir=tmp_path / "LR")


def test_empty_folder_names_the_folder(tmp_path):
    (tmp_path / "HR").mkdir()
    (tmp_path / "HR" / "readme.txt").write_text("no images here")
    (tmp_path / "HR" / ".hidden.png").write_bytes(b"")
    (tmp_path / "HR" / "anim.gif").write_bytes(b"")
    (tmp_path / "HR" / "x2").mkdir()
    with pytest.raises(DatasetError) as exc:
        load_folder(tmp_path / "HR", 2)
    assert str(exc.value) == (f"{tmp_path / 'HR'}: no images (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .ppm) found "
                              "(skipped: .hidden.png, anim.gif, readme.txt, x2/); point hr_dir at the folder holding "
                              "the HR images")
    for p in (tmp_path / "HR").iterdir():
        p.rmdir() if p.is_dir() else p.unlink()
    with pytest.raises(DatasetError, match=r"found \(the folder is empty\); point"):
        load_folder(tmp_path / "HR", 2)


def test_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"nothere: HR folder does not exist"):
        load_folder(tmp_path / "nothere", 2)


def test_hr_too_small_for_scale_names_the_file(tmp_path):
    _save(_rand((7, 30, 3)), tmp_path / "HR" / "thin.png")
    with pytest.raises(ImageError, match=r"thin\.png: 30x7 is too small for x4 SR"):
        load_folder(tmp_path / "HR", 4)


def test_text_file_named_png_in_folder_names_the_file(tmp_path):
    _save(_rand((8, 8, 3)), tmp_path / "HR" / "good.png")
    (tmp_path / "HR" / "bad.png").write_text("not an image")
    with pytest.raises(ImageError, match=r"bad\.png"):
        load_folder(tmp_path / "HR", 2)


def test_ambiguous_lr_names_the_files(tmp_path):
    _save(_rand((8, 8, 3)), tmp_path / "HR" / "a.png")
    _save(_rand((4, 4, 3)), tmp_path / "LR" / "a.png")
    _save(_rand((4, 4, 3)), tmp_path / "LR" / "ax2.png")
    with pytest.raises(DatasetError, match=r"a\.png: several LR files match \(a\.png, ax2\.png\)"):
        load_folder(tmp_path / "HR", 2, lr_dir=tmp_path / "LR")


def test_image_pair_rejects_mismatched_shapes():
    with pytest.raises(DatasetError, match="not an integer multiple"):
        ImagePair("x", np.zeros((10, 12, 3), np.uint8), np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"lr must be a uint8 \(H,W,3\)"):
        ImagePair("x", np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5), np.uint8))


# ---------------------------------------------------------------- benchmark / div2k layouts


def test_benchmark_set5_uses_shipped_lr(data_root, cache):
    pairs = benchmark(data_root, "set5", 3)  # case-insensitive folder match
    assert [p.name for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for p in pairs:
        np.testing.assert_array_equal(p.lr, read_image(data_root / "Set5" / "LR_bicubic" / "X3" / f"{p.name}x3.png"))
        assert p.hr.shape[:2] == (3 * p.lr.shape[0], 3 * p.lr.shape[1])
    assert not cache.exists()  # nothing had to be generated


@pytest.mark.slow
def test_benchmark_generates_missing_urban100_x2(data_root, cache):
    pairs = benchmark(data_root, "Urban100", 2)  # only X4 ships
    assert len(pairs) == 100
    for p in pairs:
        h, w = read_image_size(data_root / "Urban100" / "HR" / f"{p.name}.png")
        assert p.lr.shape == (h // 2, w // 2, 3) and p.hr.shape == (h // 2 * 2, w // 2 * 2, 3)
    cached = sorted(cache.glob("lr/Urban100-*/X2/*.png"))
    assert len(cached) == 100 and cached[0].name == "img_001x2.png"
    np.testing.assert_array_equal(read_image(cached[0]), pairs[0].lr)
    np.testing.assert_array_equal(pairs[0].lr, bicubic_lr(pairs[0].hr, 2))


def read_image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.height, img.width


def test_benchmark_unknown_name_lists_folders(data_root):
    with pytest.raises(DatasetError, match=r"no dataset folder 'Manga109' \(found: .*'Set5'"):
        benchmark(data_root, "Manga109", 2)


def test_div2k_layout(tmp_path, cache):
    hrs = [_rand((24, 30, 3), i) for i in range(3)]
    for i, img in enumerate(hrs):
        _save(img, tmp_path / "DIV2K_valid_HR" / f"{801 + i:04d}.png")
    _save(bicubic_lr(hrs[0], 3), tmp_path / "DIV2K_valid_LR_bicubic" / "X3" / "0801x3.png")
    _save(bicubic_lr(hrs[1], 3), tmp_path / "DIV2K_valid_LR_bicubic" / "X3" / "0802x3.png")
    pairs = div2k(tmp_path, "valid", 3)
    assert [p.name for p in pairs] == ["0801", "0802", "0803"]
    for p, img in zip(pairs, hrs):
        np.testing.assert_array_equal(p.lr, bicubic_lr(img, 3))
    assert len(list(cache.glob("lr/DIV2K_valid_HR-*/X3/0803x3.png"))) == 1
    with pytest.raises(DatasetError, match="split must be 'train' or 'valid'"):
        div2k(tmp_path, "test", 3)
    with pytest.raises(DatasetError, match=r"DIV2K_train_HR: DIV2K folder missing.*srprior data download div2k"):
        div2k(tmp_path, "train", 3)


# ---------------------------------------------------------------- sampler


def _coordinate_pair(h: int, w: int, k: int, name="coords") -> ImagePair:
    """LR pixel (y, x) = (y, x, 77); HR = each LR pixel repeated k x k, so LR = HR[::k, ::k] exactly."""
    yy, xx = np.mgrid[:h, :w]
    lr = np.stack([yy, xx, np.full_like(yy, 77)], axis=2).astype(np.uint8)
    return ImagePair(name, lr.repeat(k, 0).repeat(k, 1), lr)


def _transform_of(lr_patch: torch.Tensor) -> tuple:
    """Recover (step along i, step along j) in source (row, col) from a coordinate-encoded patch."""
    rows, cols = (lr_patch[0] * 255).round().long(), (lr_patch[1] * 255).round().long()
    di = (int(rows[1, 0] - rows[0, 0]), int(cols[1, 0] - cols[0, 0]))
    dj = (int(rows[0, 1] - rows[0, 0]), int(cols[0, 1] - cols[0, 0]))
    i, j = torch.meshgrid(torch.arange(rows.shape[0]), torch.arange(rows.shape[1]), indexing="ij")
    assert torch.equal(rows, rows[0, 0] + i * di[0] + j * dj[0])  # an exact rigid copy of a crop
    assert torch.equal(cols, cols[0, 0] + i * di[1] + j * dj[1])
    return di, dj


def test_sampler_shapes_range_and_alignment():
    k, p = 3, 8
    sampler = PatchSampler([_coordinate_pair(40, 50, k), _coordinate_pair(30, 20, k, "b")], k, patch=p, batch=32)
    lr, hr = sampler.next()
    assert lr.shape == (32, 3, p, p) and hr.shape == (32, 3, p * k, p * k)
    assert lr.dtype == hr.dtype == torch.float32 and lr.is_contiguous() and hr.is_contiguous()
    assert 0.0 <= float(lr.min()) and float(hr.max()) <= 1.0
    assert torch.allclose(lr[:, 2], torch.full_like(lr[:, 2], 77 / 255))
    for _ in range(5):
        lr, hr = sampler.next()
        # HR patch is exactly the LR patch with every pixel repeated k x k, under every flip/rotation
        torch.testing.assert_close(hr, lr.repeat_interleave(k, 2).repeat_interleave(k, 3), rtol=0, atol=0)


def test_sampler_augments_with_all_8_flips_and_rotations():
    sampler = PatchSampler([_coordinate_pair(60, 60, 2)], 2, patch=6, batch=64, seed=3)
    seen = {_transform_of(patch) for _ in range(3) for patch in sampler.next()[0]}
    steps = {(1, 0), (-1, 0), (0, 1), (0, -1)}
    assert len(seen) == 8 and all(di in steps and dj in steps and di[0] * dj[0] == 0 for di, dj in seen)
    plain = PatchSampler([_coordinate_pair(60, 60, 2)], 2, patch=6, batch=64, seed=3, augment=False)
    assert {_transform_of(patch) for patch in plain.next()[0]} == {((1, 0), (0, 1))}


def test_sampler_covers_every_crop_position():
    sampler = PatchSampler([_coordinate_pair(10, 12, 2)], 2, patch=8, batch=256, augment=False)
    lr, _ = sampler.next()
    corners = {(round(float(t[0, 0, 0]) * 255), round(float(t[1, 0, 0]) * 255)) for t in lr}
    assert corners == {(y, x) for y in range(3) for x in range(5)}


def test_sampler_same_seed_same_batches_different_seed_different():
    pairs = [_coordinate_pair(40, 40, 2), ImagePair("r", _rand((60, 80, 3)), _rand((30, 40, 3), 1))]
    a, b, c = (PatchSampler(pairs, 2, patch=12, batch=4, seed=s) for s in (7, 7, 8))
    for _ in range(3):
        (la, ha), (lb, hb), (lc, _) = a.next(), b.next(), c.next()
        assert torch.equal(la, lb) and torch.equal(ha, hb)
        assert not torch.equal(la, lc)


def test_sampler_ignores_global_rng():
    pairs = [_coordinate_pair(40, 40, 2)]
    np.random.seed(0), torch.manual_seed(0)
    first = PatchSampler(pairs, 2, patch=12, batch=4).next()[0]
    np.random.seed(1), torch.manual_seed(1)
    assert torch.equal(first, PatchSampler(pairs, 2, patch=12, batch=4).next()[0])


def test_sampler_state_dict_resumes_the_same_stream():
    pairs = [_coordinate_pair(40, 40, 2), _coordinate_pair(25, 33, 2, "b")]
    a = PatchSampler(pairs, 2, patch=10, batch=5, seed=11)
    for _ in range(3):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))  # survives a checkpoint round trip
    expected = [a.next() for _ in range(2)]
    b = PatchSampler(pairs, 2, patch=10, batch=5, seed=11)
    b.load_state_dict(state)
    assert b.batches == 3
    for lr_hr, (lr, hr) in zip(expected, (b.next() for _ in range(2))):
        assert torch.equal(lr_hr[0], lr) and torch.equal(lr_hr[1], hr)
    other = PatchSampler(pairs, 2, patch=12, batch=5, seed=11)
    with pytest.raises(DatasetError, match="resume with the same data and settings"):
        other.load_state_dict(state)


def test_sampler_image_smaller_than_patch_names_the_image():
    pairs = [_coordinate_pair(60, 60, 2), _coordinate_pair(30, 47, 2, "tiny")]
    with pytest.raises(DatasetError, match=r"image 'tiny': LR 47x30 is smaller than the 48x48 patch"):
        PatchSampler(pairs, 2, patch=48)
    with pytest.warns(UserWarning, match=r"dropped 1 images smaller than the 48x48 LR patch: tiny"):
        sampler = PatchSampler(pairs, 2, patch=48, drop_small=True)
    assert len(sampler) == 1
    with pytest.raises(DatasetError, match="no image with an LR side >= 48"), pytest.warns(UserWarning):
        PatchSampler(pairs[1:], 2, patch=48, drop_small=True)


def test_sampler_rejects_wrong_scale_pairs():
    with pytest.raises(DatasetError, match=r"'coords' is a x2 pair but the sampler is x4"):
        PatchSampler([_coordinate_pair(60, 60, 2)], 4, patch=8)


# ---------------------------------------------------------------- embedded split


def test_embedded_default_split_needs_no_download():
    train, val = embedded.default_split(scale=4)
    assert [p.name for p in train] == [Path(f).stem for f in embedded.TRAIN]
    test = list(embedded.test_split(scale=4))
    assert [p.name for p in val] == ["chelsea", "camera", "coins"]
    assert [p.name for p in test] == ["coffee", "rocket", "page"]
    names = [p.name for p in train + val + test]
    assert len(set(names)) == len(names) == 15  # three disjoint roles
    patched = {p.name for p in train + val}  # test images are only evaluated (page is 47 px high at x4)
    for p in train + val + test:
        assert p.scale == 4 and min(p.lr.shape[:2]) >= (48 if p.name in patched else 47)
        np.testing.assert_array_equal(p.lr, bicubic_lr(p.hr, 4))
    camera = val[1]
    assert np.array_equal(camera.hr[..., 0], camera.hr[..., 2])  # grey source expanded to R=G=B
    lr, hr = PatchSampler(train, 4, patch=48, batch=2).next()
    assert hr.shape == (2, 3, 192, 192)
