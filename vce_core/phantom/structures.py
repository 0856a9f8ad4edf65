"""Geometry of the phantom's enhancing structures and lesions, as partial-volume occupancy maps.

Every shape is rasterised as an *occupancy* in [0, 1] per voxel from a signed distance ``sd`` (mm) with
the linear partial-volume approximation ``occ = clip(0.5 − sd / h, 0, 1)`` (``h`` voxel size in mm).
A shape is returned as a :class:`Layer`: the tissue it is made of, the bounding-box slices and the
occupancy inside the box. Coordinates are voxel indices of the case grid (RAS+), see ``anatomy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from vce_core.errors import VCEInputError

from .anatomy import Deformation, smooth_noise

Slices = tuple[slice, slice, slice]

LESION_KINDS: dict[str, str] = {
    "glioblastoma": "enhancing_rim",
    "metastasis": "metastasis",
    "meningioma": "meningioma",
    "weakly_enhancing": "weak_lesion",
    "non_enhancing": "nonenhancing_lesion",
}
"""Lesion kind → tissue of its solid (or rim) part."""

DEFAULT_EDEMA: dict[str, float] = {
    "glioblastoma": 0.8,
    "metastasis": 0.6,
    "meningioma": 0.0,
    "weakly_enhancing": 0.0,
    "non_enhancing": 0.0,
}
"""Default thickness of the surrounding edema as a multiple of the lesion radius."""


@dataclass(frozen=True)
class LesionSpec:
    """One lesion to place in a phantom case.

    Attributes
    ----------
    kind: ``glioblastoma`` (enhancing rim, necrotic core, edema), ``metastasis`` (solid or ring, edema),
        ``meningioma`` (extra-axial, homogeneous), ``weakly_enhancing`` (seed 000 Fig. 4: visible at
        standard dose, lost at 10 %), ``non_enhancing`` (control).
    radius_mm: outer radius in mm, in [1, 40].
    center_mm: centre in world coordinates (RAS+, mm) of the case grid; exactly one of the two centres.
    center_vox: centre in voxel indices (i, j, k) of the case grid (depends on the resolution).
    enhancement: factor on the tissue's full-dose concentration, in [0, 3].
    ring: metastasis with a necrotic centre (glioblastomas always have one).
    core_fraction: necrotic core radius / outer radius, in [0.1, 0.9] (glioblastoma, ring metastasis).
    edema_mm: thickness of the surrounding edema (mm); None = kind default (``DEFAULT_EDEMA`` × radius).
    irregularity: relative amplitude of the boundary's lobulation, in [0, 0.5].
    shape_seed: seed of the lobulation pattern.
    """

    kind: str
    radius_mm: float
    center_mm: tuple[float, float, float] | None = None
    center_vox: tuple[float, float, float] | None = None
    enhancement: float = 1.0
    ring: bool = False
    core_fraction: float = 0.55
    edema_mm: float | None = None
    irregularity: float = 0.15
    shape_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            raise VCEInputError(
                f"unknown lesion kind {self.kind!r}", expected="one of " + ", ".join(LESION_KINDS)
            )
        if (self.center_mm is None) == (self.center_vox is None):
            raise VCEInputError("a lesion needs exactly one of center_mm and center_vox")
        for name in ("center_mm", "center_vox"):
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=np.float64)
                if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                    raise VCEInputError(
                        f"lesion {name} {value!r} is not a point", expected="three finite numbers"
                    )
                object.__setattr__(self, name, tuple(float(v) for v in arr))
        checks = (
            ("radius_mm", self.radius_mm, 1.0, 40.0),
            ("enhancement", self.enhancement, 0.0, 3.0),
            ("core_fraction", self.core_fraction, 0.1, 0.9),
            ("irregularity", self.irregularity, 0.0, 0.5),
            ("edema_mm", 0.0 if self.edema_mm is None else self.edema_mm, 0.0, 60.0),
        )
        for name, value, lo, hi in checks:
            if not isinstance(value, int | float) or not lo <= value <= hi:
                raise VCEInputError(
                    f"lesion {name} {value!r} is out of range", expected=f"a number in [{lo:g}, {hi:g}]"
                )

    @property
    def edema_thickness_mm(self) -> float:
        """Edema thickness in mm (explicit or the kind's default)."""
        return DEFAULT_EDEMA[self.kind] * self.radius_mm if self.edema_mm is None else float(self.edema_mm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        d = asdict(self)
        for name in ("center_mm", "center_vox"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LesionSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for name in ("center_mm", "center_vox"):
            if d.get(name) is not None:
                d[name] = tuple(d[name])
        return cls(**d)


@dataclass
class Layer:
    """A structure's occupancy inside a bounding box of the case grid.

    ``tissue`` names a row of ``physics.TISSUES``; ``concentration_factor`` multiplies its ``c_full``;
    ``lesion`` is the index of the lesion it belongs to (None for normal anatomy).
    """

    tissue: str
    slices: Slices
    occupancy: np.ndarray
    concentration_factor: float = 1.0
    lesion: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _box(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int, int]) -> Slices | None:
    """Slices of the voxel box [floor(lo), ceil(hi)] clipped to ``shape``; None when empty."""
    a = np.maximum(np.floor(lo).astype(int), 0)
    b = np.minimum(np.ceil(hi).astype(int) + 1, shape)
    if np.any(b <= a):
        return None
    return tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))  # type: ignore[return-value]


