"""Data of a trial and its final evaluation: benchmarks (PSNR/SSIM), DI, Table 4.7 region PSNR, figures.

Held out: validation images select the model (the best checkpoint), test images report it, and the two are
disjoint by construction. Test sets: with a data root, the requested benchmarks in the EDSR layout (HardCases only
when its folder exists); without one, the embedded *test* split (never the validation images), logged as
psnr_embedded / ssim_embedded. `held_out` names and hashes both roles at the start of a trial (logged as the run's
data/images.json) and refuses a test image that is also a validation image, and a HardCases-R build (or its
control tiles, evaluated as hardcases_rc beside it) with a tile cut from a validation image (its manifest names
each tile's source file and hash). `max_eval_images` keeps the first n
images of every set and `eval_crop` > 0 evaluates LR centre crops of that side (smoke budgets: RNAN's all-pairs
attention makes whole images cost minutes on a CPU). Validation images are LR centre crops of `val_crop` (a
reading: model selection on fixed central crops; RNAN's attention over a whole DIV2K-valid image outweighed its
training); the final evaluation stays on whole images, the thesis's protocol.

DI (metric `di`): the mean DI of srprior.method.lam.di_maps on the documented LAM protocol images (LAM_demo under the data
root, 256×256 HR) or, without a data root, on 64×64-LR centre crops of the embedded test images; one
centred 16×16 window per image. RNAN's non-local blocks keep N×N affinities per path point for the backward
(N = LR pixels), so its LAM batches only as many path points as fit LAM_MEMORY (LAMConfig.chunk: same result).

Table 4.7 (psnr_total / psnr_ssr / psnr_poi): analysis.region_evaluation, the one implementation shared with the
analyses: per image, the extractor picks N_SSR = 5 non-overlapping SSRs anywhere in the image ("arbitrary") for
a 17×17 PoI (analysis.TABLE_4_7) and PSNR is measured on the SSRs and the PoI; every image counts, valid
extraction or not; "Total" is the mean of SSR and PoI PSNR, as the thesis's printed rows show. The set is HardCases (256×256 HR sub-images) when present; otherwise 256×256 HR centre crops of the last
evaluated set (Urban100 with the full list: HardCases was cut from Urban100 and DIV2K; or the embedded images),
recorded in the tag srprior.region_set. Crops keep the extractor's O(N_P·H·W) memory small.

Figures (`figure_dir`): sr_comparison.png (bicubic | SR | HR of the first region image), ssm.png (the trial's own
extractor on its LR crop) and lam.png (the first DI window's LAM map, the one DI measured: no second LAM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from srprior.contracts import (BENCHMARK_DIRS, BICUBIC, CONTROL_DIR, CONTROL_SET, DI, LAST, OPTIONAL_BENCHMARKS,
                               REGION_METRICS, REGION_SET, SELECTED)
from srprior.schema import TrialConfig

REGION_CROP = 256  # HR side of a HardCases image
EMBEDDED_DI_CROP = 64  # LR side of the embedded DI crops
LAM_MEMORY = 2**31  # bytes of RNAN affinities per LAM backward (2 blocks × 3 N×N fp32 tensors per point)


def _first(items: list, n: int) -> list:
    return items[:n] if n else items


def _crop(pair, side: int):
    """ImagePair of the LR centre crop of `side` (HR: the same region) — whole image when it is smaller."""
    from srprior.data.datasets import ImagePair

    h, w = pair.lr.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    lr = pair.lr[y:y + side, x:x + side]
    k = pair.hr.shape[0] // h
    hr = pair.hr[y * k:(y + lr.shape[0]) * k, x * k:(x + lr.shape[1]) * k]
    return ImagePair(pair.name, np.ascontiguousarray(hr), np.ascontiguousarray(lr))


def training_data(cfg: TrialConfig) -> tuple[list, list]:
    """(train, val) ImagePairs: a DIV2K root (with its valid split), a folder of HR images, or the embedded
    default. Validation uses DIV2K's valid split when training on DIV2K, else the embedded validation images."""
    from srprior.data import datasets, embedded

    data, scale = cfg.data, cfg.model.scale
    if data.train_root is None:
        train, val = embedded.default_split(scale)
    else:
        root = Path(data.train_root)
        if (root / "DIV2K_train_HR").is_dir() or (root / "DIV2K" / "DIV2K_train_HR").is_dir():
            train, val = datasets.div2k(root, "train", scale), datasets.div2k(root, "valid", scale)
        else:
            train, val = datasets.load_folder(root, scale), embedded.default_split(scale)[1]
    val = _first(val, data.val_images)
    side = validation_crop(data)
    return train, [_crop(p, side) for p in val] if side else val


