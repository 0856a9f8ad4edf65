"""Tissue, contrast-agent and sequence tables, signal equations and Rician noise for the phantom.

Every number is listed with its source in ``docs/phantom.md`` (taken from the team's phantom-physics design
note); rows marked *assumed* there are modelling choices and are flagged ``assumed=True`` here.

Units
-----
T1, T2 in seconds; TR, TE in milliseconds (as in seed 000's Table 2); flip angle in degrees;
concentrations in mM (mmol/L); relaxivity r1 in L·mmol⁻¹·s⁻¹; ADC in 10⁻³ mm²/s; field strength in
tesla; dose as a fraction of the agent's standard dose (1.0 = standard dose).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vce_core import domain
from vce_core.domain import DOSE_MAX_PHANTOM
from vce_core.errors import VCEInputError

FIELD_STRENGTHS: tuple[float, ...] = (1.5, 3.0)
"""Field strengths (T) for which relaxation times and relaxivities are tabulated."""

REFERENCE_DOSE_MMOL_PER_KG = 0.1
"""The administered dose (mmol/kg) for which the kinetics table gives ``c_full``."""

SNR_WM: dict[float, float] = {1.5: 30.0, 3.0: 50.0}
"""White-matter SNR of the native T1 image (noise-free WM signal / σ), per field strength."""

WM_SIGNAL = 1000.0
"""Every sequence is scaled (receiver gain) so that pure white matter reads this value (a.u.)."""


def check_field_strength(field_strength: Any) -> float:
    """``field_strength`` (tesla) as the tabulated value of :data:`FIELD_STRENGTHS` it equals.

    The domain's rule comes first (:func:`vce_core.domain.check_field_strength`: a number in (0, 12] T),
    then the phantom's own: relaxation times and relaxivities exist at 1.5 and 3 T only.
    """
    tesla = domain.check_field_strength(field_strength)
    for known in FIELD_STRENGTHS:
        if abs(tesla - known) < 1e-6:
            return known
    raise VCEInputError(
        f"field strength {field_strength!r} T is not tabulated", expected="1.5 or 3.0 (tesla)"
    )


@dataclass(frozen=True)
class Tissue:
    """Physical properties of one tissue class.

    Attributes
    ----------
    name: tissue name (key of :data:`TISSUES`).
    label: value in the label map (see :data:`LABELS`).
    t1: T1 in s at 1.5 T and 3 T.
    t2: T2 in s at 1.5 T and 3 T (used as T2* approximation in the gradient echo).
    pd: proton density relative to water.
    c_full: tissue gadolinium concentration (mM) ~5 min after 0.1 mmol/kg.
    adc: apparent diffusion coefficient (10⁻³ mm²/s).
    enhancing: True when the tissue enhances visibly (drives the ``ce_mask`` ground truth).
    assumed: True when some value is a modelling assumption rather than a literature value.
    """

    name: str
    label: int
    t1: tuple[float, float]
    t2: tuple[float, float]
    pd: float
    c_full: float
    adc: float
    enhancing: bool
    assumed: bool

    def t1_at(self, field_strength: float) -> float:
        """T1 (s) at ``field_strength`` (1.5 or 3 T)."""
        return self.t1[FIELD_STRENGTHS.index(field_strength)]

    def t2_at(self, field_strength: float) -> float:
        """T2 (s) at ``field_strength`` (1.5 or 3 T)."""
        return self.t2[FIELD_STRENGTHS.index(field_strength)]


TISSUES: dict[str, Tissue] = {
    t.name: t
    for t in (
        Tissue("csf", 1, (4.2, 4.2), (2.0, 2.0), 1.00, 0.0, 3.0, False, False),
        Tissue("gray_matter", 2, (1.124, 1.820), (0.095, 0.099), 0.80, 0.023, 0.8, False, False),
        Tissue("white_matter", 3, (0.884, 1.084), (0.072, 0.069), 0.70, 0.011, 0.7, False, False),
        Tissue("blood", 4, (1.441, 1.664), (0.275, 0.15), 0.85, 0.45, 2.0, True, True),
        Tissue("choroid_plexus", 5, (1.3, 1.6), (0.10, 0.09), 0.85, 0.38, 1.0, True, True),
        Tissue("dura", 6, (1.0, 1.2), (0.06, 0.055), 0.65, 0.33, 1.0, True, True),
        Tissue("enhancing_rim", 7, (1.40, 1.85), (0.12, 0.09), 0.85, 0.33, 1.0, True, True),
        Tissue("necrosis", 8, (2.0, 2.5), (0.25, 0.20), 0.95, 0.035, 2.0, False, True),
        Tissue("edema", 9, (0.884 * 1.3, 1.084 * 1.3), (0.11, 0.11), 0.80, 0.011, 1.4, False, True),
        Tissue("metastasis", 10, (1.3, 1.7), (0.10, 0.09), 0.85, 0.37, 1.0, True, True),
        Tissue("meningioma", 11, (1.1, 1.43), (0.09, 0.08), 0.80, 0.51, 0.85, True, True),
        Tissue("weak_lesion", 12, (1.02, 1.25), (0.09, 0.085), 0.78, 0.05, 1.1, True, True),
        Tissue("nonenhancing_lesion", 13, (1.3, 1.6), (0.13, 0.12), 0.85, 0.0, 1.3, False, True),
    )
}
"""Tissue classes. ``weak_lesion`` is seed 000's Fig. 4 lesion: visible at standard dose, lost in the
noise at 10 % dose. ``nonenhancing_lesion`` is the control: its concentration is exactly zero."""

LABELS: dict[int, str] = {0: "background", **{t.label: t.name for t in TISSUES.values()}}
"""Label map values → names (``labels`` volume of a phantom case)."""

ENHANCING_LABELS: tuple[int, ...] = tuple(t.label for t in TISSUES.values() if t.enhancing)
"""Labels of truly enhancing tissue (``ce_mask`` ground truth)."""


@dataclass(frozen=True)
class Agent:
    """A gadolinium-based contrast agent.

    Attributes
    ----------
    name: generic name.
    r1: longitudinal relaxivity in plasma at 37 °C (L·mmol⁻¹·s⁻¹) at 1.5 T and 3 T (Rohrer 2005).
    standard_dose: labelled standard dose (mmol/kg).
    """

    name: str
    r1: tuple[float, float]
    standard_dose: float

    def r1_at(self, field_strength: float) -> float:
        """r1 (L·mmol⁻¹·s⁻¹) at ``field_strength``."""
        return self.r1[FIELD_STRENGTHS.index(field_strength)]

    @property
    def concentration_scale(self) -> float:
        """Factor on the kinetics table's ``c_full``: administered mmol/kg relative to 0.1 mmol/kg."""
        return self.standard_dose / REFERENCE_DOSE_MMOL_PER_KG


