"""The T1-map seed ensemble: the mean T1 map of its members, the texture of the first, and its checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support import write_model
from vce_core.errors import VCEInputError
from vce_core.models import build_model
from vce_core.models.ld_cgan import T1_LOG_RANGE, LowDoseGenerator, sequence_tensor
from vce_core.models.ld_cgan_ensemble import T1MapEnsemble, assemble, main

KW = {
    "spatial_dims": 2,
    "base_channels": 4,
    "num_res_blocks": 1,
    "num_scales": 2,
    "output_heads": 2,
    "base": "physics",
    "learn_t1": True,
    "texture_sigma": 2.0,
}
SEQ = {"name": "a", "tr_ms": 7.3, "te_ms": 3.3, "flip_deg": 8.0}


def _images() -> tuple[np.ndarray, np.ndarray, float, tuple[torch.Tensor, ...]]:
    from vce_core.baselines import spgr_relative_signal

    rng = np.random.default_rng(1)
    t1 = rng.uniform(0.8, 2.5, (1, 16, 16))
    raw_na = 1000 * spgr_relative_signal(1 / t1, SEQ)
    raw_sd = 1000 * spgr_relative_signal(1 / t1 + rng.uniform(0, 3, t1.shape), SEQ)
    scale = float(raw_na.max())
    native = torch.tensor(raw_na / scale, dtype=torch.float32)[None]
    sd = torch.tensor(raw_sd / scale, dtype=torch.float32)[None]
    noise = torch.randn((1, 1, 16, 16), generator=torch.Generator().manual_seed(5))
    args = (native, sd, torch.tensor([0.2]), torch.tensor([1.5]), noise)
    return raw_na, raw_sd, scale, args


def _member(seed: int, t1_bias: float, texture: bool) -> LowDoseGenerator:
    torch.manual_seed(seed)
    model = build_model("ld_cgan_generator", **KW)
    with torch.no_grad():
        model.t1_head[-1].bias.fill_(t1_bias)  # a constant learned T1 log factor T1_LOG_RANGE·tanh(bias)
        if texture:  # the zero-initialised heads would add nothing
            for head in model.heads:
                head[-1].weight.normal_(0.0, 0.3)
    return model


def _ensemble(*members: LowDoseGenerator) -> T1MapEnsemble:
    ensemble = T1MapEnsemble(members=len(members), **KW)
    state = dict(members[0].state_dict())
    state.update({f"others.{i}.{k}": v for i, m in enumerate(members[1:]) for k, v in m.state_dict().items()})
    ensemble.load_state_dict(state, strict=True)
    return ensemble.eval()


def test_the_base_uses_the_mean_of_the_members_t1_log_maps() -> None:
    """Heads at zero: the output is the numpy physics baseline with the default T1 times exp(mean of the
    members' log factors) — not the mean of the members' outputs, not the first member's map."""
    from vce_core.baselines import DEFAULT_T1_S, physics_baseline

    raw_na, raw_sd, scale, args = _images()
    biases = (0.9, -0.4, 0.2)
    ensemble = _ensemble(*(_member(i, b, texture=False) for i, b in enumerate(biases)))
    with torch.no_grad():
        out = ensemble(*args, sequence=sequence_tensor(0.0, 7.3, 8.0)[None])[0][0, 0]
    factor = float(np.exp(np.mean([T1_LOG_RANGE * np.tanh(b) for b in biases])))
    ref = physics_baseline(
        raw_na, raw_sd, 0.2, SEQ, t1_native_s=DEFAULT_T1_S[1.5] * factor, min_signal=0.05 * scale
    )
    expected = torch.tensor((ref - raw_na)[0] / scale, dtype=torch.float32)
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-3)
    first_only = physics_baseline(
        raw_na,
        raw_sd,
        0.2,
        SEQ,
        t1_native_s=DEFAULT_T1_S[1.5] * float(np.exp(T1_LOG_RANGE * np.tanh(biases[0]))),
        min_signal=0.05 * scale,
    )
    assert float(np.abs((first_only - ref) / scale).max()) > 1e-3  # the test tells the two apart