def validation_crop(data) -> int:
    """LR side of the validation crops: val_crop (model selection, a reading), or eval_crop when it is smaller
    (smoke budgets crop everything); 0: whole images."""
    sides = [s for s in (data.val_crop, data.eval_crop) if s]
    return min(sides) if sides else 0


def eval_sets(cfg: TrialConfig) -> dict[str, list]:
    """Metric suffix -> test ImagePairs (see the module docstring)."""
    from srprior.data import datasets, embedded

    data = cfg.data
    if data.data_root is None:
        pairs = _first(list(embedded.test_split(cfg.model.scale)), data.max_eval_images)
        return {"embedded": [_crop(p, data.eval_crop) for p in pairs] if data.eval_crop else pairs}
    root, sets = Path(data.data_root), {}
    for name in data.benchmarks:
        present = any(p.is_dir() and p.name.lower() == BENCHMARK_DIRS[name].lower() for p in root.iterdir())
        if name in OPTIONAL_BENCHMARKS and not present:
            continue
        pairs = _first(datasets.benchmark(root, BENCHMARK_DIRS[name], cfg.model.scale), data.max_eval_images)
        sets[name] = [_crop(p, data.eval_crop) for p in pairs] if data.eval_crop else pairs
        if name == "hardcases_r" and (rebuilt_dir(root) / CONTROL_DIR / "HR").is_dir():  # its control tiles
            pairs = _first(datasets.benchmark(rebuilt_dir(root), CONTROL_DIR, cfg.model.scale), data.max_eval_images)
            sets[CONTROL_SET] = [_crop(p, data.eval_crop) for p in pairs] if data.eval_crop else pairs
    if not sets:
        raise ValueError(f"trial config: benchmarks={data.benchmarks} found nothing under data_root={root}")
    return sets


def di_inputs(cfg: TrialConfig) -> list[np.ndarray]:
    """LR images for DI (see the module docstring)."""
    from srprior.data import embedded
    from srprior.method.lam import di_images

    data = cfg.data
    if data.data_root:
        images = di_images(data.data_root, cfg.model.scale)
    else:
        images = [_crop(p, EMBEDDED_DI_CROP).lr for p in embedded.test_split(cfg.model.scale)]
    if data.eval_crop:
        images = [img[:data.eval_crop, :data.eval_crop] for img in images]
    return _first(images, data.max_eval_images)