def _lobes(rng: np.random.Generator, count: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random lobulation pattern: directions, amplitudes, frequencies and phases."""
    dirs = rng.normal(size=(count, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = rng.normal(size=count)
    amps /= np.sqrt(np.sum(amps**2) / 2.0)
    return dirs, amps, rng.uniform(1.5, 4.0, count), rng.uniform(0, 2 * np.pi, count)


def ball(
    center: np.ndarray,
    radius_mm: float,
    h: float,
    shape: tuple[int, int, int],
    *,
    irregularity: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[Slices, np.ndarray] | None:
    """Occupancy of a (lobulated) ball of ``radius_mm`` around voxel ``center``; None if off the grid.

    The radius along direction u is ``radius_mm·(1 + irregularity·n(u))`` with n a smooth random
    function of the direction (zero mean, unit RMS) drawn from ``rng``.
    """
    center = np.asarray(center, dtype=np.float64)
    reach = radius_mm * (1 + 2.5 * irregularity) / h + 2
    box = _box(center - reach, center + reach, shape)
    if box is None:
        return None
    d = [((np.arange(s.start, s.stop) - c) * h).astype(np.float32) for s, c in zip(box, center, strict=True)]
    dx, dy, dz = d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    radius: np.ndarray | float = radius_mm
    if irregularity > 0 and rng is not None:
        dirs, amps, freqs, phases = _lobes(rng)
        inv = 1.0 / np.maximum(dist, np.float32(1e-3))
        n = np.zeros(dist.shape, dtype=np.float32)
        for v, a, f, p in zip(dirs, amps, freqs, phases, strict=True):
            proj = (dx * np.float32(v[0]) + dy * np.float32(v[1]) + dz * np.float32(v[2])) * inv
            n += np.float32(a) * np.cos(np.float32(f) * proj + np.float32(p))
        radius = np.float32(radius_mm) * (1 + np.float32(irregularity) * np.clip(n, -2.0, 2.0))
    occ = np.clip(0.5 - (dist - radius) / np.float32(h), 0.0, 1.0).astype(np.float32)
    return box, occ


def tube(
    points: np.ndarray, radius_mm: float, h: float, shape: tuple[int, int, int]
) -> tuple[Slices, np.ndarray] | None:
    """Occupancy of a tube of ``radius_mm`` around the polyline ``points`` (N, 3) voxel coordinates."""
    points = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(arc[-1] / 0.4) + 2, 2)
    t = np.linspace(0.0, arc[-1], n)
    samples = np.stack([np.interp(t, arc, points[:, d]) for d in range(3)], axis=1)
    r = radius_mm / h
    reach = int(np.ceil(r + 1.5))
    o = np.arange(-reach, reach + 1)
    offsets = np.stack(np.meshgrid(o, o, o, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) <= reach + 0.5]
    cells = np.rint(samples).astype(np.int64)[:, None, :] + offsets[None, :, :]
    dist = np.linalg.norm(cells - samples[:, None, :], axis=2).ravel() * h
    cells = cells.reshape(-1, 3)
    ok = np.all((cells >= 0) & (cells < np.array(shape)), axis=1)
    if not ok.any():
        return None
    cells, dist = cells[ok], dist[ok]
    lo, hi = cells.min(axis=0), cells.max(axis=0)
    box = _box(lo, hi, shape)
    if box is None:
        return None
    size = hi - lo + 1
    flat = ((cells[:, 0] - lo[0]) * size[1] + (cells[:, 1] - lo[1])) * size[2] + (cells[:, 2] - lo[2])
    dmin = np.full(int(np.prod(size)), np.inf)
    np.minimum.at(dmin, flat, dist)
    occ = np.clip(0.5 - (dmin - radius_mm) / h, 0.0, 1.0).astype(np.float32).reshape(tuple(size))
    return box, occ


def surface_points(
    mask: np.ndarray, origin: np.ndarray, directions: np.ndarray, inset: float = 0.0
) -> np.ndarray:
    """Where rays from ``origin`` along unit ``directions`` (N, 3) first leave ``mask > 0.5`` (voxels).

    Each point is moved ``inset`` voxels back towards the origin.
    """
    steps = np.arange(0.0, float(max(mask.shape)), 0.5)
    pos = origin[None, None, :] + directions[:, None, :] * steps[None, :, None]
    idx = np.rint(pos).astype(np.int64)
    inb = np.all((idx >= 0) & (idx < np.array(mask.shape)), axis=2)
    idx = np.clip(idx, 0, np.array(mask.shape) - 1)
    inside = (mask[idx[..., 0], idx[..., 1], idx[..., 2]] > 0.5) & inb
    exit_step = np.argmax(~inside, axis=1)
    t = np.maximum(steps[np.maximum(exit_step - 1, 0)] - inset, 0.0)
    return origin[None, :] + directions * t[:, None]


class Mapper:
    """Maps template (MNI) millimetres onto case voxels through the inverse of the case deformation."""

    def __init__(self, affine: np.ndarray, deformation: Deformation):
        self.affine = affine
        self.inv_affine = np.linalg.inv(affine)
        self.deformation = deformation

    def to_template_vox(self, mm: np.ndarray) -> np.ndarray:
        mm = np.atleast_2d(np.asarray(mm, dtype=np.float64))
        return mm @ self.inv_affine[:3, :3].T + self.inv_affine[:3, 3]

    def vox(self, mm: np.ndarray) -> np.ndarray:
        """Case voxel coordinates (N, 3) of template points ``mm`` (N, 3)."""
        return self.deformation.inverse(self.to_template_vox(mm))

    def directions(
        self, origin_mm: np.ndarray, dirs: np.ndarray, length_mm: float = 60.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Case-voxel origin and unit directions corresponding to template directions ``dirs`` (N, 3)."""
        origin = self.vox(origin_mm)[0]
        far = self.vox(np.asarray(origin_mm)[None, :] + dirs * length_mm)
        d = far - origin[None, :]
        return origin, d / np.linalg.norm(d, axis=1, keepdims=True)


def vessels(mask: np.ndarray, mapper: Mapper, h: float, rng: np.random.Generator) -> list[Layer]:
    """Venous sinuses (superior sagittal, transverse, straight) and 2–4 superficial cortical veins.

    Sinuses hug the inner surface of the (deformed) brain mask; occupancy is limited to the mask.
    """
    shape = mask.shape
    layers: list[Layer] = []
    paths: list[tuple[np.ndarray, float]] = []
    # superior sagittal sinus: midline, from frontal over the vertex to the torcular
    theta = np.deg2rad(np.linspace(30.0, 190.0, 48))
    dirs = np.stack([np.zeros_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    r_sss = rng.uniform(2.5, 3.5)
    origin, d = mapper.directions(np.array([0.0, -20.0, 10.0]), dirs)
    sss = surface_points(mask, origin, d, inset=0.9 * r_sss / h)
    paths.append((sss, r_sss))
    torcular = sss[-1]
    # transverse sinuses: from the torcular laterally along the occipital surface
    r_ts = rng.uniform(2.0, 3.0)
    for side in (-1.0, 1.0):
        phi = np.deg2rad(np.linspace(0.0, 70.0, 16))
        dirs = np.stack([side * np.sin(phi), -np.cos(phi), np.zeros_like(phi)], axis=1)
        origin, d = mapper.directions(np.array([0.0, -30.0, -12.0]), dirs)
        ts = surface_points(mask, origin, d, inset=0.9 * r_ts / h)
        paths.append((np.concatenate([torcular[None, :], ts]), r_ts))
    # straight sinus: vein of Galen → torcular
    galen = mapper.vox(np.array([0.0, -52.0, 2.0]))[0]
    paths.append((np.stack([galen, 0.5 * (galen + torcular) + np.array([0, 0, 1.0 / h]), torcular]), 1.8))
    # superficial cortical veins draining upwards towards the sinus
    for _ in range(int(rng.integers(2, 5))):
        y0 = rng.uniform(-70.0, 40.0)
        side = rng.choice([-1.0, 1.0])
        theta = np.deg2rad(np.linspace(rng.uniform(-15.0, 10.0), rng.uniform(65.0, 80.0), 20))
        dirs = np.stack([side * np.cos(theta), np.zeros_like(theta), np.sin(theta)], axis=1)
        r_v = rng.uniform(0.8, 1.5)
        origin, d = mapper.directions(np.array([0.0, y0, 15.0]), dirs)
        paths.append((surface_points(mask, origin, d, inset=(r_v + 0.5) / h), r_v))
    for points, radius in paths:
        got = tube(points, radius, h, shape)
        if got is None:
            continue
        box, occ = got
        occ *= np.clip(mask[box], 0.0, 1.0)
        layers.append(Layer("blood", box, occ, meta={"radius_mm": radius}))
    return layers


def choroid_plexus(csf: np.ndarray, mapper: Mapper, h: float, rng: np.random.Generator) -> list[Layer]:
    """Choroid plexus: blobs in the atria (glomus) and bodies of both lateral ventricles, inside CSF."""
    layers = []
    for side in (-1.0, 1.0):
        for center_mm, radius in (((24.0, -40.0, 14.0), 6.0), ((12.0, -24.0, 19.0), 3.5)):
            c = mapper.vox(np.array([side * center_mm[0], center_mm[1], center_mm[2]]))[0]
            got = ball(c, radius * rng.uniform(0.8, 1.2), h, csf.shape, irregularity=0.25, rng=rng)
            if got is None:
                continue
            box, occ = got
            occ *= csf[box]
            layers.append(Layer("choroid_plexus", box, occ))
    return layers


def dura(mask: np.ndarray, h: float, rng: np.random.Generator) -> Layer:
    """Dura: a 1 mm shell just inside the brain-mask boundary, present on about half of the surface."""
    inside = mask > 0.5
    shell = inside & ~ndi.binary_erosion(inside)
    patch = smooth_noise(mask.shape, h, 30.0, rng)
    patch *= np.float32(0.8)
    patch += np.float32(0.3)
    np.clip(patch, 0.0, 1.0, out=patch)
    patch *= shell
    patch *= np.float32(min(1.0, 1.0 / h))
    full = tuple(slice(0, n) for n in mask.shape)
    return Layer("dura", full, patch)  # type: ignore[arg-type]


def lesion_layers(
    spec: LesionSpec, index: int, center_vox: np.ndarray, h: float, shape: tuple[int, int, int]
) -> tuple[list[Layer], Layer | None]:
    """Layers of one lesion, top first, and its edema region (occupancy before the WM-only claim)."""
    rng = np.random.default_rng(spec.shape_seed)
    tissue = LESION_KINDS[spec.kind]
    layers: list[Layer] = []
    has_core = spec.kind == "glioblastoma" or (spec.kind == "metastasis" and spec.ring)
    if has_core:
        got = ball(
            center_vox, spec.radius_mm * spec.core_fraction, h, shape, irregularity=spec.irregularity, rng=rng
        )
        if got is not None:
            layers.append(Layer("necrosis", got[0], got[1], 1.0, index))
    got = ball(center_vox, spec.radius_mm, h, shape, irregularity=spec.irregularity, rng=rng)
    if got is not None:
        layers.append(Layer(tissue, got[0], got[1], spec.enhancement, index))
    edema = None
    if spec.edema_thickness_mm > 0:
        got = ball(center_vox, spec.radius_mm + spec.edema_thickness_mm, h, shape, irregularity=0.3, rng=rng)
        if got is not None:
            edema = Layer("edema", got[0], got[1], 1.0, index)
    return layers, edema


class _LesionPlacer:
    """Places lesions at random parenchymal positions of a coarse (about 4 mm) grid, without overlaps.

    ``gm``, ``wm`` and ``mask`` are the case's fractions (I, J, K); ``affine`` maps its voxels to mm;
    ``h`` is its voxel size (mm). Placed lesions accumulate in :attr:`specs`.
    """

    def __init__(
        self,
        gm: np.ndarray,
        wm: np.ndarray,
        mask: np.ndarray,
        affine: np.ndarray,
        h: float,
        rng: np.random.Generator,
    ):
        self.coarse = coarse = max(1, int(round(4.0 / h)))
        self.inside = mask[::coarse, ::coarse, ::coarse] > 0.5
        self.depth = ndi.distance_transform_edt(self.inside) * coarse * h
        self.parenchyma = (gm + wm)[::coarse, ::coarse, ::coarse] > 0.85
        self.affine, self.h, self.rng = affine, h, rng
        self.specs: list[LesionSpec] = []
        self.placed: list[tuple[np.ndarray, float]] = []

    def to_mm(self, vox: np.ndarray) -> tuple[float, float, float]:
        """World coordinates (mm) of case voxel ``vox``."""
        return tuple(float(v) for v in self.affine[:3, :3] @ vox + self.affine[:3, 3])  # type: ignore[return-value]

    def pick(self, radius: float, min_depth: float) -> np.ndarray | None:
        """A parenchymal centre (case voxels) at least ``min_depth`` mm deep, clear of placed lesions."""
        cand = np.argwhere(self.parenchyma & (self.depth >= min_depth))
        if len(cand) == 0:
            return None
        for _ in range(60):
            c = (cand[self.rng.integers(len(cand))] + self.rng.uniform(-0.5, 0.5, 3)) * self.coarse
            if all(np.linalg.norm((c - p) * self.h) > 1.1 * (radius + r) + 2 for p, r in self.placed):
                return c
        return None

    def add(self, kind: str, radius: float, min_depth: float, **kw: Any) -> None:
        """Place a ``kind`` lesion, shrinking it (80 %, 60 %) when it does not fit; skip it if none does."""
        for scale in (1.0, 0.8, 0.6):
            c = self.pick(radius * scale, min_depth * scale)
            if c is not None:
                r = max(radius * scale, 2.5)
                self.placed.append((c, r + kw.get("edema_mm", 0.0) * 0.5))
                self.specs.append(
                    LesionSpec(
                        kind,
                        round(r, 2),
                        center_mm=self.to_mm(c),
                        shape_seed=int(self.rng.integers(2**31)),
                        **kw,
                    )
                )
                return

    def add_meningioma(self) -> None:
        """An extra-axial meningioma on the upper brain surface, pushed 30 % of its radius outwards."""
        rng = self.rng
        r = rng.uniform(8.0, 20.0)
        inside = self.inside
        surface = np.argwhere(
            inside
            & (self.depth <= self.coarse * self.h)
            & (np.arange(inside.shape[2])[None, None, :] > inside.shape[2] * 0.45)
        )
        if not len(surface):
            return
        s = surface[rng.integers(len(surface))].astype(np.float64)
        center = np.array(inside.shape, dtype=np.float64) / 2
        out = (s - center) / np.linalg.norm(s - center)
        c = s * self.coarse + out * 0.3 * r / self.h
        self.placed.append((c, r))
        self.specs.append(
            LesionSpec(
                "meningioma",
                round(r, 2),
                center_mm=self.to_mm(c),
                irregularity=0.05,
                shape_seed=int(rng.integers(2**31)),
                enhancement=round(rng.uniform(0.85, 1.15), 3),
            )
        )


def _add_glioblastoma(placer: _LesionPlacer) -> None:
    """One glioblastoma, radius 12–24 mm, with a necrotic core and edema."""
    rng = placer.rng
    r = rng.uniform(12.0, 24.0)
    placer.add(
        "glioblastoma",
        r,
        0.6 * r,
        core_fraction=round(rng.uniform(0.4, 0.7), 3),
        edema_mm=round(rng.uniform(0.5, 1.2) * r, 2),
        irregularity=round(rng.uniform(0.1, 0.25), 3),
        enhancement=round(rng.uniform(0.8, 1.2), 3),
    )


def _add_metastases(placer: _LesionPlacer) -> None:
    """2–6 metastases, radius 3–10 mm, the larger ones often ring-enhancing, with edema."""
    rng = placer.rng
    for _ in range(int(rng.integers(2, 7))):
        r = rng.uniform(3.0, 10.0)
        placer.add(
            "metastasis",
            r,
            r + 3.0,
            ring=bool(r > 6.0 and rng.random() < 0.6),
            edema_mm=round(rng.uniform(0.3, 1.0) * r, 2),
            irregularity=round(rng.uniform(0.05, 0.2), 3),
            enhancement=round(rng.uniform(0.8, 1.2), 3),
        )


_MAIN_PATHOLOGIES: dict[str, Callable[[_LesionPlacer], None]] = {
    "glioblastoma": _add_glioblastoma,
    "metastasis": _add_metastases,
    "meningioma": _LesionPlacer.add_meningioma,
}
"""How each main pathology is placed (the fourth choice, ``none``, places nothing)."""


def random_lesions(
    gm: np.ndarray, wm: np.ndarray, mask: np.ndarray, affine: np.ndarray, h: float, rng: np.random.Generator
) -> list[LesionSpec]:
    """Random lesion set: a main pathology (glioblastoma 30 %, 2–6 metastases 30 %, meningioma 15 %,
    none 25 %) plus 0–2 weakly enhancing lesions and 0–1 non-enhancing lesion, without overlaps."""
    placer = _LesionPlacer(gm, wm, mask, affine, h, rng)
    main = rng.choice(["glioblastoma", "metastasis", "meningioma", "none"], p=[0.3, 0.3, 0.15, 0.25])
    if main in _MAIN_PATHOLOGIES:
        _MAIN_PATHOLOGIES[main](placer)
    for _ in range(int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))):
        r = rng.uniform(4.0, 10.0)
        placer.add("weakly_enhancing", r, r + 2.0, irregularity=0.1)
    if rng.random() < 0.4:
        r = rng.uniform(5.0, 12.0)
        placer.add("non_enhancing", r, r + 2.0, irregularity=0.15)
    return placer.specs
