"""Builders shared by the ``vce_core.io`` tests, as factory fixtures: (rotated) affines, random volumes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from vce_core.io import Volume


def _rotation(ax: float, az: float) -> np.ndarray:
    """Rotation by ``ax`` radians about x then ``az`` about z (3×3)."""
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affine(spacing=(0.9, 1.1, 2.0), origin=(-50.0, -60.0, 10.0), angles=None) -> np.ndarray:
    """Voxel → world affine with voxel sizes ``spacing`` (mm), ``origin`` (mm) and, given ``angles``
    ``(ax, az)`` in radians, the axes rotated by ``ax`` about x then ``az`` about z."""
    a = np.eye(4)
    a[:3, :3] = (np.eye(3) if angles is None else _rotation(*angles)) @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def _volume(shape=(12, 10, 5), affine=None, seed=0, scale=300.0) -> Volume:
    """Random float32 volume in [-20, scale - 20) on ``affine`` (default :func:`_affine`)."""
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * scale - 20.0).astype(np.float32)
    affine = _affine() if affine is None else affine
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Volume(data=data, affine=affine, spacing=spacing, meta={"series_description": "test"})


@pytest.fixture
def make_affine() -> Callable[..., np.ndarray]:
    """``make_affine(spacing=(0.9, 1.1, 2.0), origin=(-50, -60, 10), angles=None)`` → 4×4 affine."""
    return _affine


@pytest.fixture
def make_volume() -> Callable[..., Volume]:
    """``make_volume(shape=(12, 10, 5), affine=None, seed=0, scale=300.0)`` → random float32 Volume."""
    return _volume