def region_set(sets: dict[str, list], scale: int) -> tuple[str, list]:
    """(name, ImagePairs) for Table 4.7: HardCases as is, else centre crops of the last set."""
    for name in ("hardcases", "hardcases_r"):  # the original set, else its rebuild
        if name in sets:
            return name, sets[name]
    name = list(sets)[-1]
    return f"{name}-crop{REGION_CROP}", [_crop(p, REGION_CROP // scale) for p in sets[name]]


def lam_config(preset: str, images: list[np.ndarray]):
    """LAM settings: the reference protocol; for an architecture whose memory is quadratic in the pixels (RNAN),
    path points per backward bounded by LAM_MEMORY."""
    from srprior.archs import arch_of
    from srprior.method.lam import LAMConfig

    if not arch_of(preset).quadratic_memory:
        return LAMConfig()
    n = max(img.shape[0] * img.shape[1] for img in images)
    return LAMConfig(chunk=int(min(LAMConfig.chunk, max(1, LAM_MEMORY // (24 * n * n)))))


def shave(cfg: TrialConfig) -> int:
    """Border pixels cropped before PSNR/SSIM: the scale (the SR literature's scripts) + the extra reading."""
    return cfg.model.scale + cfg.data.extra_shave


def _digest(pair) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(pair.hr).tobytes()).hexdigest()[:16]


def held_out(cfg: TrialConfig, val: list) -> dict[str, Any]:
    """{"val": [name:hash], "test": {set: [name:hash]}} of the pixels each role uses; raises when a test image is
    also a validation image (same pixels), or a HardCases-R tile is cut from one, before any step is trained."""
    from srprior.data.datasets import DatasetError

    val_ids = [f"{p.name}:{_digest(p)}" for p in val]
    sets = eval_sets(cfg)
    test = {name: [f"{p.name}:{_digest(p)}" for p in pairs] for name, pairs in sets.items()}
    seen = {i.rsplit(":", 1)[1] for i in val_ids}
    shared = sorted({i for ids in test.values() for i in ids if i.rsplit(":", 1)[1] in seen})
    if shared:
        raise DatasetError(f"test images {shared} are also validation images (model selection); use a validation "
                           "split disjoint from data_root's benchmarks")
    if "hardcases_r" in sets:
        _rebuilt_tiles_held_out(cfg, val)
    return {"val": val_ids, "test": test}


def rebuilt_dir(root: Path) -> Path:
    """The HardCases-R build under a data root."""
    from srprior.data.datasets import benchmark_dirs

    return benchmark_dirs(root, BENCHMARK_DIRS["hardcases_r"], 2)[0].parent


def _rebuilt_tiles_held_out(cfg: TrialConfig, val: list) -> None:
    """Refuse a HardCases-R build with a tile (selected or control) cut from one of this trial's validation
    images: the manifest names every tile's source file and its SHA-256, compared with the validation files'."""
    import hashlib
    import json

    from srprior.data.datasets import DatasetError

    folder = rebuilt_dir(Path(cfg.data.data_root))
    manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").is_file() else {}
    tiles = [*manifest.get("images", ()), *manifest.get("control", {}).get("images", ())]
    files = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in _validation_files(cfg, val)}
    bad = next((t for t in tiles if t.get("source_sha256") in files), None)
    if bad is not None:
        raise DatasetError(f"{folder / 'manifest.json'}: tile {bad['name']} is cut from {files[bad['source_sha256']]}, "
                           "a validation image of this trial (model selection); rebuild HardCases-R with "
                           "`srprior data hardcases` (its candidates never include DIV2K_valid_HR)")


def _validation_files(cfg: TrialConfig, val: list) -> list[Path]:
    """The image files behind the validation pairs (DIV2K's valid split; the embedded default has none)."""
    from srprior.data import datasets

    root = Path(cfg.data.train_root) if cfg.data.train_root else None
    if root is None or not ((root / "DIV2K_valid_HR").is_dir() or (root / "DIV2K" / "DIV2K_valid_HR").is_dir()):
        return []
    hr_dir = datasets.div2k_dirs(root, "valid", cfg.model.scale)[0]
    names = {p.name for p in val}
    return [f for f in sorted(hr_dir.iterdir()) if f.is_file() and f.stem in names]


def bicubic_metrics(cfg: TrialConfig) -> dict[str, float]:
    """MATLAB-bicubic PSNR/SSIM on the trial's own evaluation sets (same crops, same shave): the reference row
    every report prints under the models (bicubic/psnr_<set>, bicubic/ssim_<set>)."""
    from srprior.evaluate import bicubic_baseline

    out = {}
    for name, pairs in eval_sets(cfg).items():
        scores = bicubic_baseline(pairs, cfg.model.scale, shave=shave(cfg))
        out[f"{BICUBIC}psnr_{name}"], out[f"{BICUBIC}ssim_{name}"] = scores["psnr"], scores["ssim"]
    return out


def set_metrics(model: torch.nn.Module, cfg: TrialConfig, device: torch.device,
                sets: dict[str, list] | None = None) -> dict[str, float]:
    """psnr_<set>, ssim_<set> of `model` on the trial's evaluation sets (default: all of eval_sets)."""
    from srprior.evaluate import evaluate

    model.eval()
    metrics = {}
    for name, pairs in (eval_sets(cfg) if sets is None else sets).items():
        scores = evaluate(model, pairs, cfg.model.scale, device, shave=shave(cfg))
        metrics[f"psnr_{name}"], metrics[f"ssim_{name}"] = scores["psnr"], scores["ssim"]
    return metrics


def final_metrics(model: torch.nn.Module, cfg: TrialConfig, device: torch.device, figure_dir: Path | None) -> tuple[dict[str, float], dict[str, str], list[Path]]:
    """(metrics, tags, figure files) of the trained `model` (rank 0 only; no DDP wrapper)."""
    from srprior.method.analysis import region_evaluation
    from srprior.method.lam import di_maps, diffusion_index

    scale = cfg.model.scale
    sets = eval_sets(cfg)
    metrics = set_metrics(model, cfg, device, sets)
    region_name, region_pairs = region_set(sets, scale)
    region = region_evaluation(model, region_pairs, scale, device=device)
    metrics.update({k: region.metrics[k] for k in REGION_METRICS})
    di_lrs = di_inputs(cfg)
    lam_cfg = lam_config(cfg.model.preset, di_lrs)
    wanted = di_lrs if cfg.data.di else di_lrs[:1] if figure_dir is not None else []
    maps = di_maps(model, wanted, scale, lam_cfg, cfg.data.di_channels) if wanted else []  # DI and the LAM figure
    if cfg.data.di:
        metrics[DI] = float(np.mean([diffusion_index(m) for _, _, m in maps]))
    files = [] if figure_dir is None else figures(cfg, region_name, region_pairs[0], region.example[1], maps[0],
                                                  figure_dir)
    return metrics, {REGION_SET: region_name}, files


def selected_metrics(last: torch.nn.Module, best: dict | None, cfg: TrialConfig, device: torch.device,
                     figure_dir: Path | None = None, full: bool = True) -> tuple[dict[str, float], dict[str, str],
                                                                                 list[Path]]:
    """The one evaluation of a trained trial: best/… of its best-validation weights `best` (a state_dict; None: the
    last step's are the best, one evaluation), with the figures, final/… of the `last` model's, and bicubic/… on
    the same sets. The trainer calls it at the end of a run, backfill on a stored checkpoint (`full=False`: PSNR and
    SSIM only; region metrics and DI keep the sets they were measured on)."""
    import copy

    def measure(model, figures):
        return final_metrics(model, cfg, device, figures) if full else (set_metrics(model, cfg, device), {}, [])

    if best is None:
        chosen, tags, files = measure(last, figure_dir)
        final = chosen
    else:
        selected = copy.deepcopy(last)
        selected.load_state_dict(best)
        chosen, tags, files = measure(selected, figure_dir)
        final = measure(last, None)[0]
    metrics = {**{f"{SELECTED}{k}": v for k, v in chosen.items()}, **{f"{LAST}{k}": v for k, v in final.items()},
               **bicubic_metrics(cfg)}
    return metrics, tags, files


def figures(cfg: TrialConfig, set_name: str, pair, sr: np.ndarray, lam_map: tuple, out: Path) -> list[Path]:
    """The trial's PNGs: bicubic | SR | HR of the first region image, the trial's own extractor on its LR crop
    (what L_AP trains on), and the LAM map of the first DI window. About half a second on a CPU."""
    import torch

    from srprior.evaluate import to_tensor
    from srprior.method.figures import lambda_text, sr_comparison, ssm_figure
    from srprior.method.lam import lam_figure
    from srprior.method.ssm import extract

    extractor = cfg.prior.extractor
    trial = f"{cfg.model.preset} · λ_AP = {lambda_text(cfg.prior.lambda_ap)}"
    ext = extract(to_tensor(pair.lr), extractor, generator=torch.Generator().manual_seed(0))
    lr, window, attribution = lam_map
    return [
        sr_comparison(pair.lr, sr, pair.hr, cfg.model.scale, out / "sr_comparison.png", shave(cfg),
                      f"{trial} · {set_name} '{pair.name}'"),
        ssm_figure(pair.lr, ext, 0, out / "ssm.png",
                   f"{trial} · scenario {extractor.scenario}, N_SSR = {extractor.n_ssr}"),
        lam_figure(lr, attribution, window, out / "lam.png", cfg.model.scale, f"{trial} · LAM ({cfg.data.di_channels})"),
    ]