def test_the_texture_is_the_first_members_and_one_member_twice_is_that_member() -> None:
    _, _, _, args = _images()
    seq = sequence_tensor(0.0, 7.3, 8.0)[None]
    a, b = _member(0, 0.5, texture=True), _member(1, -0.3, texture=True)
    with torch.no_grad():
        alone = a(*args, sequence=seq)
        twice = _ensemble(a, a)(*args, sequence=seq)
        for x, y in zip(alone, twice, strict=True):
            torch.testing.assert_close(x, y)
        ab, ba = _ensemble(a, b), _ensemble(b, a)
        full_ab = ab(*args, sequence=seq)[0]
        ab.texture_scale = 0.0  # the heads-off ablation reaches the first member
        ba.texture_scale = 0.0
        base_ab, base_ba = ab(*args, sequence=seq)[0], ba(*args, sequence=seq)[0]
        a.texture_scale = 0.0
        base_a = a(*args, sequence=seq)[0]
    torch.testing.assert_close(base_ab, base_ba)  # the mean map does not depend on the order
    assert (base_ab - base_a).abs().max() > 1e-4  # and is not the first member's map
    torch.testing.assert_close(full_ab - base_ab, alone[0] - base_a)  # the texture is the first member's
    assert (full_ab - base_ab).std() > 1e-3


def test_members_must_be_the_physics_recipe() -> None:
    with pytest.raises(VCEInputError, match="at least 2"):
        T1MapEnsemble(members=1, **KW)
    with pytest.raises(VCEInputError, match="learn_t1"):
        T1MapEnsemble(members=2, **{**KW, "learn_t1": False})
    with pytest.raises(VCEInputError, match="texture_sigma"):
        T1MapEnsemble(members=2, **{**KW, "texture_sigma": 0.0})


def test_assembled_checkpoint_loads_and_records_its_members(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from vce_core.checkpoint import read_card
    from vce_core.synthesis import Synthesizer

    a, b = _member(0, 0.5, texture=True), _member(1, -0.3, texture=True)
    folders = [
        write_model(tmp_path / name, "ld_cgan_generator", m, held_out={"lesion_error": 0.01}, default=True)
        for name, m in (("a", a), ("b", b))
    ]
    out = assemble(folders, tmp_path / "ens", name="ens", display_name="Ensemble of a and b")
    card = read_card(out)
    assert card.model == "ld_cgan_t1_ensemble" and card.config == {"members": 2, **a.config}
    assert card.display_name == "Ensemble of a and b" and card.held_out is None and not card.default
    recorded = card.training["ensemble_of"]
    assert [m["folder"] for m in recorded] == [str(f) for f in folders]
    assert (
        recorded[1]["weights_sha256"] == hashlib.sha256((folders[1] / card.weights).read_bytes()).hexdigest()
    )
    synth = Synthesizer.from_checkpoint(out, device="cpu")
    assert isinstance(synth.model, T1MapEnsemble) and synth.needs_sequence
    _, _, _, args = _images()
    seq = sequence_tensor(0.0, 7.3, 8.0)[None]
    with torch.no_grad():
        torch.testing.assert_close(
            synth.model(*args, sequence=seq)[0], _ensemble(a, b)(*args, sequence=seq)[0]
        )
    # members of another architecture, or of another model, are refused before anything is written
    other = write_model(
        tmp_path / "c", "ld_cgan_generator", build_model("ld_cgan_generator", **{**KW, "base_channels": 8})
    )
    with pytest.raises(VCEInputError, match="config differs"):
        assemble([folders[0], other], tmp_path / "bad", name="bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(VCEInputError, match="at least 2"):
        assemble(folders[:1], tmp_path / "bad", name="bad")
    before = (folders[1] / card.weights).read_bytes()
    for taken in (folders[1], out):  # a member's folder, or an earlier ensemble's, is not overwritten
        with pytest.raises(VCEInputError, match="not empty"):
            assemble(folders, taken, name="again")
    assert (folders[1] / card.weights).read_bytes() == before
    assert (
        main(["--members", str(folders[0]), str(other), "--out", str(tmp_path / "bad"), "--name", "x"]) == 2
    )
    assert "config differs" in capsys.readouterr().err
    assert json.loads((out / "card.json").read_text())["model"] == "ld_cgan_t1_ensemble"
