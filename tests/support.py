"""Builders shared by the tests (imported as ``support``; the fixtures that use them live in conftest.py).

Everything here writes small *real* files (case folders, checkpoints) that the code under test reads back.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vce_core.io import Case, Volume, save_case

# ------------------------------------------------------------------------------------------- case folders
TINY_SHAPE = (24, 24, 12)
TINY_DOSES = (0.1, 0.33)


def write_tiny_cases(
    root: Path, n: int, shape: tuple[int, int, int] = TINY_SHAPE, seed: int = 0
) -> list[Path]:
    """Write ``n`` small synthetic cases (ellipsoid brain, one enhancing blob, noisy low doses) under root."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    folders = []
    for c in range(n):
        brain = (i / 0.8) ** 2 + (j / 0.8) ** 2 + (k / 0.7) ** 2 < 1
        native = np.where(brain, 100 + 20 * np.sin(3 * i + c) + rng.normal(0, 2, shape), 0).astype(np.float32)
        enh = 80 * np.exp(-((i - 0.2) ** 2 + (j + 0.1) ** 2 + k**2) / 0.05) * brain
        sd = (native + enh + rng.normal(0, 2, shape) * brain).astype(np.float32)
        lows = {
            d: Volume((native + d * enh + rng.normal(0, 2, shape) * brain).astype(np.float32))
            for d in TINY_DOSES
        }
        case = Case(
            native=Volume(native),
            standard_dose=Volume(sd),
            low_doses=lows,
            field_strength=3.0 if c % 2 == 0 else 1.5,
            meta={"case_id": f"tiny-{c:02d}"},
        )
        folder = root / f"tiny-{c:02d}"
        save_case(case, folder)
        folders.append(folder)
    return folders


def write_contrast_cases(
    root: Path,
    n: int,
    shape: tuple[int, int, int] = TINY_SHAPE,
    seed: int = 0,
    extras: tuple[str, ...] = ("t2", "flair", "adc"),
) -> list[Path]:
    """Write ``n`` tiny cases with T2/FLAIR/ADC extras (virtual contrast): the enhancing blob is dark on T2
    and bright on FLAIR, so the inputs tell where the contrast goes. ``extras`` picks the extra images."""
    folders = write_tiny_cases(root, n, shape=shape, seed=seed)
    rng = np.random.default_rng(seed + 1)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    blob = np.exp(-((i - 0.2) ** 2 + (j + 0.1) ** 2 + k**2) / 0.05)
    for folder in folders:
        from vce_core.io import load_case

        case = load_case(folder)
        brain = case.native.data > 0
        levels = {"t2": (80.0, -40.0), "flair": (120.0, 60.0), "adc": (0.9, -0.4)}
        case.extra = {
            name: Volume(
                np.where(brain, levels[name][0] + levels[name][1] * blob + rng.normal(0, 1, shape), 0).astype(
                    np.float32
                )
            )
            for name in extras
        }
        save_case(case, folder, overwrite=True)
    return folders


DISC_SHAPE = (24, 24, 8)


def disc_case(seed: int) -> Case:
    """A tiny brain-like case: a bright disc with one enhancing blob; acquired low dose 0.33."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(DISC_SHAPE[0]), np.arange(DISC_SHAPE[1]), indexing="ij")
    disc = ((i - 12) ** 2 + (j - 12) ** 2 < 81).astype(np.float32)
    native = np.repeat(disc[:, :, None] * 100.0, DISC_SHAPE[2], axis=2)
    enhancement = np.zeros(DISC_SHAPE, np.float32)
    k0 = 2 + seed % 4
    enhancement[9:14, 9:14, k0 : k0 + 2] = 80.0
    native = native + rng.normal(0, 1.0, DISC_SHAPE).astype(np.float32)
    standard = native + enhancement
    low = native + 0.33 * enhancement + rng.normal(0, 1.0, DISC_SHAPE).astype(np.float32)
    vol = lambda a: Volume(a.astype(np.float32))  # noqa: E731
    return Case(
        native=vol(native),
        standard_dose=vol(standard),
        low_doses={0.33: vol(low)},
        field_strength=3.0,
        agent="gadobutrol",
        meta={"case_id": f"phantom-{seed:04d}"},
    )


def write_disc_cases(root: Path, n: int) -> list[Path]:
    """Write ``n`` tiny :func:`disc_case` folders under ``root/cases``."""
    folders = []
    for k in range(n):
        folder = root / "cases" / f"phantom-{k:04d}"
        save_case(disc_case(k), folder)
        folders.append(folder)
    return folders


PHANTOM_SEED = 5


def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 mm phantom case folder, simulated once per test session."""
    from vce_core.phantom import make_case

    cached = tmp_path_factory.getbasetemp() / "studio-phantom-case"
    if not (cached / "case.json").is_file():
        case = make_case(PHANTOM_SEED, doses=(0.1, 0.33), resolution=2.0, field_strength=3.0)
        save_case(case, cached)
    return cached


