"""Synthesizer: checkpoint round trip, zero model at dose 0, slice == volume slice, baseline, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import SMALL, write_checkpoint, write_contrast_model, write_tiny_cases
from vce_core.checkpoint import read_card, update_card
from vce_core.errors import VCEInputError, VCEModelError
from vce_core.io import load_case, load_volume
from vce_core.synthesis import Synthesizer, linear_baseline, list_checkpoints, main


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, Path]:
    folder = write_tiny_cases(tmp_path_factory.mktemp("synth"), 1, shape=(21, 19, 6))[0]
    case = load_case(folder)
    return case.native.data, case.standard_dose.data, folder


def test_round_trip_shape_and_zero_model(volumes: tuple, tmp_path: Path) -> None:
    native, sd, _ = volumes
    synth = Synthesizer.from_checkpoint(write_checkpoint(tmp_path / "zero", SMALL, zero=True), device="cpu")
    assert synth.name == "zero" and synth.card.model == "ld_cgan_generator"
    assert synth.card["model"] == "ld_cgan_generator"  # the card is also a mapping of its JSON keys
    out = synth.synthesize(native, sd, 0.0, 3.0, seed=1)
    assert out.shape == native.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, native)  # zero residual → exactly the native image
    calls: list[tuple[int, int]] = []
    synth.batch_size = 4
    synth.synthesize(native, sd, 0.3, 1.5, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (2, 2)


def test_slice_equals_volume_slice_and_seeds(volumes: tuple, tmp_path: Path) -> None:
    native, sd, _ = volumes
    synth = Synthesizer.from_checkpoint(write_checkpoint(tmp_path / "m", SMALL), device="cpu")
    vol = synth.synthesize(native, sd, 0.2, 3.0, seed=7)
    prep = synth.prepare(native, sd)
    for k in (0, 3, 5):
        sl = synth.synthesize_slice(prep, 0.2, 3.0, plane="axial", index=k, seed=7)
        np.testing.assert_allclose(sl, vol[:, :, k], rtol=1e-5, atol=1e-3)
    cor = synth.synthesize_slice(prep, 0.2, 3.0, plane="coronal", index=4, seed=7)
    np.testing.assert_allclose(cor, vol[:, 4, :], rtol=1e-5, atol=1e-3)
    assert synth.synthesize_slice(prep, 0.2, 3.0, plane="sagittal", index=2, seed=7).shape == (19, 6)
    assert not np.array_equal(vol, synth.synthesize(native, sd, 0.2, 3.0, seed=8))


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_stack_and_sliding_window_models(mode: str, volumes: tuple, tmp_path: Path) -> None:
    native, sd, _ = volumes
    config = {**SMALL, "spatial_dims": 3 if mode == "3d" else 2, "in_slices": 3 if mode == "2.5d" else 1}
    folder = write_checkpoint(
        tmp_path / "m", config, data_mode=mode, context=1 if mode == "2.5d" else 0, patch_size=8
    )
    synth = Synthesizer.from_checkpoint(folder, device="cpu")
    vol = synth.synthesize(native, sd, 0.3, 3.0, seed=3)
    assert vol.shape == native.shape and np.isfinite(vol).all()
    prep = synth.prepare(native, sd)
    for plane, index, ref in (
        ("axial", 2, vol[:, :, 2]),
        ("coronal", 7, vol[:, 7, :]),
        ("sagittal", 20, vol[20]),
    ):
        sl = synth.synthesize_slice(prep, 0.3, 3.0, plane=plane, index=index, seed=3)
        np.testing.assert_allclose(sl, ref, rtol=1e-5, atol=1e-3)


def test_linear_baseline_exact(volumes: tuple) -> None:
    native, sd, _ = volumes
    np.testing.assert_array_equal(linear_baseline(native, sd, 0.0), native)
    np.testing.assert_allclose(linear_baseline(native, sd, 0.25), native + 0.25 * (sd - native), rtol=1e-6)


def test_bad_input(volumes: tuple, tmp_path: Path) -> None:
    native, sd, _ = volumes
    synth = Synthesizer.from_checkpoint(write_checkpoint(tmp_path / "m", SMALL), device="cpu")
    for dose in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(VCEInputError):
            synth.synthesize(native, sd, dose, 3.0)
    with pytest.raises(VCEInputError):
        linear_baseline(native, sd, 2.0)
    with pytest.raises(VCEInputError):
        synth.synthesize(native, sd[:-1], 0.2, 3.0)
    bad = native.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(VCEInputError):
        synth.synthesize(bad, sd, 0.2, 3.0)
    with pytest.raises(VCEInputError):
        synth.synthesize(native[:, :, 0], sd[:, :, 0], 0.2, 3.0)
    prep = synth.prepare(native, sd)
    with pytest.raises(VCEInputError):
        synth.synthesize_slice(prep, 0.2, 3.0, plane="axial", index=99)
    with pytest.raises(VCEInputError):
        synth.synthesize_slice(prep, 0.2, 3.0, plane="oblique", index=0)
    with pytest.raises(VCEModelError):
        Synthesizer.from_checkpoint(tmp_path / "missing")
    (tmp_path / "nocard").mkdir()
    with pytest.raises(VCEInputError):
        Synthesizer.from_checkpoint(tmp_path / "nocard")
    wrong = write_checkpoint(tmp_path / "wrong", SMALL)
    update_card(wrong, config={**read_card(wrong).config, "base_channels": 8})
    with pytest.raises(VCEModelError):
        Synthesizer.from_checkpoint(wrong)


def test_list_checkpoints_and_cli(volumes: tuple, tmp_path: Path) -> None:
    _, _, case_folder = volumes
    models = tmp_path / "models"
    write_checkpoint(models / "b", SMALL)
    write_checkpoint(models / "a", SMALL)
    (models / "junk").mkdir()
    assert [p.name for p in list_checkpoints(models)] == ["a", "b"]
    update_card(models / "b", default=True)
    assert [p.name for p in list_checkpoints(models)] == ["b", "a"]  # the card marked default comes first
    assert list_checkpoints(tmp_path / "none") == []
    out = tmp_path / "out"

    def cli(*args: object) -> int:
        """The synthesis CLI on model ``a`` and the tiny case, writing into ``out``."""
        base = ["--model", models / "a", "--case", case_folder, "--out", out, "--device", "cpu"]
        return main([str(a) for a in (*base, *args)])

    assert cli("--dose", "0.25", "--dose", "0.1") == 0
    files = sorted(out.glob("*.nii.gz"))
    assert [f.name for f in files] == ["tiny-00_a_dose010.nii.gz", "tiny-00_a_dose025.nii.gz"]
    assert load_volume(files[0]).shape == load_case(case_folder).native.shape
    assert cli("--dose", "0.2", "--format", "dicom") == 0
    assert len(list((out / "tiny-00_a_dose020").iterdir())) == 6
    assert cli("--dose", "1.2") == 2


# ======================================================================================== virtual contrast
def _vc_checkpoint(folder: Path, name: str, config: dict, mode: str = "2d", **card: object) -> Path:
    import torch

    from vce_core.models import build_model

    torch.manual_seed(0)
    model = build_model(name, **config)
    model(
        torch.randn(
            2,
            model.config["in_modalities"] * model.config["in_slices"],
            *([16] * config.get("spatial_dims", 2)),
        )
    )
    values = {
        "data_mode": mode,
        "context": 1 if mode == "2.5d" else 0,
        "patch_size": 8,
        "inputs": ["native", "t2"],
    }
    return write_contrast_model(folder, name, model, **{**values, **card})


HRFCN = {"spatial_dims": 2, "widths": [4, 8, 8], "stem_channels": 4, "res_blocks": 1, "in_modalities": 2}


@pytest.fixture(scope="module")
def vc_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import write_contrast_cases

    return write_contrast_cases(tmp_path_factory.mktemp("vc_synth"), 1, shape=(21, 19, 10))[0]


@pytest.mark.parametrize(
    ("name", "config", "mode"),
    [
        ("hrfcn", HRFCN, "2d"),
        (
            "dyefreenet",
            {"width": 2, "levels": 2, "in_modalities": 2, "in_slices": 3, "out_channels": 3},
            "2.5d",
        ),
        ("hrfcn", {**HRFCN, "spatial_dims": 3}, "3d"),  # sliding 16³ windows, 50 % overlap
    ],
)
def test_virtual_contrast_volume_and_slices(
    name: str, config: dict, mode: str, vc_case: Path, tmp_path: Path
) -> None:
    folder = _vc_checkpoint(tmp_path / "m", name, config, mode, patch_size=16)
    synth = Synthesizer.from_checkpoint(folder, device="cpu")
    assert synth.task == "virtual_contrast" and synth.inputs == ["native", "t2"]
    case = load_case(vc_case)
    prepared = synth.prepare(case.native, t2=case.extra["t2"])
    calls: list[tuple[int, int]] = []
    synth.batch_size = 4
    volume = synth.synthesize_prepared(prepared, progress=lambda d, t: calls.append((d, t)))
    assert volume.shape == case.native.data.shape and volume.dtype == np.float32 and np.isfinite(volume).all()
    assert calls and calls[-1][0] == calls[-1][1]
    for plane, index, take in (("axial", 4, lambda v: v[:, :, 4]), ("coronal", 7, lambda v: v[:, 7, :])):
        np.testing.assert_allclose(
            synth.synthesize_slice(prepared, plane=plane, index=index), take(volume), rtol=1e-4, atol=1e-2
        )
    np.testing.assert_allclose(
        synth.synthesize_slice(prepared, 0.0, plane="sagittal", index=2), volume[2], rtol=1e-4, atol=1e-2
    )
    np.testing.assert_allclose(
        synth.synthesize_contrast(vc_case), volume, rtol=1e-4, atol=1e-2
    )  # from the case folder
    with pytest.raises(VCEInputError, match="dose 0.3 does not apply"):
        synth.synthesize_prepared(prepared, 0.3)
    with pytest.raises(VCEInputError, match="out of range"):
        synth.synthesize_slice(prepared, plane="axial", index=10)


def test_virtual_contrast_inputs_are_checked(vc_case: Path, tmp_path: Path, volumes: tuple) -> None:
    synth = Synthesizer.from_checkpoint(_vc_checkpoint(tmp_path / "m", "hrfcn", HRFCN), device="cpu")
    case = load_case(vc_case)
    with pytest.raises(VCEInputError, match="t2 of m are missing"):
        synth.prepare_inputs({"native": case.native})
    with pytest.raises(VCEInputError, match="shape"):
        synth.prepare_inputs({"native": case.native, "t2": case.extra["t2"].data[:, :, :5]})
    with pytest.raises(VCEInputError, match="NaN"):
        synth.prepare_inputs(
            {"native": case.native, "t2": np.full(case.native.data.shape, np.nan, np.float32)}
        )
    native, sd, _ = volumes
    low_dose = Synthesizer.from_checkpoint(write_checkpoint(tmp_path / "ld", SMALL), device="cpu")
    with pytest.raises(VCEInputError, match="low-dose model"):
        low_dose.prepare_inputs({"native": native})
    with pytest.raises(VCEInputError, match="standard-dose"):
        low_dose.prepare(native)
    with pytest.raises(VCEInputError, match="prepared"):
        synth.synthesize_prepared(low_dose.prepare(native, sd))


def test_virtual_contrast_cli_and_listing(vc_case: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _vc_checkpoint(models / "vc", "hrfcn", HRFCN)
    write_checkpoint(models / "ld", SMALL)
    assert [p.name for p in list_checkpoints(models)] == ["ld"]  # the dose explorer's generators
    assert [p.name for p in list_checkpoints(models, task="virtual_contrast")] == ["vc"]
    assert sorted(p.name for p in list_checkpoints(models, task=None)) == ["ld", "vc"]
    assert main(["--model", str(models / "vc"), "--case", str(vc_case), "--out", str(tmp_path / "out")]) == 0
    written = load_volume(tmp_path / "out" / f"{vc_case.name}_vc_virtual_contrast.nii.gz")
    assert written.data.shape == load_case(vc_case).native.data.shape and written.meta.get("synthetic", True)
    assert (
        main(
            [
                "--model",
                str(models / "vc"),
                "--case",
                str(vc_case),
                "--out",
                str(tmp_path / "o"),
                "--dose",
                "0.5",
            ]
        )
        == 2
    )
    assert main(["--model", str(models / "ld"), "--case", str(vc_case), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("method", ["percentile", "zscore", "sigmoid", "tanh"])
def test_virtual_contrast_output_is_mapped_back_exactly(method: str, vc_case: Path) -> None:
    """A model that returns its (normalised) native channel gives back the native image in its own units,
    for every normalisation (seed 002's sigmoid and tanh included): the inverse is exact."""
    import torch

    from vce_core.checkpoint import ModelCard

    class NativeChannel(torch.nn.Module):
        size_multiple = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1]

    card = ModelCard(
        name="identity",
        model="hrfcn",
        config={"spatial_dims": 2},
        data_mode="2d",
        context=0,
        patch_size=8,
        normalization={"method": method},
        task="virtual_contrast",
        inputs=["native", "t2"],
        target="standard_dose",
    )
    synth = Synthesizer(NativeChannel(), card, torch.device("cpu"))
    case = load_case(vc_case)
    prepared = synth.prepare_case(case)
    out = synth.synthesize_prepared(prepared)
    native = case.native.data
    brain = prepared.brain
    rtol = 1e-3 if method in ("sigmoid", "tanh") else 1e-5
    np.testing.assert_allclose(out[brain], native[brain], rtol=rtol, atol=1e-2)


