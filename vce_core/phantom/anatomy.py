"""Anatomy of the phantom: MNI ICBM152 2009a tissue maps, random smooth deformation and bias field.

Grids
-----
All arrays are float32 in RAS+ index order (``i`` left → right, ``j`` posterior → anterior, ``k``
inferior → superior), on the nilearn template grid: 197 × 233 × 189 at 1 mm, 99 × 117 × 95 at 2 mm, with
the template's affine (origin −98, −134, −72 mm). The 2 mm maps are computed from nilearn's 1 mm maps by
a partial-volume-correct triangle filter and subsampling at even indices, which lands exactly on the grid
of ``load_mni152_*(resolution=2)`` without its spline interpolation (aliasing, negative values) and
in a fraction of its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from vce_core.errors import VCEInputError

RESOLUTIONS: tuple[float, ...] = (1.0, 2.0)
"""Supported isotropic voxel sizes (mm)."""

_PAD = 48


@dataclass(frozen=True)
class Templates:
    """Tissue fraction maps of the template (read-only arrays, float32, values in [0, 1]).

    ``gm + wm + csf == mask`` in every voxel; zero outside the brain mask.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    resolution: float
    packed: np.ndarray
    """(I·J·K,) uint32: gm, wm, mask, 0 as four bytes (fraction × 255): one gather reads all three maps."""
    near: np.ndarray
    """Brain mask dilated by a 5-voxel cube, padded by :data:`_PAD` voxels on every side (bool)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mask.shape)  # type: ignore[return-value]


def check_resolution(resolution: float) -> float:
    """Return ``resolution`` (mm) as 1.0 or 2.0, else raise VCEInputError."""
    try:
        value = float(resolution)
    except (TypeError, ValueError):
        value = float("nan")
    if value in RESOLUTIONS:
        return value
    raise VCEInputError(f"resolution {resolution!r} mm is not available", expected="1 or 2 (mm)")


def _halve(a: np.ndarray, axis: int) -> np.ndarray:
    """Triangle-filter (¼, ½, ¼) ``a`` along ``axis`` and keep even indices (2 × downsampling)."""
    a = np.moveaxis(a, axis, 0)
    out = 0.5 * a[0::2]
    odd = a[1::2]
    k = min(len(odd), len(out))
    out[:k] += 0.25 * odd[:k]
    out[1:] += 0.25 * odd[: len(out) - 1]
    return np.moveaxis(out, 0, axis)


@lru_cache(maxsize=1)
def _nilearn_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's 1 mm ICBM152 2009a GM, WM (rescaled to [0, 1]) and brain mask, float32, and the affine."""
    from nilearn import datasets  # slow import (pandas, scikit-learn): only when a template is needed

    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    mask = np.asarray(mask_img.dataobj, dtype=np.float32)
    gm /= max(float(gm.max()), 1e-6)
    wm /= max(float(wm.max()), 1e-6)
    affine = np.array(mask_img.affine, dtype=np.float64)
    for a in (gm, wm, mask, affine):
        a.setflags(write=False)
    return gm, wm, mask, affine


@lru_cache(maxsize=2)
def load_templates(resolution: float = 1.0) -> Templates:
    """Template tissue fractions at ``resolution`` mm, cached per process (loading takes ~1 s).

    GM and WM are nilearn's ICBM152 2009a probability maps multiplied by the brain mask;
    CSF = mask − GM − WM clipped at 0.
    """
    resolution = check_resolution(resolution)
    gm, wm, mask, affine = (a.copy() for a in _nilearn_maps())
    if resolution == 2.0:
        maps = []
        for a in (gm, wm, mask):
            for axis in range(3):
                a = _halve(a, axis)
            maps.append(np.ascontiguousarray(a, dtype=np.float32))
        gm, wm, mask = maps
        affine = affine.copy()
        affine[:3, :3] *= 2.0
    gm *= mask
    wm *= mask
    total = gm + wm
    over = total > mask
    scale = np.ones_like(total)
    scale[over] = mask[over] / total[over]
    gm *= scale
    wm *= scale
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    packed = np.zeros((gm.size, 4), dtype=np.uint8)
    for m, a in enumerate((gm, wm, mask)):
        packed[:, m] = np.rint(a.ravel() * 255.0)
    packed = packed.view(np.uint32).ravel()
    near = np.pad(ndi.uniform_filter(mask, size=5) > 1e-6, _PAD)  # dilation by a 5-voxel cube
    for a in (gm, wm, csf, mask, packed, near):
        a.setflags(write=False)
    return Templates(gm, wm, csf, mask, affine, resolution, packed, near)