def record_sequence(folder: Path, tr_ms: float = 6.8, flip_deg: float = 8.0) -> Path:
    """Add a T1 sequence (case.json ``meta.sequence``, as phantom cases record it) to a case folder."""
    import json

    manifest = json.loads((folder / "case.json").read_text())
    manifest.setdefault("meta", {})["sequence"] = {
        "name": "test",
        "tr_ms": tr_ms,
        "te_ms": 3.1,
        "flip_deg": flip_deg,
    }
    (folder / "case.json").write_text(json.dumps(manifest))
    return folder


def record_labels(folder: Path) -> np.ndarray:
    """Give a tiny case phantom tissue labels (labels.nii.gz and case.json ``meta.labels``, as phantom cases
    hold them): its brain (:func:`vce_core.preprocess.brain_mask` of the native image) is enhancing rim
    where the native image is brighter than the brain's median, meningioma elsewhere (so the tissue can be
    told from the image); the rest is background. Returns the label map."""
    from vce_core.io import load_case
    from vce_core.phantom import LABELS
    from vce_core.preprocess import brain_mask

    case = load_case(folder)
    brain = np.asarray(brain_mask(case.native), dtype=bool)
    native = np.asarray(case.native.data, dtype=np.float32)
    bright = native > np.median(native[brain])
    labels = np.zeros(brain.shape, np.int16)
    labels[brain & bright] = 7
    labels[brain & ~bright] = 11
    case.extra["labels"] = Volume(labels.astype(np.float32))
    case.meta["labels"] = {str(k): v for k, v in LABELS.items()}
    save_case(case, folder, overwrite=True)
    return labels


def copy_case(source: Path, data: Path) -> Path:
    """Copy a phantom case folder into ``data/demo/<case id>``."""
    target = data / "demo" / f"phantom-{PHANTOM_SEED:04d}"
    shutil.copytree(source, target)
    return target


# torchvision's VGG-16 ("D") layer list up to relu3_3: channels per 3x3 convolution, "M" for max-pooling.
# ``features`` numbers each module: a convolution and its ReLU take two indices, a pooling one. The table
# is derived from this list, not copied from the loss, so that a wrong table in the loss fails the tests.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256)


def vgg16_convs() -> list[tuple[int, int, int]]:
    """(index in ``features``, in channels, out channels) of each convolution, derived from the layer list."""
    convs, index, cin = [], 0, 3
    for item in VGG16_CFG:
        if item == "M":
            index += 1
            continue
        convs.append((index, cin, int(item)))
        index, cin = index + 2, int(item)
    return convs


def random_vgg_state(seed: int = 0) -> dict[str, Any]:
    """A VGG-16 ``features`` state dict (torchvision keys to relu3_3) with random He-scaled weights."""
    import math

    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for index, cin, cout in vgg16_convs():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(
            2 / (9 * cin)
        )
        state[f"features.{index}.bias"] = torch.randn(cout, generator=gen) * 0.01
    return state


