"""HRFCN (seed 001): shapes, the paper's feature equations, ResBlock, local loss, training, missing input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support import write_contrast_model
from vce_core.errors import VCEInputError
from vce_core.models import build_model
from vce_core.models.blocks import ResBlock
from vce_core.models.hrfcn import HRFCN, enhancement_mask, slice_ssim_loss

SMALL = {"widths": [4, 8, 8], "stem_channels": 4, "res_blocks": 1}


@pytest.mark.parametrize(
    ("spatial_dims", "in_slices", "spatial"), [(2, 1, (16, 20)), (2, 3, (16, 16)), (3, 1, (8, 8, 12))]
)
def test_shapes_in_2d_25d_and_3d(spatial_dims: int, in_slices: int, spatial: tuple[int, ...]) -> None:
    model = build_model("hrfcn", spatial_dims=spatial_dims, in_slices=in_slices, **SMALL)
    x = torch.randn(2, 3 * in_slices, *spatial)
    assert model(x).shape == (2, 1, *spatial)
    feats = model.features(x)
    w = SMALL["widths"]
    for name, width, factor in [
        ("F11", 3 * 4, 1),
        ("F12", w[1], 2),
        ("F21", w[0], 1),
        ("F22", w[1], 2),
        ("F23", w[2], 4),
        ("F31", w[0], 1),
        ("F32", w[1], 2),
        ("F33", w[2], 4),
        ("F41", w[0], 1),
        ("F42", w[1], 2),
        ("F43", w[2], 4),
        ("F5", 3 * w[0], 1),
    ]:
        assert feats[name].shape == (2, width, *(s // factor for s in spatial)), name
    with pytest.raises(VCEInputError, match="multiple of 4"):
        model(torch.randn(2, 3 * in_slices, *(s + 2 for s in spatial)))
    with pytest.raises(VCEInputError, match="shape"):
        model(torch.randn(2, 2 * in_slices, *spatial))


def test_defaults_are_the_papers() -> None:
    model = HRFCN()
    assert model.config["widths"] == [64, 128, 256] and model.config["res_blocks"] == 4
    assert model.config["spatial_dims"] == 3 and model.config["in_modalities"] == 3
    assert len(model.stems) == 3 and len(model.phi21) == 4  # one stem per modality, φ = 4 ResBlocks
    convs = [
        m for m in model.phi21.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3)
    ]
    assert len(convs) == 8  # four ResBlocks × two Conv-BN-ReLU
    assert isinstance(model.phi21[0].body[0][1], torch.nn.BatchNorm3d)  # Conv-BN-ReLU
    assert isinstance(model.phi21[0].body[0][2], torch.nn.ReLU)


def test_features_follow_the_papers_equations() -> None:
    torch.manual_seed(0)
    model = build_model("hrfcn", spatial_dims=2, **SMALL).eval()
    x = torch.randn(1, 3, 16, 16)
    f = model.features(x)
    size = lambda t: tuple(t.shape[2:])  # noqa: E731
    with torch.no_grad():
        t1, t2, adc = x.split(1, dim=1)
        torch.testing.assert_close(
            f["F11"], torch.cat([model.stems[0](t1), model.stems[1](t2), model.stems[2](adc)], 1)
        )
        torch.testing.assert_close(f["F21"], model.phi21(f["F11"]))
        torch.testing.assert_close(f["F22"], model.phi22(model.d12(f["F11"], ())))
        f31 = model.phi3[0](torch.cat([f["F21"], model.f3["u21"](f["F22"], size(f["F21"]))], 1))
        torch.testing.assert_close(f["F31"], f31)
        torch.testing.assert_close(
            f["F32"], model.phi3[1](torch.cat([f["F22"], model.f3["d12"](f["F21"], ())], 1))
        )
        torch.testing.assert_close(
            f["F33"], model.phi3[2](torch.cat([f["F23"], model.f3["d13"](f["F21"], ())], 1))
        )
        # F42 = φ(D2(F31) ⊕ F32 ⊕ U2(F33))
        f42 = model.phi4[1](
            torch.cat([model.f4["01"](f["F31"], ()), f["F32"], model.f4["21"](f["F33"], size(f["F32"]))], 1)
        )
        torch.testing.assert_close(f["F42"], f42)
        # the U operator is a 1x1 conv + BN followed by nearest upsampling (pixels repeated)
        up = model.f4["20"](f["F33"], size(f["F31"]))
        small = model.f4["20"].op(f["F33"])
        torch.testing.assert_close(up, small.repeat_interleave(4, 2).repeat_interleave(4, 3))
        # D4 is two stride-2 convolutions: quarter size
        assert model.f4["02"](f["F31"], ()).shape[2:] == (4, 4) and len(model.f4["02"].op) == 2
        torch.testing.assert_close(model(x), model.head(model.final(f["F5"])))


def test_resblock_is_two_conv_bn_relu_plus_skip() -> None:
    torch.manual_seed(0)
    block = ResBlock(2, 3, 5).eval()
    with torch.no_grad():
        for bn in (block.body[0][1], block.body[2][1], block.skip[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 8, 8)

    def cbr(layer: torch.nn.Module, h: torch.Tensor, act: bool = True) -> torch.Tensor:
        conv, bn = layer[0], layer[1]
        y = F.conv2d(h, conv.weight, conv.bias, padding=conv.padding)
        y = (y - bn.running_mean[None, :, None, None]) / torch.sqrt(
            bn.running_var[None, :, None, None] + bn.eps
        )
        y = y * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
        return torch.relu(y) if act else y

    expected = cbr(block.skip, x, act=False) + cbr(block.body[2], cbr(block.body[0], x))
    torch.testing.assert_close(block(x), expected)


def test_local_mask_and_slice_ssim() -> None:
    native = torch.zeros(1, 1, 4, 4)
    target = native.clone()
    target[0, 0, 1, 2] = 0.5
    target[0, 0, 3, 3] = 0.1  # exactly δ: not above it
    mask = enhancement_mask(target, native, 0.1)
    assert mask.sum() == 1 and mask[0, 0, 1, 2]
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 16, 16, 3, generator=gen), torch.rand(2, 1, 16, 16, 3, generator=gen)
    per_slice = [slice_ssim_loss(a[..., k], b[..., k], 1.0).item() for k in range(3)]
    assert slice_ssim_loss(a, b, 1.0).item() == pytest.approx(np.mean(per_slice), rel=1e-5)


def test_objective_is_the_weighted_sum_and_follows_the_stages(tiny_trainer) -> None:  # noqa: ANN001
    from vce_core.losses import l1_loss, local_loss

    stages = [
        {"fraction": 0.5, "lr_g": 1e-3, "loss_weights": {"mae": 1, "ssim": 1, "local": 1}},
        {"fraction": 0.5, "lr_g": 1e-4, "loss_weights": {"mae": 0.1, "ssim": 0.1, "local": 10}},
    ]
    trainer = tiny_trainer(
        {"inputs": ["native", "t2", "adc"], "generator": "hrfcn", "generator_kwargs": SMALL, "stages": stages}
    )
    batch = trainer.next_batch()
    pred = trainer.generator(batch["inputs"])
    mask = (batch["target"] - batch["native"]) > 0.1
    terms = (
        l1_loss(pred, batch["target"]),
        slice_ssim_loss(pred, batch["target"], 1.0),
        local_loss(pred, batch["target"], mask),
    )
    for step, weights in ((0, (1, 1, 1)), (1, (0.1, 0.1, 10))):
        trainer.step = step
        loss, _ = trainer.objective.losses(batch, pred)
        assert loss.item() == pytest.approx(
            sum(w * t.item() for w, t in zip(weights, terms, strict=True)), rel=1e-6
        )
    trainer.step = 0
    trainer.iteration()
    assert trainer.opts["g"].param_groups[0]["lr"] == 1e-3
    trainer.iteration()
    assert trainer.opts["g"].param_groups[0]["lr"] == 1e-4 and trainer.stage_index == 1


def test_gradient_reaches_every_branch(grads_reach_every_parameter) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("hrfcn", spatial_dims=2, **SMALL)
    x = torch.randn(2, 3, 16, 16)
    grads_reach_every_parameter(model, lambda m: (m(x) - 1).pow(2).mean())


def test_one_step_lowers_the_loss(tiny_trainer, step_lowers_loss) -> None:  # noqa: ANN001
    trainer = tiny_trainer(
        {"inputs": ["native", "t2", "adc"], "generator": "hrfcn", "generator_kwargs": SMALL, "lr_g": 1e-4}
    )
    step_lowers_loss(trainer, lambda t, g, b: t.objective.losses(b, g(b["inputs"]))[0])


def test_save_load_round_trip(round_trip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("hrfcn", spatial_dims=3, **SMALL)
    model(torch.randn(2, 3, 8, 8, 8))  # move the BN running statistics off their defaults
    round_trip("hrfcn", model, torch.randn(1, 3, 8, 8, 8))


def test_missing_modality_is_a_zero_input(contrast_cases, tmp_path) -> None:  # noqa: ANN001
    """Section IV-E: an unavailable modality is a zero matrix (optional inputs); a required one is refused."""
    from vce_core.io import load_case
    from vce_core.synthesis import Synthesizer

    torch.manual_seed(0)
    model = build_model("hrfcn", spatial_dims=2, **SMALL).eval()
    folder = write_contrast_model(
        tmp_path / "m",
        "hrfcn",
        model,
        name="hrfcn-test",
        inputs=["native", "t2", "adc"],
        optional_inputs=["t2", "adc"],
    )
    synth = Synthesizer.from_checkpoint(folder, device="cpu")
    case = load_case(contrast_cases[0])
    full = synth.prepare_inputs({"native": case.native, "t2": case.extra["t2"], "adc": case.extra["adc"]})
    no_t2 = synth.prepare_inputs({"native": case.native, "adc": case.extra["adc"]})
    assert full.missing == () and no_t2.missing == ("t2",) and no_t2.present == (True, False, True)
    assert not no_t2.inputs[1].any() and no_t2.backgrounds[1] == 0.0
    np.testing.assert_array_equal(no_t2.inputs[2], full.inputs[2])

    # the synthesized slice is the model applied to a zero T2 channel
    k = 6
    out = synth.synthesize_slice(no_t2, plane="axial", index=k)
    x = np.stack([no_t2.inputs[m][:, :, k] for m in range(3)])[None]
    with torch.no_grad():
        ref = model(torch.from_numpy(np.ascontiguousarray(x)))[0, 0].numpy()
    from vce_core.preprocess import denormalize

    np.testing.assert_allclose(out, denormalize(ref, no_t2.params["native"]), rtol=1e-5, atol=1e-3)
    assert not np.allclose(out, synth.synthesize_slice(full, plane="axial", index=k))

    with pytest.raises(VCEInputError, match="native"):
        synth.prepare_inputs({"t2": case.extra["t2"]})
    required = synth.card.with_changes(optional_inputs=["adc"])
    strict = Synthesizer(model, required, torch.device("cpu"))
    with pytest.raises(VCEInputError, match="t2") as err:
        strict.prepare_inputs({"native": case.native, "adc": case.extra["adc"]})
    assert "optional (a zero image when absent): adc" in str(err.value)
