"""HardCases-R: Gu et al.'s HardCases protocol (LAM, CVPR 2021; thesis §4.2) rebuilt from public images.

The original 150 sub-images are not published, so ``srprior data hardcases`` (srprior.commands.data) re-runs
the protocol:

- candidates: the cells of a centred grid of non-overlapping 256×256 HR tiles of every Urban100 HR image:
  deterministic, no two overlap. Never DIV2K's validation images (Gu et al. also drew from them): trials trained
  on DIV2K select their weights on them, and a test tile cut from a validation image is not held out (trials
  refuse such a build: srprior.trainers.evaluation.held_out reads this manifest's source files);
- methods: MATLAB bicubic plus the platform's own trained models of at least two architectures, one
  checkpoint per preset, baselines only (λ_AP = 0: the method under test must not pick its own test set);
- score: Y-PSNR (srprior.metrics, shave = scale) of each method's SR of the crop's MATLAB-bicubic LR, rounded
  to 1e-4 dB, so float noise cannot flip the choice and the selection can be recomputed from the manifest;
- selection: rank sum = rank of the mean PSNR over methods (lowest = 1) + rank of its std over methods
  (highest = 1), ties averaged; the ``count`` smallest rank sums win, ties going to the lower mean, then name.

- control: ``count`` tiles drawn uniformly (without replacement, fixed seed CONTROL_SEED) from the same
  candidates, written beside the manifest as ``OUT/control/`` in the same layout: the same size and pool
  without the selection, so a claim's effect there minus its effect on HardCases-R shows what the selection
  recipe adds (the selectors share the compared baselines' architecture, data and recipe: tiles picked where
  that recipe errs most favour any challenger whose errors differ, by regression to the mean).

Output, in the EDSR benchmark layout (so ``datasets.benchmark(ROOT, "HardCases", 2)`` reads it from a data root
holding it as ``HardCases/``): ``OUT/HR/NAME.png`` (256×256), ``OUT/LR_bicubic/X{k}/NAMEx{k}.png``,
``OUT/control/{HR,LR_bicubic}/…`` and ``OUT/manifest.json`` (protocol, methods with checkpoint hashes, every
candidate's scores, per image — selected and control — the source file and hash, crop box, scores and the
SHA256 of its files). No timestamps: a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from srprior.checksum import sha256_file
from srprior.contracts import CHECKPOINT_FILE, SELECTOR_SEEDS
from srprior.trainers.checkpoints import find_checkpoints, member_model, member_states
from srprior.errors import UserError

PROTOCOL = "hardcases-r/3"  # 2: selectors on reserved seeds, best weights, bicubic out of the spread; 3: no DIV2K
# validation tiles, a control set
CONTROL_SEED = 20231  # the control tiles' draw (numpy default_rng)
CROP, COUNT = 256, 150
DEFAULT_OUT = Path("outputs/data/HardCases-R")
GET_CHECKPOINTS = ("train the selectors first: `srprior sweep --table selectors --rows edsr-t/baseline,"
                   "rcan-t/baseline` (--budget smoke trains their micro versions on a CPU), then pass "
                   "--checkpoints outputs (or checkpoint_* folders / state.pt files)")


class HardCasesError(UserError, ValueError):
    """Bad input for HardCases-R; the message names the file or option and the fix."""


# ---------------------------------------------------------------------------------------------- protocol
def grid(height: int, width: int, crop: int = CROP) -> list[tuple[int, int]]:
    """(top, left) of the non-overlapping crop×crop tiles of a centred grid (margins split evenly)."""
    ny, nx = height // crop, width // crop
    y0, x0 = (height - ny * crop) // 2, (width - nx * crop) // 2
    return [(y0 + i * crop, x0 + j * crop) for i in range(ny) for j in range(nx)]


def select(psnr: np.ndarray, names: Sequence[str], count: int) -> list[int]:
    """Indices of the `count` hardest candidates, hardest first; `psnr` is (candidates, methods)."""
    psnr = np.asarray(psnr, dtype=np.float64)
    if psnr.ndim != 2 or psnr.shape[1] < 2 or len(names) != psnr.shape[0]:
        raise HardCasesError(f"select: need (candidates, methods >= 2) scores and one name per candidate, got "
                             f"{psnr.shape} scores and {len(names)} names")
    if not 0 < count <= len(names):
        raise HardCasesError(f"--count {count}: must be between 1 and the number of candidates ({len(names)}); "
                             "add source images or lower --count")
    score, mean = rank_sum(psnr), psnr.mean(axis=1)
    return sorted(range(len(names)), key=lambda i: (score[i], mean[i], names[i]))[:count]


def rank_sum(psnr: np.ndarray) -> np.ndarray:
    """Per candidate: rank of its mean PSNR over methods (lowest = 1) + rank of its std (highest = 1)."""
    from scipy.stats import rankdata

    return rankdata(psnr.mean(axis=1)) + rankdata(-psnr.std(axis=1))


def sources(root: Path) -> list[tuple[str, Path]]:
    """(label, HR folder) of the candidate pools under the data root: Urban100 (never DIV2K's validation images,
    which DIV2K-trained trials select on)."""
    urban = root / "Urban100" / "HR"
    if not urban.is_dir():
        raise HardCasesError(f"{urban}: Urban100 HR folder missing; --root must hold Urban100/HR "
                             "(`srprior data download benchmarks --root DIR`)")
    return [("Urban100", urban)]


def control_indices(n_candidates: int, count: int) -> list[int]:
    """The control tiles: `count` candidates drawn uniformly without replacement (seed CONTROL_SEED), sorted."""
    rng = np.random.default_rng(CONTROL_SEED)
    return sorted(rng.choice(n_candidates, size=min(count, n_candidates), replace=False).tolist())


def cpu_archs() -> tuple[str, ...]:
    """The architectures whose selectors score on a CPU: not those whose evaluation memory is quadratic in the
    pixels (RNAN's all-pairs attention makes 1000 candidates hours of CPU time)."""
    from srprior.archs import ARCHS

    return tuple(name for name, spec in ARCHS.items() if not spec.quadratic_memory)


# ---------------------------------------------------------------------------------------------- checkpoints
def load_checkpoint_models(path: str | Path, weights: str = "best") -> list:
    """[(model in eval mode, Trial)] of a checkpoint: one, or every member of a fused group. weights: "best"
    (the best-validation weights the checkpoint keeps, what reports evaluate) or "last"."""
    import torch

    from srprior.trainers.checkpoints import load_state

    path = Path(path)
    try:
        out = [member_model(member, weights) for member in member_states(load_state(path, torch.device("cpu")))]
    except (KeyError, TypeError) as exc:
        raise HardCasesError(f"{path}: checkpoint lacks {exc} (needs 'model' and 'trial', as the platform's "
                             "training workers write them); re-train with this srprior version") from None
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise HardCasesError(f"{path}: not a loadable srprior checkpoint ({str(exc).splitlines()[0]}); "
                             "pass state.pt files written by the platform's training workers") from None
    return out


def _checkpoint_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / CHECKPOINT_FILE).is_file():
            files.append(p / CHECKPOINT_FILE)
        elif p.is_dir():
            files += find_checkpoints(p)
        else:
            raise HardCasesError(f"--checkpoints {p}: no such file or folder; {GET_CHECKPOINTS}")
    return sorted(set(files))