def write_random_vgg(path: Path, seed: int = 0) -> Path:
    """:func:`random_vgg_state` saved as safetensors at ``path``."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_vgg_state(seed), str(path))
    return path


# -------------------------------------------------------------------------------------------- checkpoints
SMALL = {
    "spatial_dims": 2,
    "base_channels": 4,
    "num_res_blocks": 1,
    "num_scales": 2,
    "output_heads": 1,
    "emb_features": 8,
}
GENERATOR = "tiny-test-generator"


def write_checkpoint(
    folder: Path,
    config: dict | None = None,
    *,
    zero: bool = False,
    dose_visible: bool = False,
    **card_extra: object,
) -> Path:
    """A seeded, untrained ``ld_cgan_generator`` checkpoint folder (card.json + weights.safetensors).

    Written by :func:`vce_core.checkpoint.write_checkpoint`; ``card_extra`` sets card keys (known keys set
    their :class:`~vce_core.checkpoint.ModelCard` field, others are kept as extra keys). ``zero`` zeroes
    the output heads (the generator returns the native image); ``dose_visible`` randomises
    the zero-initialised output layers and amplifies the embedding so the dose visibly changes the output.
    """
    import torch

    from vce_core.models import build_model

    torch.manual_seed(0)
    model = build_model("ld_cgan_generator", **(config or SMALL))
    with torch.no_grad():
        if zero:
            for head in model.heads:
                for p in head[-1].parameters():
                    torch.nn.init.zeros_(p)
        if dose_visible:
            for key, param in model.named_parameters():
                if key.endswith("weight") and not param.abs().sum():
                    param.normal_(0.0, 0.5)
                elif key.startswith("embedding."):
                    param.mul_(8.0)
    return write_model(folder, "ld_cgan_generator", model, **card_extra)


def write_model(folder: Path, model_name: str, model: Any, **card: Any) -> Path:
    """Write the built ``model`` (registered as ``model_name``) as a checkpoint folder: its weights and a
    card with the small-test defaults (``name`` the folder's, 2-D or 3-D data mode from its config, no
    context, 16-voxel patches, percentile normalisation). ``card`` sets card keys (known keys set their
    :class:`~vce_core.checkpoint.ModelCard` field, others are kept as extra keys)."""
    from vce_core import checkpoint

    card = checkpoint.ModelCard(
        name=folder.name,
        model=model_name,
        config=model.config,
        data_mode="3d" if model.config["spatial_dims"] == 3 else "2d",
        context=0,
        patch_size=16,
        normalization={"method": "percentile"},
    ).with_changes(**card)
    return checkpoint.write_checkpoint(folder, model.state_dict(), card)


def write_contrast_model(folder: Path, model_name: str, model: Any, **card: Any) -> Path:
    """:func:`write_model` of a virtual-contrast generator (put in eval mode): the card's task is
    ``virtual_contrast``, its target the standard dose; ``card`` names the ``inputs`` (and may override)."""
    return write_model(
        folder, model_name, model.eval(), **{"task": "virtual_contrast", "target": "standard_dose", **card}
    )


def write_app_checkpoint(folder: Path) -> Path:
    """The studio tests' generator: dose visibly matters, and the card has training and validation figures."""
    return write_checkpoint(
        folder,
        dose_visible=True,
        patch_size=32,
        training={"iterations": 0, "wall_time_s": 0.0, "hardware": {"cpu": "test"}},
        data={"train": {"count": 0, "doses": [0.1, 0.33], "field_strengths": [3.0]}},
        validation={"psnr": 30.0, "ssim": 0.9, "mae_ce": 0.1, "mae_sigma": 0.01},
    )


VC_SMALL = {"spatial_dims": 2, "widths": [4, 8, 8], "stem_channels": 4, "res_blocks": 1}


def write_vc_checkpoint(
    folder: Path, inputs: tuple[str, ...] = ("native", "t2"), optional: tuple[str, ...] = (), **card: object
) -> Path:
    """A seeded, untrained 2-D ``hrfcn`` virtual-contrast checkpoint over ``inputs`` (``optional``: inputs
    that may be absent), with its card's ``task: virtual_contrast``; ``card`` sets further card keys."""
    import torch

    from vce_core import checkpoint
    from vce_core.models import build_model

    torch.manual_seed(0)
    model = build_model("hrfcn", **VC_SMALL, in_modalities=len(inputs))
    model(torch.randn(2, len(inputs), 16, 16))  # BatchNorm running statistics
    values = {
        "name": folder.name,
        "model": "hrfcn",
        "config": model.config,
        "data_mode": "2d",
        "context": 0,
        "patch_size": 16,
        "normalization": {"method": "percentile"},
        "task": "virtual_contrast",
        "inputs": list(inputs),
        "optional_inputs": list(optional),
        "target": "standard_dose",
        **card,
    }
    return checkpoint.write_checkpoint(folder, model.eval().state_dict(), checkpoint.ModelCard(**values))


def image_pixels(value: Any) -> np.ndarray:
    """Pixels of an image returned by gradio_client (a PNG file path or a dict with ``path``)."""
    from PIL import Image

    if isinstance(value, dict):
        value = value.get("path") or value.get("value")
    with Image.open(value) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def update_value(update: Any) -> Any:
    """The value of a component update returned by gradio_client (a dict with ``value``) or a plain value."""
    return update.get("value") if isinstance(update, dict) and "value" in update else update


# ------------------------------------------------------------------------------------------ reader study
class FakeGenerator:
    """Stands in for vce_core.synthesis.Synthesizer: linear dose scaling plus seeded noise."""

    name = "fakegen-v1"

    def synthesize(self, native, standard_dose, dose, field_strength, seed=None):  # noqa: ANN001, ANN201
        rng = np.random.default_rng(seed)
        return native + dose * (standard_dose - native) + rng.normal(0, 1.0, native.shape).astype(np.float32)


