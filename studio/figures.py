"""Charts and tables of the studio: dose–response and noise figures (Plotly), metric tables (Markdown).

No Gradio here: functions take arrays and return ``plotly.graph_objects.Figure`` or Markdown strings. Doses
are fractions of the standard dose; the axes show them in percent (the user-interface edge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from vce_core.domain import dose_percent, format_dose
from vce_core.errors import VCEInputError

SIGNAL_UNITS = "a.u."
"""Unit of MRI signal intensities (arbitrary units)."""

MIN_NOISE_PIXELS = 20
"""Fewer non-enhancing brain pixels than this on a slice: no noise histogram."""


def _layout(fig: go.Figure, title: str, xaxis: str, yaxis: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 11}},
        xaxis_title=xaxis,
        yaxis_title=yaxis,
        margin={"l": 55, "r": 8, "t": 34, "b": 38},
        height=250,
        legend={"orientation": "h", "y": -0.3, "font": {"size": 10}},
        template="plotly_white",
    )
    return fig


def dose_response_figure(
    real: Sequence[tuple[float, float]],
    synthetic: tuple[str, Sequence[tuple[float, float]]] | None,
    baseline: Sequence[tuple[float, float]],
    scope: str,
) -> go.Figure:
    """Mean enhancement (image − native, image units) vs dose.

    Parameters
    ----------
    real: ``(dose, enhancement)`` at the acquired doses (NaN where no real image exists).
    synthetic: ``(generator name, [(dose, enhancement), ...])``, or None without a generator.
    baseline: ``(dose, enhancement)`` of the linear baseline.
    scope: where the mean is taken, e.g. "CE voxels of this slice".
    """
    fig = go.Figure()

    def xy(points: Sequence[tuple[float, float]]) -> dict[str, list[float]]:
        return {"x": [dose_percent(d) for d, _ in points], "y": [v for _, v in points]}

    fig.add_trace(go.Scatter(**xy(real), name="Real (acquired doses)", mode="lines+markers"))
    if synthetic is not None:
        name, points = synthetic
        fig.add_trace(go.Scatter(**xy(points), name=f"Synthetic ({name})", mode="lines+markers"))
    fig.add_trace(go.Scatter(**xy(baseline), name="Linear baseline", mode="lines", line={"dash": "dash"}))
    return _layout(
        fig,
        f"Dose–response: mean enhancement in {scope}",
        "dose (% of standard dose)",
        f"mean enhancement, image − native ({SIGNAL_UNITS})",
    )


def noise_figure(
    images: Sequence[tuple[str, np.ndarray]], region: np.ndarray, dose: float, *, where: str = ""
) -> go.Figure:
    """Histograms of the local noise σ (:func:`local_noise_sd`) of each named 2-D image inside ``region``
    (the explorer passes subtraction images, image − native).

    Each trace is labelled with the image's noise estimate σ̂ (:func:`vce_core.metrics.noise_sigma`, the
    median-based estimate from the same second-difference filter, so the legend sits at the histogram's
    bulk); with fewer than :data:`MIN_NOISE_PIXELS` pixels in ``region`` the figure says so. ``dose``
    (fraction) and ``where`` (case, plane, slice) label the title.
    """
    fig = go.Figure()
    if region.sum() < MIN_NOISE_PIXELS:
        fig.add_annotation(text="too little non-enhancing tissue on this slice", showarrow=False)
    else:
        from vce_core.metrics import noise_sigma

        for name, img in images:
            try:
                label = f"{name}: σ̂ = {noise_sigma(img, region):.3g}"
            except VCEInputError:
                label = name
            fig.add_trace(
                go.Histogram(
                    x=local_noise_sd(img)[region],
                    name=label,
                    opacity=0.55,
                    nbinsx=40,
                    histnorm="probability density",
                )
            )
        fig.update_layout(barmode="overlay")
    title = f"Subtraction noise (image − native), non-enhancing brain, {format_dose(dose)} dose"
    return _layout(
        fig,
        f"{title} · {where}" if where else title,
        f"local noise σ, 5×5 window ({SIGNAL_UNITS})",
        "density",
    )


def local_noise_sd(img: np.ndarray, size: int = 5) -> np.ndarray:
    """Local noise σ: RMS over a ``size × size`` window of Immerkær's second-difference response / 6.

    The separable ``(1, −2, 1) ⊗ (1, −2, 1)`` filter annihilates constant and linear trends, and white
    noise of SD σ gives a response of SD 6σ, so on smooth anatomy this is σ: the same filter as
    :func:`vce_core.metrics.noise_sigma`, whose robust (median) estimate labels each histogram.
    """
    response = np.asarray(img, dtype=np.float64)
    for axis in range(2):
        response = ndimage.correlate1d(response, [1.0, -2.0, 1.0], axis=axis, mode="nearest")
    return np.sqrt(np.maximum(ndimage.uniform_filter((response / 6.0) ** 2, size, mode="nearest"), 0.0))


def metric_table(
    rows: Sequence[tuple[str, np.ndarray]],
    real: np.ndarray,
    brain: np.ndarray,
    ce: np.ndarray,
    data_range: float,
) -> str:
    """Markdown table of PSNR (dB, brain), SSIM, MAE_CE and MAE_σ (image units) of each row vs ``real``.

    ``rows`` are ``(name, image)`` on the grid of ``real`` (2-D slices or 3-D volumes); ``brain`` and ``ce``
    are boolean masks of the same shape; ``data_range`` is the intensity range for PSNR and SSIM.
    """
    from vce_core.metrics import mae_ce, mae_sigma, psnr, ssim

    non_ce = brain & ~ce

    def safe(fn: Callable[..., float], fmt: str, *args: Any, **kwargs: Any) -> str:
        try:
            return format(fn(*args, **kwargs), fmt)
        except VCEInputError:
            return "n/a"

    lines = [
        f"| image | PSNR (dB) | SSIM | MAE_CE ({SIGNAL_UNITS}) | MAE_σ ({SIGNAL_UNITS}) |",
        "|---|---:|---:|---:|---:|",
    ]
    region = brain if brain.any() else None
    for name, img in rows:
        cells = [
            safe(psnr, ".2f", img, real, data_range=data_range, mask=region),
            safe(ssim, ".4f", img, real, data_range=data_range, mask=region),
            safe(mae_ce, ".4g", img, real, ce) if ce.any() else "no CE voxels",
            safe(mae_sigma, ".4g", img, real, non_ce) if non_ce.any() else "n/a",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