def _why_not(trial: Any, scale: int) -> str | None:
    """Why a checkpoint's trial cannot select crops (None: it is a selector)."""
    cfg = trial.config
    if cfg.model.scale != scale:
        return f"x{cfg.model.scale}"
    if cfg.prior.lambda_ap > 0:
        return f"λ_AP={cfg.prior.lambda_ap:g}"
    if trial.seed < SELECTOR_SEEDS[0]:
        return f"seed {trial.seed} is a table seed"
    return None


def methods(paths: Iterable[str | Path], scale: int, archs: Sequence[str] | None = None) -> list[dict]:
    """The selectors, one method per preset: every checkpoint of a λ_AP = 0 baseline at `scale` trained on a
    reserved seed (contracts.SELECTOR_SEEDS), best-validation weights, in run-key order (a key found twice: its
    first checkpoint in path order). Errors unless they span two architectures."""
    from srprior.archs import arch_of

    chosen: dict[str, dict] = {}
    skipped, keys = [], set()
    for path in _checkpoint_files(paths):
        for model, trial in load_checkpoint_models(path):
            preset = trial.config.model.preset
            if archs is not None and arch_of(preset).name not in archs:
                continue
            if (why := _why_not(trial, scale)) is not None:
                skipped.append(f"{path.parent.parent.name} ({why})")
            elif trial.key not in keys:
                keys.add(trial.key)
                method = chosen.setdefault(preset, {"name": preset, "arch": arch_of(preset).name, "members": []})
                method["members"].append({"key": trial.key, "checkpoint": str(path), "sha256": sha256_file(path),
                                          "trial": trial.to_dict(), "model": model})
    for method in chosen.values():
        method["members"].sort(key=lambda m: m["key"])
    if len({m["arch"] for m in chosen.values()}) < 2:
        found = ", ".join(f"{m['name']} ({m['arch']})" for m in chosen.values()) or "none"
        extra = f"; skipped: {', '.join(sorted(set(skipped)))}" if skipped else ""
        raise HardCasesError(f"HardCases-R is selected by x{scale} baselines (λ_AP = 0) on the reserved seeds "
                             f"{SELECTOR_SEEDS} of at least two architectures, found: {found}{extra}; "
                             f"{GET_CHECKPOINTS}")
    return [chosen[name] for name in sorted(chosen)]