class FakeContrast:
    """Stands in for a virtual-contrast Synthesizer: native × 1.5 plus seeded noise; refuses a case that
    lacks one of its ``inputs`` as the real one does (a VCEInputError naming the input)."""

    name = "fakevc-v1"
    task = "virtual_contrast"

    def __init__(self, inputs: tuple[str, ...] = ("native",)) -> None:
        self.inputs = list(inputs)

    def synthesize_contrast(self, case):  # noqa: ANN001, ANN201
        from vce_core.errors import VCEInputError

        missing = [n for n in self.inputs if n != "native" and n not in case.extra]
        if missing:
            raise VCEInputError(f"the required input(s) {', '.join(missing)} of {self.name} are missing")
        native = np.asarray(case.native.data, dtype=np.float32)
        return 1.5 * native + np.random.default_rng(1).normal(0, 1.0, native.shape).astype(np.float32)


def fake_loader(name: str) -> Any:
    """The reader-study tests' generator loader: :class:`FakeContrast` for names starting ``fakevc``
    (``fakevc-t2`` needs a T2 image), else :class:`FakeGenerator`."""
    if name.startswith("fakevc"):
        return FakeContrast(("native", "t2") if name.endswith("-t2") else ("native",))
    return FakeGenerator()


def spec_dict(root: Path, name: str = "t-study", readers: int = 2, **options: object) -> dict[str, Any]:
    """A small spec: 3 cases × 3 conditions, 3 slices each, the default questions."""
    return {
        "name": name,
        "instructions": "Rate each image.",
        "seed": 7,
        "cases": {"glob": "cases/*"},
        "conditions": ["real_standard_dose", "real_low_dose", "synthetic_low_dose"],
        "doses": [0.33],
        "generator": "fakegen",
        "slices": {"select": "most_enhancing", "count": 3},
        "readers": [f"Reader {k + 1}" for k in range(readers)],
        "options": {"min_distance": 2, **options},
        "status": "open",
    }


ITEM_FIELD = re.compile(r"[\w-]{22} [\w-]{16}")
"""The reader page's item field: "<ticket> <idempotency key>"."""


def empty_slots() -> list[Any]:
    """The reader view's 3 × MAX_QUESTIONS answer slots (choice, confidence, text), nothing answered."""
    from reader_study.ui import MAX_QUESTIONS

    return [None, None, ""] * MAX_QUESTIONS


def slot_answers(likert: str = "3", guess: str = "real", confidence: str = "2", **changes: Any) -> list[Any]:
    """Slot values answering :func:`spec_dict`'s questions (three Likert, then real vs synthetic with a
    confidence), with ``changes`` as ``{"s<slot index>": value}``."""
    values = empty_slots()
    values[0] = values[3] = values[6] = likert
    values[9], values[10] = guess, confidence
    for slot, value in changes.items():
        values[int(slot[1:])] = value
    return values


def shown_item(values: Any) -> str | None:
    """The item field among a reader handler's output values (None: no item shown)."""
    return next((v for v in values if isinstance(v, str) and ITEM_FIELD.fullmatch(v)), None)


def make_service(root: Path, url: str | None = None) -> Any:
    """A reader-study service over ``root/rs.db`` with cases under ``root`` and the fake generator."""
    from reader_study.db import open_database
    from reader_study.service import ReaderStudyService

    db = open_database(url or f"sqlite:///{root / 'rs.db'}")
    return ReaderStudyService(db, data_root=root, generator_loader=fake_loader)


def open_study(root: Path, cases: int, url: str | None = None, **spec: Any) -> tuple[Any, dict[str, Any]]:
    """``cases`` :func:`write_disc_cases` under ``root``, a :func:`make_service` over them (``url``: its
    database) and the study of ``spec_dict(root, **spec)`` created in it.

    Returns (service, ``create_study`` output).
    """
    from reader_study.auth import SYSTEM

    write_disc_cases(root, cases)
    svc = make_service(root, url)
    return svc, svc.create_study(SYSTEM, spec_dict(root, **spec))


LIKERT_ANSWERS = {
    "overall_quality": 4,
    "lesion_conspicuity": 3,
    "noise": 5,
    "real_or_synthetic": {"value": "real", "confidence": 4},
}

# ------------------------------------------------------------------------------------------------ servers
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def require_chromium() -> None:
    """Skip without Debian's Chromium; fail instead when ``CI`` is set (CI installs it)."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