def bspline_basis(n: int, spacing: float, offset: float = 0.0) -> np.ndarray:
    """Cubic B-spline weights (n, m) float32 of ``m`` control points every ``spacing`` voxels.

    Row ``x`` holds the weights of the control points for voxel ``x``; control point ``c`` sits at voxel
    ``(c − 1)·spacing − offset`` so that the first voxel has a full support.
    """
    m = int(np.ceil((n - 1 + offset) / spacing)) + 3
    t = (np.arange(n, dtype=np.float64) + offset) / spacing + 1.0
    return _cubic_weights(t[:, None] - np.arange(m, dtype=np.float64)[None, :]).astype(np.float32)


def bspline_field(coeffs: np.ndarray, bases: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Dense field (I, J, K) float32 = Σ coeffs[a, b, c]·Bi[i, a]·Bj[j, b]·Bk[k, c] (three matmuls)."""
    bi, bj, bk = bases
    t = np.tensordot(coeffs.astype(np.float32), bk, axes=([2], [1]))  # (a, b, K)
    t = np.tensordot(bj, t, axes=([1], [1]))  # (J, a, K)
    t = np.ascontiguousarray(t.transpose(1, 0, 2)).reshape(t.shape[1], -1)  # (a, J·K)
    return (bi @ t).reshape(bi.shape[0], bj.shape[0], bk.shape[0])


def _cubic_weights(d: np.ndarray) -> np.ndarray:
    """Cubic B-spline kernel at distances ``d`` (control-point units)."""
    d = np.abs(d)
    return np.where(d < 1, 2 / 3 - d**2 + d**3 / 2, np.where(d < 2, (2 - d) ** 3 / 6, 0.0))


def bspline_points(coeffs: np.ndarray, points: np.ndarray, spacing: float) -> np.ndarray:
    """The field of :func:`bspline_field` at voxel coordinates ``points`` (N, 3), float64.

    ``coeffs`` has shape (..., a, b, c); the result has shape (..., N).
    """
    t = points / spacing + 1.0
    base = np.floor(t).astype(np.int64) - 1
    grid = coeffs.shape[-3:]
    idx, w = [], []
    for axis in range(3):
        i = base[:, axis, None] + np.arange(4)[None, :]  # (N, 4)
        wi = _cubic_weights(t[:, axis, None] - i)
        wi[(i < 0) | (i >= grid[axis])] = 0.0
        idx.append(np.clip(i, 0, grid[axis] - 1))
        w.append(wi)
    gathered = coeffs[..., idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]]
    weights = w[0][:, :, None, None] * w[1][:, None, :, None] * w[2][:, None, None, :]
    return np.sum(gathered * weights, axis=(-3, -2, -1))


@dataclass
class Deformation:
    """Backward map from case voxels x to template voxels y = c + A·(x − c) + t + u(x) (voxel units).

    ``u`` is a cubic B-spline displacement on a coarse control grid (``coeffs`` (3, a, b, c), voxels).
    """

    matrix: np.ndarray
    center: np.ndarray
    translation: np.ndarray
    coeffs: np.ndarray
    spacing: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Template coordinates (N, 3) of case voxel coordinates ``points`` (N, 3)."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        y = self.center + (points - self.center) @ self.matrix.T + self.translation
        return y + bspline_points(self.coeffs, points, self.spacing).T

    def inverse(self, targets: np.ndarray, iterations: int = 8) -> np.ndarray:
        """Case voxel coordinates (N, 3) that map onto template coordinates ``targets`` (fixed point)."""
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float64))
        inv = np.linalg.inv(self.matrix)
        x = self.center + (targets - self.center - self.translation) @ inv.T
        for _ in range(iterations):
            x -= (self.apply(x) - targets) @ inv.T
        return x


def random_deformation(
    shape: tuple[int, int, int], resolution: float, rng: np.random.Generator
) -> Deformation:
    """Random affine (±6° rotations, ±7 % scaling, ±3 % shear, ±3 mm shift) + elastic (~2.5 mm) map."""
    angles = np.deg2rad(rng.uniform(-6.0, 6.0, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    scale = np.diag(rng.uniform(0.93, 1.07, 3))
    shear = np.eye(3) + np.triu(rng.uniform(-0.03, 0.03, (3, 3)), 1)
    matrix = rz @ ry @ rx @ scale @ shear
    center = (np.array(shape, dtype=np.float64) - 1) / 2
    translation = rng.uniform(-3.0, 3.0, 3) / resolution
    spacing = 24.0 / resolution
    grid = [int(np.ceil((n - 1) / spacing)) + 3 for n in shape]
    coeffs = rng.normal(0.0, 2.5 / resolution, (3, *grid))
    return Deformation(matrix, center, translation, coeffs, spacing)


def _coords(
    deformation: Deformation, bases: tuple[np.ndarray, ...], axes: list[np.ndarray], d: int
) -> np.ndarray:
    """Template coordinate ``d`` (float32) of the case voxels spanned by ``bases`` rows and ``axes``."""
    y = bspline_field(deformation.coeffs[d], bases)  # type: ignore[arg-type]
    y += np.float32(deformation.center[d] + deformation.translation[d])
    y += (np.float32(deformation.matrix[d, 0]) * axes[0])[:, None, None]
    y += (np.float32(deformation.matrix[d, 1]) * axes[1])[None, :, None]
    y += (np.float32(deformation.matrix[d, 2]) * axes[2])[None, None, :]
    return y


def warp_templates(
    templates: Templates, deformation: Deformation
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deformed (gm, wm, csf, mask) on the template grid; trilinear interpolation, float32.

    The map is first evaluated every 4th voxel to find the box of case voxels that can land near the
    brain; inside it, only voxels whose template coordinate is next to the brain are interpolated, with
    one 4-byte gather per corner from the packed uint8 maps.
    """
    shape = templates.shape
    full_bases = [bspline_basis(n, deformation.spacing) for n in shape]
    full_axes = [
        np.arange(n, dtype=np.float32) - np.float32(c) for n, c in zip(shape, deformation.center, strict=True)
    ]
    step = 4
    sub = [slice(None, None, step)] * 3
    coarse_bases = tuple(b[s] for b, s in zip(full_bases, sub, strict=True))
    coarse_axes = [a[s] for a, s in zip(full_axes, sub, strict=True)]
    hit = np.ones(tuple(len(a) for a in coarse_axes), dtype=bool)
    idx = []
    for d in range(3):
        r = np.rint(_coords(deformation, coarse_bases, coarse_axes, d)).astype(np.int64)
        idx.append(np.clip(r, -_PAD, shape[d] + _PAD - 1) + _PAD)
    hit = templates.near[idx[0], idx[1], idx[2]]
    hit = ndi.binary_dilation(hit, iterations=2)
    if not hit.any():
        raise VCEInputError("the random deformation moved the brain out of the field of view")
    where = np.argwhere(hit)
    lo = np.maximum(where.min(axis=0) * step, 0)
    hi = np.minimum(where.max(axis=0) * step + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    bases = tuple(b[s] for b, s in zip(full_bases, box, strict=True))
    axes = [a[s] for a, s in zip(full_axes, box, strict=True)]
    bshape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    pshape = templates.near.shape
    flat = np.zeros(bshape, dtype=np.int32)
    floors, fracs = [], []
    for d in range(3):
        y = _coords(deformation, bases, axes, d)
        f = np.floor(y)
        y -= f
        fracs.append(y)
        fi = f.astype(np.int32)
        del f
        floors.append(fi)
        p = np.clip(fi, -_PAD, shape[d] + _PAD - 1)
        p += _PAD
        flat *= pshape[d]
        flat += p
        del p
    candidate = np.flatnonzero(templates.near.ravel().take(flat))
    del flat
    fi = [np.clip(f.ravel().take(candidate), 0, n - 2) for f, n in zip(floors, shape, strict=True)]
    fr = [np.clip(f.ravel().take(candidate), 0.0, 1.0) for f in fracs]
    del floors, fracs
    base = (fi[0] * shape[1] + fi[1]) * shape[2] + fi[2]
    del fi
    vals = np.zeros((len(base), 4), dtype=np.float32)
    for a in (0, 1):
        wa = fr[0] if a else 1 - fr[0]
        for b in (0, 1):
            wab = wa * (fr[1] if b else 1 - fr[1])
            for c in (0, 1):
                w = wab * (fr[2] if c else 1 - fr[2])
                offset = (a * shape[1] + b) * shape[2] + c
                packed = templates.packed.take(base + offset).view(np.uint8).reshape(-1, 4)
                vals += w[:, None] * packed
    vals *= np.float32(1.0 / 255.0)
    out = []
    for m in range(3):
        dense = np.zeros(shape, dtype=np.float32)
        local = np.zeros(bshape, dtype=np.float32)
        local.ravel()[candidate] = vals[:, m]
        dense[box] = local
        out.append(dense)
    gm, wm, mask = out
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return gm, wm, csf, mask


def random_bias(shape: tuple[int, int, int], resolution: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative bias field (float32, geometric mean ≈ 1, ≈ ±15 %): exp of a coarse B-spline."""
    spacing = 60.0 / resolution
    grid = [int(np.ceil((n - 1) / spacing)) + 3 for n in shape]
    coeffs = rng.normal(0.0, 0.12, grid)
    field = bspline_field(coeffs, tuple(bspline_basis(n, spacing) for n in shape))  # type: ignore[arg-type]
    field -= np.float32(field.mean())
    return np.exp(field, out=field)


def smooth_noise(
    shape: tuple[int, int, int], resolution: float, scale_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random field (float32, ≈ zero mean, unit SD) with features of about ``scale_mm``."""
    spacing = scale_mm / resolution
    grid = [int(np.ceil((n - 1) / spacing)) + 3 for n in shape]
    coeffs = rng.normal(0.0, 1.0 / 0.45, grid)
    return bspline_field(coeffs, tuple(bspline_basis(n, spacing) for n in shape))  # type: ignore[arg-type]