AGENTS: dict[str, Agent] = {
    "gadobutrol": Agent("gadobutrol", (5.2, 5.0), 0.1),
    "gadoterate": Agent("gadoterate", (3.6, 3.5), 0.1),
    "gadopiclenol": Agent("gadopiclenol", (12.8, 11.6), 0.05),
}


@dataclass(frozen=True)
class Sequence:
    """A 3-D spoiled gradient-echo T1 sequence.

    Attributes
    ----------
    name: preset name or a free label for a custom sequence.
    tr_ms: repetition time (ms), > 0.
    te_ms: echo time (ms), 0 ≤ TE < TR.
    flip_deg: flip angle (degrees), in (0, 90].
    field_strength: the field (T) a preset was acquired at; None for a custom sequence usable at any.
    """

    name: str
    tr_ms: float
    te_ms: float
    flip_deg: float
    field_strength: float | None = None

    def __post_init__(self) -> None:
        for attr in ("tr_ms", "te_ms", "flip_deg"):
            value = getattr(self, attr)
            if not isinstance(value, int | float) or not np.isfinite(value):
                raise VCEInputError(f"sequence {attr} is {value!r}", expected="a finite number")
        if self.tr_ms <= 0 or not 0 <= self.te_ms < self.tr_ms:
            raise VCEInputError(
                f"sequence timing TR {self.tr_ms} ms / TE {self.te_ms} ms is not possible",
                expected="TR > 0 ms and 0 ≤ TE < TR",
            )
        if not 0 < self.flip_deg <= 90:
            raise VCEInputError(
                f"flip angle {self.flip_deg}° is out of range", expected="a flip angle in (0, 90] degrees"
            )
        if self.field_strength is not None:
            check_field_strength(self.field_strength)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (goes into ``case.json`` ``meta.sequence``)."""
        return asdict(self)


SEQUENCE_PRESETS: dict[str, Sequence] = {
    s.name: s
    for s in (
        Sequence("achieva_3t", 6.8, 3.1, 8.0, 3.0),
        Sequence("achieva_1.5t", 7.3, 3.3, 8.0, 1.5),
        Sequence("ingenia_3t", 7.7, 3.8, 8.0, 3.0),
        Sequence("ingenia_1.5t", 15.4, 3.6, 30.0, 1.5),
    )
}
"""Seed 000 Table 2 (Philips Achieva / Ingenia, 3-D T1 gradient echo)."""

T2W_TR_S, T2W_TE_S = 4.0, 0.090
"""T2-weighted spin echo: TR 4 s, TE 90 ms."""

FLAIR_TR_S, FLAIR_TE_S = 9.0, 0.120
"""FLAIR: TR 9 s, TE 120 ms (*assumed*, typical clinical values); TI nulls CSF (see :func:`flair_ti`)."""

ADC_NOISE_SD = 0.03
"""SD of the Gaussian noise on the ADC map (10⁻³ mm²/s, *assumed*)."""


def check_agent(agent: str) -> Agent:
    """Return the :class:`Agent` named ``agent`` (case-insensitive), else raise VCEInputError."""
    if isinstance(agent, str) and agent.lower() in AGENTS:
        return AGENTS[agent.lower()]
    raise VCEInputError(f"unknown contrast agent {agent!r}", expected="one of " + ", ".join(AGENTS))


def check_dose(dose: Any) -> float:
    """``dose`` (fraction of the standard dose) in [0, :data:`~vce_core.domain.DOSE_MAX_PHANTOM`].

    The domain's dose rule (:func:`vce_core.domain.check_dose`) with the phantom's maximum: double dose
    is a clinical protocol, so the phantom simulates up to 2.
    """
    return domain.check_dose(dose, maximum=DOSE_MAX_PHANTOM)


def resolve_sequence(sequence: str | Sequence | dict) -> Sequence:
    """A :class:`Sequence` from a preset name, a Sequence, or its ``to_dict()`` form."""
    if isinstance(sequence, Sequence):
        return sequence
    if isinstance(sequence, str):
        if sequence.lower() in SEQUENCE_PRESETS:
            return SEQUENCE_PRESETS[sequence.lower()]
        raise VCEInputError(
            f"unknown sequence preset {sequence!r}", expected="one of " + ", ".join(SEQUENCE_PRESETS)
        )
    if isinstance(sequence, dict):
        try:
            return Sequence(**sequence)
        except TypeError as exc:
            raise VCEInputError(
                f"bad sequence description {sequence!r} ({exc})", expected="name, tr_ms, te_ms, flip_deg"
            ) from exc
    raise VCEInputError(f"bad sequence {sequence!r}", expected="a preset name or a Sequence")


def spgr_signal(pd: np.ndarray, r1: np.ndarray, t2: np.ndarray, sequence: Sequence) -> np.ndarray:
    """Spoiled gradient-echo signal S = PD·sinα·(1−E1)/(1−cosα·E1)·exp(−TE/T2), E1 = exp(−TR·R1).

    ``r1`` is the relaxation *rate* R1 (s⁻¹); ``t2`` (s) stands in for T2*; arrays broadcast; float64.
    """
    alpha = np.deg2rad(sequence.flip_deg)
    e1 = np.exp(-sequence.tr_ms * 1e-3 * np.asarray(r1, dtype=np.float64))
    return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-sequence.te_ms * 1e-3 / t2)


def t2w_signal(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Spin-echo T2-weighted signal S = PD·(1 − exp(−TR/T1))·exp(−TE/T2), TR 4 s, TE 90 ms."""
    return pd * (1.0 - np.exp(-T2W_TR_S / t1)) * np.exp(-T2W_TE_S / t2)


