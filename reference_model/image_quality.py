"""Image quality measurements: sharpness, the JPEG quality a file states, a perceptual hash.

Pure functions of numpy arrays (the intake hands them Pillow's grey images):

- `laplacian_variance`: variance of the 4-neighbour Laplacian, edges replicated; the
  intake applies it to the 8-bit grey (0-255, Rec. 601 luma as Pillow's `L`) image resized
  to `SHARPNESS_SIDE` x `SHARPNESS_SIDE` (bilinear, aspect not kept), so that its value
  does not depend on the image's resolution. Blur lowers it; noise raises it.
- `jpeg_quality_estimate`: the libjpeg quality (1-100) whose scaled standard luminance
  table is nearest to the file's first quantization table; `JPEG_QUALITY_ABSENT` (0) when
  the file has none (PNG, WebP, GIF, ...), which the baseline bins on its own.
- `difference_hash`: a 64-bit difference hash (dHash) of a 9 x 8 grey image, and
  `min_hamming` the smallest bit distance from one hash to a set of hashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from monitor.scored import JPEG_QUALITY_ABSENT

#: Side (pixels) of the square grey image sharpness is measured on.
SHARPNESS_SIDE = 128
#: Width x height of the grey image a difference hash is taken from (8 x 8 = 64 bits).
DHASH_SIZE = (9, 8)

#: The JPEG standard's luminance quantization table (ITU T.81, Annex K.1), natural order,
#: the table libjpeg scales by the quality setting.
_STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)


def _libjpeg_tables() -> npt.NDArray[np.int64]:
    """(100, 64): the luminance table libjpeg writes at quality 1..100 (jcparam.c:
    scale 5000/q below 50, else 200 - 2q, in percent, rounded, in 1..255 as for baseline
    JPEG files)."""
    q = np.arange(1, 101, dtype=np.int64)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((_STD_LUMINANCE[None, :] * scale[:, None] + 50) // 100, 1, 255)


_TABLES = _libjpeg_tables()


def laplacian_variance(grey: npt.ArrayLike) -> float:
    """Variance of the 4-neighbour Laplacian (x[i-1,j] + x[i+1,j] + x[i,j-1] + x[i,j+1]
    - 4 x[i,j]) of a 2-D image, borders replicated; in (grey units)^2. 0 for a flat image.
    Integer images (8-bit grey) are worked in int32, exactly and about 4x faster."""
    raw = np.asarray(grey)
    x = raw.astype(np.int32 if raw.dtype.kind in "ub" else np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"need a non-empty 2-D grey image, got shape {x.shape}")
    p = np.pad(x, 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * x
    return float(lap.var(dtype=np.float64))


def jpeg_quality_estimate(tables: Mapping[int, Sequence[int]] | None) -> float:
    """The quality (1-100) a libjpeg-style encoder would have used for the file's first
    quantization table (`PIL.JpegImagePlugin`'s `quantization`, natural order): the one
    whose table is nearest in summed absolute difference, the lower quality on a tie.
    JPEG_QUALITY_ABSENT without tables. An estimate: custom tables get their nearest."""
    if not tables:
        return JPEG_QUALITY_ABSENT
    first = np.asarray(tables[min(tables)], dtype=np.int64).ravel()
    if first.size != 64:
        return JPEG_QUALITY_ABSENT
    distance = np.abs(_TABLES - first[None, :]).sum(axis=1)
    return float(int(np.argmin(distance)) + 1)


def difference_hash(grey: npt.ArrayLike) -> int:
    """64-bit difference hash of an 8-row x 9-column grey image: bit 8r + c (most
    significant first) is set when pixel (r, c + 1) is brighter than pixel (r, c)."""
    x = np.asarray(grey, dtype=np.float64)
    if x.shape != (DHASH_SIZE[1], DHASH_SIZE[0]):
        raise ValueError(f"need an 8 x 9 grey image, got shape {x.shape}")
    bits = (x[:, 1:] > x[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def min_hamming(h: int, others: npt.NDArray[np.uint64]) -> int:
    """Smallest number of differing bits between hash `h` and any of `others` (64 when
    there are none)."""
    if others.size == 0:
        return 64
    return int(np.bitwise_count(others ^ np.uint64(h)).min())