def test_physics_base_needs_the_sequence_and_starts_as_the_physics_baseline(
    volumes: tuple, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An untrained ``base="physics"`` generator synthesizes the physics baseline of
    :mod:`vce_core.baselines` (numpy) on the whole volume, in the input's units, with the case's sequence."""
    from support import phantom_case
    from vce_core.baselines import case_tr_flip, physics_baseline

    synth = Synthesizer.from_checkpoint(
        write_checkpoint(tmp_path / "phys", {**SMALL, "base": "physics"}), device="cpu"
    )
    assert synth.needs_sequence
    native, sd, _ = volumes  # the tiny cases record no sequence
    with pytest.raises(VCEInputError, match="TR.*flip angle"):
        synth.synthesize(native, sd, 0.2, 3.0, seed=0)
    with pytest.raises(VCEInputError, match="flip angle"):
        synth.prepare(native, sd, sequence=(6.8, 200.0))
    with pytest.raises(VCEInputError, match="not readable"):
        synth.prepare(native, sd, sequence={"tr_ms": 6.8})
    case = load_case(phantom_case(tmp_path_factory))
    tr_flip = case_tr_flip(case)
    assert tr_flip == (case.meta["sequence"]["tr_ms"], case.meta["sequence"]["flip_deg"])
    prepared = synth.prepare_case(case)
    assert prepared.sequence == tr_flip
    na, sdose = case.native.data.astype(np.float32), case.standard_dose.data.astype(np.float32)
    for dose in (0.1, 0.33):
        out = synth.synthesize_prepared(prepared, dose, case.field_strength, seed=0)
        ref = physics_baseline(
            na,
            sdose,
            dose,
            dict(case.meta["sequence"]),
            field_strength=case.field_strength,
            min_signal=0.05 * prepared.params["high"],  # the model's threshold: 5 % of the normalised top
        )
        span = float(np.percentile(na, 99.5))
        np.testing.assert_allclose(out, ref, atol=2e-4 * span)
        assert np.abs(ref - (na + dose * (sdose - na))).max() > 0.01 * span  # not the linear baseline
    # the sequence is kept, and unused, by generators without the physics base
    plain = Synthesizer.from_checkpoint(write_checkpoint(tmp_path / "plain", SMALL), device="cpu")
    assert not plain.needs_sequence and plain.prepare_case(case).sequence == tr_flip
