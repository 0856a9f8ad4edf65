"""DyeFreeNet (seed 003): encoder, cascade, intensity pretraining, perceptual loss, phases, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support import write_random_vgg
from vce_core.errors import VCEInputError
from vce_core.models import build_model
from vce_core.models.dyefreenet import INTENSITY_LEVELS, feature_loss, intensity_batch

SMALL = {"width": 4, "levels": 3, "classifier_features": [8, 6]}
CRITIC = {"base_channels": 4, "layers": 4, "strided": 2}
PHASES = [
    {"fraction": 0.34, "phase": "pretrain"},
    {"fraction": 0.33, "phase": "primary"},
    {"fraction": 0.33, "phase": "refine"},
]


def _config(**extra: object) -> dict:
    return {
        "inputs": ["native"],
        "mode": "2.5d",
        "context": 1,
        "target_context": True,
        "generator": "dyefreenet",
        "generator_kwargs": SMALL,
        "critic": "patch_discriminator",
        "critic_kwargs": CRITIC,
        "crop": 32,
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "stages": PHASES,
        "iterations": 3,
        **extra,
    }


def test_encoder_blocks_see_every_previous_block() -> None:
    torch.manual_seed(0)
    net = build_model("dyefreenet", **SMALL).eval().primary
    x = torch.randn(1, 3, 16, 16)
    h = net.encode(x)
    assert [t.shape[1:] for t in h] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert net.encoder[2][0][0].in_channels == 4 + 8  # block 2 takes blocks 0 and 1
    with torch.no_grad():
        torch.testing.assert_close(
            h[2], net.encoder[2](torch.cat([F.avg_pool2d(h[0], 4), F.avg_pool2d(h[1], 2)], 1))
        )
        # the last decoder features are concatenated with the input, then two convolutions
        assert net.out[0][0].in_channels == 4 + 3 and isinstance(net.out[1], torch.nn.Conv2d)


def test_cascade_is_down_primary_refine_up() -> None:
    torch.manual_seed(0)
    model = build_model("dyefreenet", **SMALL).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        half = F.avg_pool2d(x, 2)
        initial = model.primary(half)
        torch.testing.assert_close(model(x, part="primary"), initial)
        expected = F.interpolate(model.refine(initial), scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)
        logits = model.classifier(model.primary.encode(half)[-1].mean(dim=(2, 3)))
        torch.testing.assert_close(model(x, part="classify"), logits)
    assert sum(isinstance(m, torch.nn.Linear) for m in model.classifier) == 3  # three FC layers
    assert model(x).shape == (2, 3, 16, 16) and logits.shape == (2, 4)
    with pytest.raises(VCEInputError, match="part"):
        model(x, part="nope")
    copied = model.init_refine_from_primary()
    assert copied == len(model.primary.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.refine(initial), model.primary(initial))


def test_3d_shapes() -> None:
    model = build_model("dyefreenet", spatial_dims=3, in_slices=1, out_channels=1, **SMALL)
    assert model(torch.randn(1, 1, 8, 8, 16)).shape == (1, 1, 8, 8, 16)
    assert model(torch.randn(1, 1, 8, 8, 16), part="primary").shape == (1, 1, 4, 4, 8)


def test_intensity_batch_and_feature_loss() -> None:
    x = torch.arange(6.0).reshape(2, 1, 3)
    scaled, labels = intensity_batch(x)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k, c in enumerate(INTENSITY_LEVELS):
        torch.testing.assert_close(scaled[2 * k : 2 * k + 2], c * x)
    assert INTENSITY_LEVELS == (0.5, 1.0, 1.5, 2.0)

    def features(t: torch.Tensor) -> list[torch.Tensor]:
        return [2 * t, t[:, :, :2]]

    a, b = torch.rand(2, 1, 3), torch.rand(2, 1, 3)
    expected = ((2 * a - 2 * b) ** 2).mean() + ((a[:, :, :2] - b[:, :, :2]) ** 2).mean()
    torch.testing.assert_close(feature_loss(features, a, b), expected)


def test_gradient_reaches_every_branch(grads_reach_every_parameter) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("dyefreenet", **SMALL)
    x = torch.randn(2, 3, 16, 16)
    labels = torch.tensor([0, 3])
    grads_reach_every_parameter(
        model, lambda m: (m(x) - 1).pow(2).mean() + F.cross_entropy(m(x, part="classify"), labels)
    )


def test_phases_pretrain_primary_refine(tiny_trainer) -> None:  # noqa: ANN001
    trainer = tiny_trainer(_config())
    gen = trainer.generator
    stats = trainer.iteration()
    assert set(stats) == {"pretrain_ce", "pretrain_accuracy"} and trainer.stage.phase == "primary"
    trainer.iteration()  # primary starts: the perceptual network is the pretrained encoder, frozen
    perceptual = trainer.nets["perceptual"]
    assert not any(p.requires_grad for p in perceptual.parameters())
    assert trainer.stage.phase == "refine"
    primary_before = {k: v.clone() for k, v in gen.primary.state_dict().items()}
    trainer.iteration()  # refine starts from the primary's weights; the primary stays frozen
    for k, v in gen.primary.state_dict().items():
        assert torch.equal(v, primary_before[k]), k
    assert not any(p.requires_grad for p in gen.primary.parameters()) and not gen.primary.training
    assert not torch.equal(gen.refine.out[1].weight, gen.primary.out[1].weight)  # refined after the copy


def test_one_step_lowers_each_phases_loss(tiny_trainer, step_lowers_loss) -> None:  # noqa: ANN001
    pretrain = tiny_trainer(_config(stages=[{"fraction": 1.0, "phase": "pretrain"}]))
    step_lowers_loss(pretrain, lambda t, g, b: _pretrain_loss(g, b))
    primary = tiny_trainer(_config(stages=[{"fraction": 1.0, "phase": "primary"}]))
    step_lowers_loss(
        primary, lambda t, g, b: t.objective.generator_loss(b, g(b["inputs"], part="primary"), False)[0]
    )


def _pretrain_loss(generator: torch.nn.Module, batch: dict) -> torch.Tensor:
    scaled, labels = intensity_batch(batch["inputs"])
    return F.cross_entropy(generator(scaled, part="classify"), labels)


def test_vgg_perceptual_option_and_errors(tiny_trainer, tmp_path) -> None:  # noqa: ANN001
    vgg = write_random_vgg(tmp_path / "vgg16.safetensors")
    trainer = tiny_trainer(
        _config(
            objective_kwargs={"perceptual": "vgg"},
            perceptual_weights=str(vgg),
            stages=[{"fraction": 1.0, "phase": "primary"}],
        )
    )
    assert "perceptual" not in trainer.nets and trainer.iteration()["perceptual"] > 0
    with pytest.raises(VCEInputError, match="does not exist"):
        tiny_trainer(
            _config(objective_kwargs={"perceptual": "vgg"}, perceptual_weights=str(tmp_path / "no.pth"))
        )
    with pytest.raises(VCEInputError, match="phase"):
        tiny_trainer(_config(stages=[{"fraction": 1.0, "phase": "warmup"}]))
    with pytest.raises(VCEInputError, match="backbone perceptual loss"):
        tiny_trainer(_config(inputs=["native", "t2"]))


def test_save_load_round_trip(round_trip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("dyefreenet", **SMALL)
    model(torch.randn(2, 3, 16, 16))
    round_trip("dyefreenet", model, torch.randn(1, 3, 16, 16), data_mode="2.5d", context=1)


def test_validation_pads_to_the_models_size_multiple(tiny_trainer, tmp_path) -> None:  # noqa: ANN001
    """Validation slices are padded to multiples of 8; DyeFreeNet needs 2^levels (here 16)."""
    from support import write_contrast_cases
    from vce_core.train import validate

    small = write_contrast_cases(tmp_path / "val", 1, shape=(20, 20, 12))  # 24-wide validation slices
    trainer = tiny_trainer(_config(generator_kwargs={**SMALL, "levels": 4}, val_data=[str(small[0])]))
    assert trainer.generator.size_multiple == 16 and trainer.val_set[0]["inputs"].shape[-1] % 16
    metrics = validate(trainer.ema, trainer.val_set, trainer.cfg, trainer.device)
    assert np.isfinite(metrics["mae"]) and metrics["n_images"] == 2