def flair_ti(t1_csf: float = 4.2) -> float:
    """Inversion time (s) that nulls a tissue of T1 ``t1_csf`` (s): TI = T1·ln(2 / (1 + exp(−TR/T1)))."""
    return t1_csf * float(np.log(2.0 / (1.0 + np.exp(-FLAIR_TR_S / t1_csf))))


def flair_signal(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Magnitude inversion-recovery signal PD·|1 − 2·exp(−TI/T1) + exp(−TR/T1)|·exp(−TE/T2), CSF nulled."""
    ti = flair_ti()
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-FLAIR_TR_S / t1)) * np.exp(-FLAIR_TE_S / t2)


def enhancement_saturation(t1: float, r1: float, concentration: float, sequence: Sequence) -> float:
    """Enhancement at ``concentration`` (mM) relative to the linear (small-C) prediction.

    ``(S(R1₀ + r1·C) − S(R1₀)) / (r1·C·dS/dR1|R1₀)``; 1 means linear, < 1 saturating. Used to check
    the phantom images against the signal equation (≈0.8–0.85 at 0.1 mM, ≈0.3 at 1 mM for the 8° presets).
    """
    r10 = 1.0 / t1
    d_r1 = r1 * concentration
    eps = 1e-6
    slope = (spgr_signal(1.0, r10 + eps, 1e9, sequence) - spgr_signal(1.0, r10 - eps, 1e9, sequence)) / (
        2 * eps
    )
    delta = spgr_signal(1.0, r10 + d_r1, 1e9, sequence) - spgr_signal(1.0, r10, 1e9, sequence)
    return float(delta / (d_r1 * slope))


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A PCG64 generator seeded from ``SeedSequence([seed, *keys])``: identical on every machine."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *(int(k) for k in keys)])))


def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``signal`` + complex Gaussian noise N(0, σ) on real and imaginary parts (float32).

    Where the signal is 0 the result has mean 1.253·σ and SD 0.655·σ (Rayleigh).
    """
    noise = rng.standard_normal((2, *signal.shape), dtype=np.float32)
    noise *= np.float32(sigma)
    noise[0] += signal
    np.square(noise, out=noise)
    out = noise[0] + noise[1]
    return np.sqrt(out, out=out)