def selector_keys(manifest: dict) -> set[str]:
    """Run keys of the networks that chose a HardCases-R build."""
    return set(manifest.get("selector_keys", ()))


# ---------------------------------------------------------------------------------------------- building
def _candidates(pools: list[tuple[str, Path]], max_candidates: int) -> list[dict]:
    from srprior.data.datasets import _image_files

    found = []
    for label, folder in pools:
        for path in _image_files(folder):
            with Image.open(path) as img:  # the header only; pixels are read (strictly) when scored
                width, height = img.size
            for top, left in grid(height, width):
                found.append({"name": f"{label.lower()}_{path.stem}_y{top:04d}_x{left:04d}", "source": label,
                              "path": path, "box": [top, left, CROP, CROP]})
    if max_candidates and len(found) > max_candidates:  # evenly spread over the sources, deterministic
        keep = np.unique(np.linspace(0, len(found) - 1, max_candidates).round().astype(int))
        found = [found[i] for i in keep]
    return found


def _scores(candidates: list[dict], models: list[dict], scale: int, device: str, progress: bool) -> np.ndarray:
    """(candidates, 1 + methods) Y-PSNR, bicubic first, a method's being the mean over its selector networks;
    rounded to 1e-4 dB."""
    from tqdm import tqdm

    from srprior.data.imresize import bicubic_lr, modcrop
    from srprior.data.io import read_image
    from srprior.evaluate import bicubic_upscale, super_resolve
    from srprior.metrics import psnr

    for m in (m for method in models for m in method["members"]):
        m["model"].to(device)
    out, image, loaded = np.empty((len(candidates), 1 + len(models))), None, None
    for i, c in enumerate(tqdm(candidates, desc="HardCases-R candidates", unit="crop", disable=not progress)):
        if loaded != c["path"]:
            image, loaded = read_image(c["path"]), c["path"]
        top, left, h, w = c["box"]
        hr = image[top:top + h, left:left + w]
        lr, ref = bicubic_lr(hr, scale), modcrop(hr, scale)
        out[i, 0] = psnr(bicubic_upscale(lr, scale), ref, scale)
        for j, method in enumerate(models, 1):
            out[i, j] = np.mean([psnr(super_resolve(m["model"], lr, device), ref, scale) for m in method["members"]])
    return np.round(out, 4)


def _write_png(arr: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)
    return sha256_file(path)


