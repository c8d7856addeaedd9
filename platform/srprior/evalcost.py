"""What a trial's evaluation costs in FLOPs: validation (every val_every steps over the validation images), the
final evaluation (each pass: best and last weights, every benchmark set, the Table 4.7 region set) and DI (LAM:
50 path points, forward and input gradient, per image), at the image sizes of the sets the trial will read.

Why: evaluation runs on whole images, not 48×48 patches, and RNAN's non-local attention is quadratic in pixels —
one 678×1020 LR image costs RNAN-T ~186 TFLOP, 99 % of it the N×N affinities, so whole-image validation outweighed
an RNAN-T trial's training. The FLOPs are counted like the training step's (srprior.cost: torch's FLOP formulas
on the meta device), per distinct image shape; RNAN's non-local block forms its affinities in query chunks for
large images, and the count keeps that code path (the chunked path recomputes theta·phi once for the softmax
normaliser) with two chunks instead of thousands: the matmul FLOPs of a partition of the queries are the same.

Image sizes: read from the image headers of the chosen sets when they are on this machine; otherwise the sets'
documented sizes (DOCUMENTED), and the plan says which. A thesis-sized trial without --train-root / --data-root
is priced on the thesis's protocol (DIV2K valid, the benchmarks, the LAM images) at their documented sizes: the
run itself would fall back on the small embedded images, which is not a reproduction.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# HR (height, width) × count of each set when its files are absent (DIV2K valid: 2040×1356 is its typical size, the
# issue's 678×1020 LR; Set5/Set14/Urban100: typical sizes of the published sets; BSD100 and LAM: exact)
DOCUMENTED = {"div2k-valid": (100, 1356, 2040), "set5": (5, 336, 336), "set14": (14, 480, 500),
              "bsd100": (100, 321, 481), "urban100": (100, 768, 1024), "lam": (7, 256, 256)}
LAM_STEPS = 50  # srprior.method.lam.LAMConfig.steps: path points, each a forward and an input-gradient backward


@dataclass(frozen=True)
class Images:
    """LR (height, width) of the images one evaluation role reads, and where the sizes come from."""

    name: str
    shapes: tuple[tuple[int, int], ...]
    source: str  # "read" (image headers) or "documented (...)": an assumption the plan prints


@dataclass(frozen=True)
class EvalFlops:
    """One trial's evaluation FLOPs (forward passes in fp32, as srprior.evaluate runs them)."""

    validation: float  # all validations of the trial
    final: float  # all final-evaluation passes (benchmarks + region set)
    di: float  # LAM of every DI image, in every pass
    validations: int
    passes: int
    images: tuple[Images, ...]  # validation first

    @property
    def total(self) -> float:
        return self.validation + self.final + self.di


def _micro(preset: str) -> bool:
    return preset.endswith("-micro")


def _header_shapes(files: list[Path], scale: int) -> tuple[tuple[int, int], ...]:
    """LR sizes of HR image files from their headers (PIL reads no pixels): modcrop, then / scale."""
    from PIL import Image

    out = []
    for f in files:
        with Image.open(f) as img:
            w, h = img.size
        out.append((h // scale, w // scale))
    return tuple(out)


def _documented(name: str, scale: int, why: str) -> Images:
    n, h, w = DOCUMENTED[name]
    return Images(name, ((h // scale, w // scale),) * n, f"documented size {w}×{h} HR (assumed: {why})")


def _first(shapes: tuple, n: int) -> tuple:
    return shapes[:n] if n else shapes


def _cropped(images: Images, side: int) -> Images:
    if not side:
        return images
    return Images(images.name, tuple((min(h, side), min(w, side)) for h, w in images.shapes), images.source)


def validation_images(config: Any) -> Images:
    """The validation images of a trial (srprior.trainers.evaluation.training_data), before the validation crop."""
    from srprior.data import datasets, embedded

    data, scale = config.data, config.model.scale
    root = Path(data.train_root) if data.train_root else None
    if root is not None and ((root / "DIV2K_valid_HR").is_dir() or (root / "DIV2K" / "DIV2K_valid_HR").is_dir()):
        hr_dir = datasets.div2k_dirs(root, "valid", scale)[0]
        found = Images("div2k-valid", _header_shapes(datasets._image_files(hr_dir), scale), "read")
    elif root is None and not _micro(config.model.preset):
        found = _documented("div2k-valid", scale, "no --train-root; the thesis protocol validates on DIV2K valid")
    else:
        files = [embedded.data_dir() / f for f in embedded.VAL]
        found = Images("embedded-val", _header_shapes(files, scale), "read")
    return Images(found.name, _first(found.shapes, data.val_images), found.source)


def benchmark_images(config: Any) -> list[Images]:
    """The final evaluation's sets (srprior.trainers.evaluation.eval_sets), eval_crop applied."""
    from srprior.contracts import BENCHMARK_DIRS, OPTIONAL_BENCHMARKS
    from srprior.data import datasets, embedded

    data, scale = config.data, config.model.scale
    sets = []
    if data.data_root is None and _micro(config.model.preset):
        sets.append(Images("embedded", _header_shapes([embedded.data_dir() / f for f in embedded.TEST], scale),
                           "read"))
    root = Path(data.data_root) if data.data_root else None
    for name in data.benchmarks if root or not _micro(config.model.preset) else ():
        if root and any(p.is_dir() and p.name.lower() == BENCHMARK_DIRS[name].lower() for p in root.iterdir()):
            hr_dir = datasets.benchmark_dirs(root, BENCHMARK_DIRS[name], scale)[0]
            sets.append(Images(name, _header_shapes(datasets._image_files(hr_dir), scale), "read"))
        elif name not in OPTIONAL_BENCHMARKS:
            sets.append(_documented(name, scale, f"{BENCHMARK_DIRS[name]} is not under --data-root"
                                    if data.data_root else "no --data-root"))
    return [_cropped(Images(s.name, _first(s.shapes, data.max_eval_images), s.source), data.eval_crop) for s in sets]


def region_images(config: Any, sets: list[Images]) -> Images:
    """Table 4.7's set (srprior.trainers.evaluation.region_set): HardCases as is, else crops of the last set."""
    from srprior.trainers.evaluation import REGION_CROP

    for s in sets:
        if s.name in ("hardcases", "hardcases_r"):
            return s
    last = sets[-1]
    crops = Images(f"{last.name}-crop{REGION_CROP}", last.shapes, last.source)
    return _cropped(crops, REGION_CROP // config.model.scale)


def di_images(config: Any) -> Images:
    """LR images of DI (srprior.trainers.evaluation.di_inputs)."""
    from srprior.data import embedded
    from srprior.method.lam import DI_IMAGES
    from srprior.trainers.evaluation import EMBEDDED_DI_CROP

    data, scale = config.data, config.model.scale
    if data.data_root and all((Path(data.data_root) / rel).is_file() for rel in DI_IMAGES):
        found = Images("lam", _header_shapes([Path(data.data_root) / rel for rel in DI_IMAGES], scale), "read")
    elif data.data_root or not _micro(config.model.preset):
        found = _documented("lam", scale, "LAM_demo is not under --data-root" if data.data_root else "no --data-root")
    else:
        shapes = _header_shapes([embedded.data_dir() / f for f in embedded.TEST], scale)
        found = _cropped(Images("embedded-crops", shapes, "read"), EMBEDDED_DI_CROP)
    return _cropped(Images(found.name, _first(found.shapes, data.max_eval_images), found.source), data.eval_crop)


def flop_counter() -> Any:
    """A dispatch mode adding up torch's FLOP formulas (torch.utils.flop_counter) of every op it sees (`.flops`).

    torch's FlopCounterMode itself cannot wrap the prior step (its module tracker's backward hooks reject
    `autograd.backward(inputs=...)` inside a double backward), so its formulas are applied by a bare dispatch
    mode; srprior.cost counts training steps with it."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class Count(TorchDispatchMode):
        registry = FlopCounterMode().flop_registry
        flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            formula = self.registry.get(func._overloadpacket)
            if formula is not None:
                self.flops += formula(*args, **(kwargs or {}), out_val=out)
            return out

    return Count()


@contextlib.contextmanager
def _two_chunks(model: Any):
    """RNAN's non-local blocks take their chunked path (the one real images take) in two query chunks: the count
    is the same, the meta-device dispatch thousands of times shorter."""
    from srprior.archs.rnan import NonLocalBlock

    def pre(block: Any, args: tuple) -> None:
        b, _, h, w = args[0].shape
        n = h * w
        chunked = max(1, NonLocalBlock.max_elems // (b * n)) < n
        block.max_elems = b * n * -(-n // 2) if chunked else NonLocalBlock.max_elems

    hooks = [m.register_forward_pre_hook(pre) for m in model.modules() if isinstance(m, NonLocalBlock)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@functools.lru_cache(maxsize=None)
def image_flops(preset: str, scale: int, h: int, w: int, grad: bool = False) -> int:
    """FLOPs of one forward of an h×w LR image (batch 1) in eval mode; `grad`: plus the input-gradient backward
    (one LAM path point)."""
    import torch

    from srprior.archs import build_model
    with torch.device("meta"):
        model = build_model(preset, scale).eval()
        x = torch.empty(1, 3, h, w, requires_grad=grad)
    with _two_chunks(model), flop_counter() as counter, torch.set_grad_enabled(grad):
        out = model(x)
        if grad:
            torch.autograd.grad(out.sum(), x)
    return int(counter.flops)


AFFINE_PROBES = ((32, 48), (40, 56), (64, 64), (33, 47))  # LR shapes, odd sides included


@functools.lru_cache(maxsize=None)
def _affine(preset: str, scale: int, grad: bool) -> tuple[int, int] | None:
    """(a, b) when the preset's count is exactly a + b·pixels at every probe shape (stride-1 convolutions and
    per-image constants: EDSR, RCAN), else None (RNAN: attention is quadratic, its mask branch rounds): then each
    distinct shape is counted (a Urban100 evaluation has ~40)."""
    (h0, w0), (h1, w1) = AFFINE_PROBES[:2]
    f0, f1 = image_flops(preset, scale, h0, w0, grad), image_flops(preset, scale, h1, w1, grad)
    b, rest = divmod(f1 - f0, h1 * w1 - h0 * w0)
    a = f0 - b * h0 * w0
    exact = not rest and all(image_flops(preset, scale, h, w, grad) == a + b * h * w for h, w in AFFINE_PROBES[2:])
    return (a, b) if exact else None


def shape_flops(preset: str, scale: int, h: int, w: int, grad: bool = False) -> int:
    """image_flops, from the affine form when the preset has one (exact: checked at AFFINE_PROBES)."""
    affine = _affine(preset, scale, grad)
    return affine[0] + affine[1] * h * w if affine else image_flops(preset, scale, h, w, grad)


def images_flops(preset: str, scale: int, images: Images, grad: bool = False) -> float:
    """FLOPs over a set's images: few distinct shapes counted directly, many through shape_flops."""
    count = shape_flops if len(set(images.shapes)) > len(AFFINE_PROBES) else image_flops
    return float(sum(count(preset, scale, h, w, grad) for h, w in images.shapes))


def validations(steps: int, val_every: int, ckpt_every: int | None = None) -> int:
    """How often srprior.trainers.loop validates: at every val_every-th and ckpt_every-th step and the last."""
    a, b = val_every, ckpt_every or val_every
    both = steps // a + steps // b - steps // math.lcm(a, b)  # multiples of either, counted once
    return both + (steps % a != 0 and steps % b != 0)


@functools.lru_cache(maxsize=None)
def trial_eval_flops(config: Any, ckpt_every: int | None = None, passes: int = 2) -> EvalFlops:
    """One trial's evaluation FLOPs; `passes` final evaluations (2: the best and the last weights, as
    srprior.trainers.loop.selected_metrics runs them unless the best step is the last)."""
    from srprior.trainers.evaluation import validation_crop

    preset, scale = config.model.preset, config.model.scale
    val = _cropped(validation_images(config), validation_crop(config.data))
    sets = benchmark_images(config)
    region, di = region_images(config, sets), di_images(config)
    n_val = validations(config.schedule.steps, config.schedule.val_every, ckpt_every)
    final = sum(images_flops(preset, scale, s) for s in (*sets, region))
    di_flops = 0.0
    if config.data.di:  # two no-grad forwards of the path's ends, then LAM_STEPS forward + input gradient
        di_flops = 2 * images_flops(preset, scale, di) + LAM_STEPS * images_flops(preset, scale, di, grad=True)
    return EvalFlops(n_val * images_flops(preset, scale, val), passes * final, passes * di_flops, n_val, passes,
                     (val, *sets, region, di))
