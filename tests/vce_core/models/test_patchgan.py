"""The conditional patch discriminator shared by seeds 002–004."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vce_core.errors import VCEInputError
from vce_core.models import build_model

GEOMETRY = {
    "spatial_dims": 2,
    "in_modalities": 1,
    "in_slices": 1,
    "out_channels": 1,
}  # a 2-D one-input generator's


def test_amcgan_layout_six_convolutions_first_five_with_in_and_leaky_relu() -> None:
    critic = build_model("patch_discriminator", **{**GEOMETRY, "in_modalities": 3})  # defaults: seed 004's
    convs = [m for m in critic.body if isinstance(m, nn.Conv2d)]
    norms = [m for m in critic.body if isinstance(m, nn.InstanceNorm2d)]
    acts = [m for m in critic.body if isinstance(m, nn.LeakyReLU)]
    assert len(convs) == 6 and len(norms) == 5 and len(acts) == 5
    assert convs[0].in_channels == 1 + 3 and convs[-1].out_channels == 1
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 1, 1]
    assert all(a.negative_slope == 0.2 for a in acts)


@pytest.mark.parametrize(("spatial_dims", "spatial"), [(2, (64, 48)), (3, (16, 16, 16))])
def test_patch_scores_and_conditioning(spatial_dims: int, spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    geometry = {**GEOMETRY, "spatial_dims": spatial_dims, "in_modalities": 2}
    critic = build_model("patch_discriminator", **geometry, base_channels=4, layers=4, strided=2)
    image, inputs = torch.randn(2, 1, *spatial), torch.randn(2, 2, *spatial)
    scores = critic(image, inputs)
    assert scores.shape[:2] == (2, 1) and scores.ndim == spatial_dims + 2
    assert not torch.allclose(scores, critic(image, torch.randn(2, 2, *spatial)))  # D(y, x) depends on x
    with pytest.raises(VCEInputError, match="inputs has shape"):
        critic(image, torch.randn(2, 3, *spatial))


def test_pix2pix_layout_without_first_norm() -> None:
    critic = build_model(
        "patch_discriminator", **GEOMETRY, layers=5, strided=3, first_norm=False, norm="instance"
    )
    body = list(critic.body)
    assert isinstance(body[1], nn.Identity) and isinstance(body[4], nn.InstanceNorm2d)
    assert [m.out_channels for m in body if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 1]
