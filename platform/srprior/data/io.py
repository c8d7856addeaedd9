"""Strict image reading: every SR image becomes uint8 (H, W, 3) RGB, or fails loudly.

SR metrics and the MATLAB degradation assume 8-bit RGB; a silent conversion (16-bit truncation,
naive CMYK inversion, dithered palettes, alpha blending) would change PSNR without anyone
noticing. So only lossless conversions are done, everything else raises :class:`ImageError`
naming the file and the fix.

Converted (lossless):
  * ``L`` (8-bit grey)                 -> RGB with R = G = B (e.g. Set14 ``bridge.png``).
  * ``LA`` / ``RGBA`` with alpha == 255 everywhere -> alpha dropped (e.g. LAM demo ``4.png``).
Rejected (``ImageError``):
  * ``RGBA`` / ``LA`` with any alpha < 255: compositing needs a background choice.
  * high-bit-depth files (``I;16*``, ``I``, and 48/64-bit RGB(A) PNG/TIFF, which Pillow would
    silently truncate to their high byte).
  * ``CMYK`` (JPEG): Pillow's CMYK -> RGB ignores ICC profiles and Adobe inversion.
  * ``P`` (palette) and ``1`` (bilevel): quantised/dithered pixels are not natural HR images;
    convert explicitly if you really want them.
  * ``F``, ``YCbCr``, ``LAB``, ``HSV`` and any other mode.
  * truncated or corrupt files (the full decode is forced at read time), non-image files,
    formats outside :data:`FORMATS`.
  * JPEG bytes in a file named as a lossless format (``.png``, ``.bmp``, ``.tif``, ``.ppm``): a benchmark's
    HR image with compression artefacts changes PSNR unnoticed (rename it ``.jpg`` to use it as it is).
  * images with a side shorter than :data:`MIN_SIDE` (2) pixels. Scale-aware checks
    (HR side >= 2*scale, LR side >= patch) happen where the scale is known (datasets).
EXIF orientation is not applied: benchmark files are pixel arrays, and LR/HR pairs must stay aligned.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from srprior.errors import UserError

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "PPM")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")
MIN_SIDE = 2
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".ppm")

_TO_RGB8 = 'convert it to 8-bit RGB, e.g. `python -c "from PIL import Image; ' \
    "Image.open('IN').convert('RGB').save('OUT.png')\"` (check the result looks right)"


class ImageError(UserError, ValueError):
    """An image file that cannot be used as an 8-bit RGB SR image; the message names the file and the fix."""

    def __init__(self, path: str | Path, problem: str, fix: str = _TO_RGB8):
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path}: {problem}; {fix}")

    def __reduce__(self):  # pickle (Ray sends a worker's exception to the driver) rebuilds it from its parts
        return type(self), (self.path, self.problem, self.fix)


def _is_16bit(img: Image.Image) -> bool:
    """Pillow decodes 48/64-bit PNG/TIFF as 8-bit RGB(A) by dropping the low byte; the raw mode tells."""
    return img.mode.startswith("I") or any(";16" in str(tile[3]) for tile in (img.tile or ()))


def _drop_opaque_alpha(path: Path, arr: np.ndarray, mode: str) -> np.ndarray:
    alpha = arr[..., -1]
    if alpha.min() != 255:
        raise ImageError(path, f"mode {mode} has transparent pixels ({int((alpha < 255).sum())} with alpha < 255)",
                         "composite it onto a background of your choice and save it as RGB "
                         "(e.g. Image.alpha_composite(white, img).convert('RGB'))")
    return arr[..., :-1]


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_a_file(path: Path) -> str | None:
    """What `path` is when it exists but is no regular file (None for a file or nothing): opening a FIFO would
    block forever, and "no such image file" about a directory sends the user looking for a missing file."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return next((f"{kind}, not an image file" for test, kind in _KINDS if test(mode)), None)


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as a C-contiguous uint8 (H, W, 3) RGB array; see the module docstring for the rules."""
    path = Path(path)
    if (kind := not_a_file(path)) is not None:
        raise ImageError(path, kind, "replace it with the image or remove it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path, formats=FORMATS) as img:
            sixteen = _is_16bit(img)  # must be checked before load() replaces the tile list
            lossy = img.format == "JPEG" and path.suffix.lower() in LOSSLESS_SUFFIXES
            img.load()  # force the full decode so truncated files fail here, not in a training loop
            mode = img.mode
            arr = np.asarray(img)
    except PermissionError as exc:
        raise ImageError(path, f"not readable ({exc.strerror})", "make it readable (chmod a+r) or remove it") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"too many pixels ({exc})", "downscale or tile it first") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(path, f"not a readable {'/'.join(FORMATS)} image or truncated/corrupt ({exc})",
                         "re-download or re-export the file") from exc
    if lossy:
        raise ImageError(path, f"JPEG data in a {path.suffix} file (lossy: compression artefacts would change PSNR "
                         "unnoticed)", "re-download or re-export the lossless original, or rename it .jpg to use it "
                         "as it is")
    if sixteen:
        raise ImageError(path, f"high-bit-depth image (16/32-bit, Pillow mode {mode}); only 8-bit images are supported",
                         "convert it to 8-bit RGB with rounding, e.g. "
                         "skimage.util.img_as_ubyte(skimage.io.imread('IN')) and save as PNG")
    if mode == "L":
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif mode == "LA":
        arr = np.repeat(_drop_opaque_alpha(path, arr, mode), 3, axis=2)
    elif mode == "RGBA":
        arr = _drop_opaque_alpha(path, arr, mode)
    elif mode == "CMYK":
        raise ImageError(path, "CMYK image; Pillow's CMYK->RGB ignores colour profiles",
                         "convert it to sRGB with a colour-managed tool, e.g. "
                         "`convert IN -colorspace sRGB -type TrueColor OUT.png` (ImageMagick)")
    elif mode in ("P", "PA", "1"):
        raise ImageError(path, f"mode {mode} (palette/bilevel) image; quantised pixels are not a natural HR image",
                         "if you really want it, " + _TO_RGB8)
    elif mode != "RGB":
        raise ImageError(path, f"unsupported mode {mode}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(path, f"image is {w}x{h} pixels; SR images need both sides >= {MIN_SIDE}",
                         "remove it from the folder")
    return np.ascontiguousarray(arr, dtype=np.uint8)