def _check_out(out: Path) -> None:
    """`out` may be new, empty or an earlier HardCases-R build (replaced); never overwrite other files."""
    if not out.exists():
        return
    manifest = out / "manifest.json"
    ours = manifest.is_file() and json.loads(manifest.read_text()).get("protocol", "").startswith("hardcases-r")
    if not (out.is_dir() and (ours or not any(out.iterdir()))):
        raise HardCasesError(f"--out {out}: exists and is not a HardCases-R build; choose an empty or new folder")


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished build to `out` (checked again: the scoring took minutes)."""
    _check_out(out)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _write_images(candidates: list[dict], picked: list[int], psnr: np.ndarray, method_names: list[str],
                  root: Path, tmp: Path, scale: int, with_bicubic: bool) -> list[dict]:
    """The picked crops' HR and LR files written under `tmp`; their manifest entries (hashes, scores, box)."""
    from srprior.data.imresize import bicubic_lr
    from srprior.data.io import read_image

    images, scores = [], rank_sum(psnr if with_bicubic else psnr[:, 1:])
    for i in picked:
        c = candidates[i]
        top, left, h, w = c["box"]
        hr = read_image(c["path"])[top:top + h, left:left + w]
        files = {f"HR/{c['name']}.png": hr, f"LR_bicubic/X{scale}/{c['name']}x{scale}.png": bicubic_lr(hr, scale)}
        images.append({
            "name": c["name"], "source": c["source"], "source_file": c["path"].relative_to(root).as_posix(),
            "source_sha256": sha256_file(c["path"]), "box": {"top": top, "left": left, "height": h, "width": w},
            "psnr": dict(zip(method_names, psnr[i].tolist())), "mean_psnr": round(float(psnr[i].mean()), 4),
            "std_psnr": round(float(psnr[i].std()), 4), "rank_sum": float(scores[i]),
            "files": {rel: _write_png(arr, tmp / rel) for rel, arr in files.items()}})
    return images


def build(root: str | Path, out: str | Path, checkpoints: Iterable[str | Path], scale: int = 2,
          count: int = COUNT, max_candidates: int = 0, device: str = "cpu", threads: int = 1,
          progress: bool = False, archs: Sequence[str] | None = None, with_bicubic: bool = False) -> dict:
    """Build HardCases-R from the images under `root` into `out`; returns the manifest.

    archs: the architectures whose selectors score (None: every one found). with_bicubic: bicubic counts in the
    mean and spread (Gu et al. list it among their methods; off by default, since an interpolator's failures say
    little about where *networks* disagree).
    threads: torch CPU threads while scoring. One by default: a 128×128 crop through a micro model is too little
    work to split, and on a busy 2-core machine two threads ran 7× slower than one (they wait on each other).
    """
    import torch

    root, out = Path(root), Path(out)
    _check_out(out)
    models = methods(checkpoints, scale, archs)
    pools = sources(root)
    candidates = _candidates(pools, max_candidates)
    names = [c["name"] for c in candidates]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        psnr = _scores(candidates, models, scale, device, progress)
    finally:
        torch.set_num_threads(before)
    picked = select(psnr if with_bicubic else psnr[:, 1:], names, count)
    method_names = ["bicubic", *(m["name"] for m in models)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would outlive the rename
    try:
        images = _write_images(candidates, picked, psnr, method_names, root, tmp, scale, with_bicubic)
        control = _write_images(candidates, control_indices(len(candidates), count), psnr, method_names, root,
                                tmp / "control", scale, with_bicubic)
        manifest = {
            "protocol": PROTOCOL, "scale": scale, "crop": CROP, "count": count,
            "selection": "rank sum of the mean Y-PSNR over methods (ascending) and its std over methods (descending), "
                         "scipy rankdata average ties, PSNR rounded to 1e-4 dB; ties: lower mean, then name; "
                         "a method's PSNR is the mean over its selector networks (reserved seeds, best weights)",
            "with_bicubic": with_bicubic,
            "sources": [{"name": label, "folder": folder.relative_to(root).as_posix()} for label, folder in pools],
            "methods": [{"name": "bicubic", "kind": "MATLAB bicubic (srprior.evaluate.bicubic_upscale)",
                         "in_selection": with_bicubic}] + [
                {"name": m["name"], "arch": m["arch"], "in_selection": True,
                 "members": [{k: x[k] for k in ("key", "checkpoint", "sha256", "trial")} for x in m["members"]]}
                for m in models],
            "selector_keys": sorted(k for m in models for k in (x["key"] for x in m["members"])),
            "mean_psnr": dict(zip(method_names, np.round(psnr.mean(axis=0), 4).tolist())),  # over all candidates
            "candidates": {"names": names, "psnr": psnr.tolist()},
            "images": images,
            "control": {"seed": CONTROL_SEED, "folder": "control",
                        "draw": "numpy default_rng(seed).choice(candidates, count, replace=False), sorted",
                        "images": control},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n", encoding="utf-8")
        _replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest
