"""The checkpoint format: write/read round trip, validation errors, atomic updates, listing, bundled cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support import SMALL, write_checkpoint
from vce_core.checkpoint import (
    CARD_VERSION,
    ModelCard,
    atomic_write,
    list_checkpoints,
    read_card,
    read_weights,
    update_card,
    write_card,
)
from vce_core.checkpoint import write_checkpoint as write_folder
from vce_core.errors import VCEInputError, VCEModelError
from vce_core.settings import BUNDLED_MODELS


def small_card(name: str = "m", **changes: object) -> ModelCard:
    return ModelCard(
        name=name,
        model="ld_cgan_generator",
        config={"spatial_dims": 2, "base_channels": 4},
        data_mode="2d",
        context=0,
        patch_size=16,
        normalization={"method": "percentile"},
    ).with_changes(**changes)


def raw(folder: Path) -> dict:
    return json.loads((folder / "card.json").read_text())


def rewrite(folder: Path, **changes: object) -> None:
    """Change card.json by hand (as an old or damaged file would be), ``None`` removing a key."""
    values = raw(folder)
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    (folder / "card.json").write_text(json.dumps(values))


def test_write_read_round_trip(tmp_path: Path) -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}
    card = small_card(display_name="small", dose_range=[0.05, 0.5], validation={"psnr": 30.0})
    folder = write_folder(tmp_path / "ckpt", state, card)
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "weights.safetensors"]
    back = read_card(folder)
    assert back == card and back.spatial_dims == 2 and back.normalization_method == "percentile"
    assert raw(folder)["format"] == "vce-model-card" and raw(folder)["version"] == CARD_VERSION
    weights = read_weights(folder)
    assert set(weights) == {"w", "b"} and torch.equal(weights["w"], state["w"])
    # display_name defaults to the name; the card is also a read-only mapping of its JSON keys
    assert small_card("x").display_name == "x"
    assert back["model"] == "ld_cgan_generator" and back.get("held_out") is None
    assert dict(back) == back.to_dict() == raw(folder)


def test_unknown_keys_survive(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "m", SMALL, licence={"spdx": "MIT"})
    rewrite(folder, notes=["from a newer writer"])
    card = read_card(folder)
    assert card.extra == {"licence": {"spdx": "MIT"}, "notes": ["from a newer writer"]}
    write_card(folder, card)
    update_card(folder, default=True, reviewed_by="a reader")
    values = raw(folder)
    assert values["licence"] == {"spdx": "MIT"} and values["notes"] == ["from a newer writer"]
    assert values["default"] is True and values["reviewed_by"] == "a reader"


@pytest.mark.parametrize(
    "key", ["name", "model", "config", "data_mode", "context", "patch_size", "normalization"]
)
def test_missing_required_key_names_folder_and_key(key: str, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "model-a", SMALL)
    rewrite(folder, **{key: None})
    with pytest.raises(VCEModelError, match=f"model-a.*no '{key}'"):
        read_card(folder)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 0}, "version 0, which this code does not read"),
        ({"version": CARD_VERSION + 1}, f"version {CARD_VERSION + 1}, which"),
        ({"version": None}, "no 'version'"),
        ({"format": None}, "no 'format'"),
        ({"format": "other-card"}, "format is 'other-card'"),
        ({"context": "one"}, "'context' is 'one'"),
        ({"data_mode": "4d"}, "'data_mode' is '4d'"),
        ({"normalization": {"fit_on": "native"}}, "'normalization'"),
        ({"default": "yes"}, "'default' is 'yes'"),
        ({"data_mode": "3d"}, "spatial_dims 2 but data_mode '3d'"),
    ],
)
def test_old_unknown_or_mistyped_card_is_refused(changes: dict, message: str, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "model-b", SMALL)
    rewrite(folder, **changes)
    with pytest.raises(VCEModelError, match=message) as info:
        read_card(folder)
    assert "model-b" in str(info.value) and "Expected" in str(info.value)


def test_unreadable_or_missing_card(tmp_path: Path) -> None:
    with pytest.raises(VCEModelError, match="does not exist"):
        read_card(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VCEModelError, match="card.json is missing"):
        read_card(tmp_path / "empty")
    (tmp_path / "empty" / "card.json").write_text("{not json")
    with pytest.raises(VCEModelError, match="cannot be read"):
        read_card(tmp_path / "empty")
    (tmp_path / "empty" / "card.json").write_text("[1, 2]")
    with pytest.raises(VCEModelError, match="JSON list"):
        read_card(tmp_path / "empty")
    with pytest.raises(VCEModelError, match="weights.safetensors is missing"):
        read_weights(tmp_path / "empty")


def test_failed_update_leaves_the_card_as_it_was(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "m", SMALL)
    before = (folder / "card.json").read_bytes()
    with pytest.raises(TypeError):  # not JSON-serialisable: fails while writing
        update_card(folder, held_out={"psnr": object()})
    with pytest.raises(VCEModelError, match="patch_size"):  # invalid: refused before writing
        update_card(folder, patch_size=0)
    assert (folder / "card.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "weights.safetensors"]

    def partial(path: Path) -> None:
        path.write_text('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(folder / "card.json", partial)
    assert (folder / "card.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "weights.safetensors"]
    assert update_card(folder, held_out={"psnr": 31.0}).held_out == {"psnr": 31.0}
    assert read_card(folder).held_out == {"psnr": 31.0}


def test_write_refuses_an_invalid_card(tmp_path: Path) -> None:
    with pytest.raises(VCEModelError, match="data_mode"):
        write_folder(tmp_path / "bad", {"w": torch.zeros(1)}, small_card(data_mode="volume"))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(TypeError):
        write_card(tmp_path, {"name": "a dict is not a card"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fields of ModelCard"):
        ModelCard(**{**small_card().__dict__, "extra": {"patch_size": 3}})


def test_list_checkpoints_default_first(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name in ("c", "a", "b"):
        write_checkpoint(models / name, SMALL)
    (models / "junk").mkdir()
    (models / "card-only").mkdir()
    (models / "card-only" / "card.json").write_text(json.dumps(raw(models / "a")))
    assert [p.name for p in list_checkpoints(models)] == ["a", "b", "c"]
    update_card(models / "c", default=True)
    assert [p.name for p in list_checkpoints(models)] == ["c", "a", "b"]
    rewrite(models / "a", default=True, version=99)  # an unreadable card is listed, never the default
    assert [p.name for p in list_checkpoints(models)] == ["c", "a", "b"]
    assert list_checkpoints(tmp_path / "none") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(VCEInputError, match="is not a folder"):
        list_checkpoints(tmp_path / "file")


BUNDLED_LOW_DOSE = [
    "ld_cgan_2d_l1",
    "ld_cgan_2d_np",
    "ld_cgan_2d_np_linear",
    "ld_cgan_2d_np_physics",
    "ld_cgan_2d_np_physics_bias",
    "ld_cgan_2d_np_physics_t1",
    "ld_cgan_2d_np_physics_t1sup",
    "ld_cgan_2d_np_physics_t1sup_120",
    "ld_cgan_2d_np_physics_t1sup_lf25",
    "ld_cgan_2d_np_physics_t1sup_lf25_w8k",
    "ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32",
    "ld_cgan_2d_np_physics_t1h32_ns",
]
DEFAULT = "ld_cgan_2d_np_physics_t1h32_ns"  # chosen on ten draws (README, "Held-out evaluation")


@pytest.mark.parametrize("name", BUNDLED_LOW_DOSE)
def test_bundled_cards_load(name: str) -> None:
    from vce_core.synthesis import Synthesizer

    folder = BUNDLED_MODELS / name
    card = read_card(folder)
    values = raw(folder)
    assert {k: card.to_dict()[k] for k in values} == values  # every value read as written
    assert card.name == name and card.model == "ld_cgan_generator" and card.data_mode == "2d"
    assert card.held_out is not None and card.training["iterations"] > 0
    assert card.default is (name == DEFAULT)
    synth = Synthesizer.from_checkpoint(folder, device="cpu")
    assert synth.card == card and synth.display_name == card.display_name
    assert synth.needs_sequence is (card.config.get("base") == "physics")
    assert list_checkpoints(BUNDLED_MODELS)[0].name == DEFAULT


def test_task_fields_round_trip_and_defaults(tmp_path: Path) -> None:
    old = small_card()
    assert old.task == "low_dose" and old.input_names == ["native", "standard_dose"] and old.target is None
    folder = write_folder(tmp_path / "old", {"w": torch.zeros(1)}, old)
    rewrite(folder, task=None, inputs=None, optional_inputs=None, target=None)  # a card from before tasks
    assert read_card(folder).task == "low_dose"
    vc = small_card(
        task="virtual_contrast",
        inputs=["native", "t2", "adc"],
        optional_inputs=["adc"],
        target="standard_dose",
    )
    back = read_card(write_folder(tmp_path / "vc", {"w": torch.zeros(1)}, vc))
    assert back == vc and back.input_names == ["native", "t2", "adc"] and "extra" not in raw(tmp_path / "vc")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "segmentation"}, "task"),
        ({"task": "virtual_contrast", "inputs": []}, "lists no inputs"),
        ({"task": "virtual_contrast", "inputs": ["native", "native"]}, "inputs"),
        ({"task": "virtual_contrast", "inputs": ["native"], "optional_inputs": ["t2"]}, "optional_inputs"),
        ({"inputs": "native"}, "inputs"),
    ],
)
def test_task_fields_are_validated(changes: dict, message: str, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "m", {"w": torch.zeros(1)}, small_card())
    rewrite(folder, **changes)
    with pytest.raises(VCEModelError, match=message):
        read_card(folder)


def test_list_checkpoints_by_task(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_checkpoint(models / "ld", SMALL)
    vc = small_card("vc", task="virtual_contrast", inputs=["native", "t2"], target="standard_dose")
    write_folder(models / "vc", {"w": torch.zeros(1)}, vc)
    write_checkpoint(models / "broken", SMALL)
    rewrite(models / "broken", version=99)  # unreadable: listed for every task, so loading it says why
    assert [p.name for p in list_checkpoints(models)] == ["broken", "ld"]
    assert [p.name for p in list_checkpoints(models, "virtual_contrast")] == ["broken", "vc"]
    assert len(list_checkpoints(models, None)) == 3
    with pytest.raises(VCEInputError, match="unknown task"):
        list_checkpoints(models, "denoising")


@pytest.mark.parametrize("name", ["hrfcn_2d", "pgmgvce_2d", "dyefreenet_2d", "amcgan_2d"])
def test_bundled_virtual_contrast_checkpoints(name: str) -> None:
    """Each seed 001–004 model ships trained with the project CLI, ≤ 20 MB, evaluated, loadable."""
    from vce_core.synthesis import Synthesizer

    folder = BUNDLED_MODELS / name
    card = read_card(folder)
    assert card.task == "virtual_contrast" and card.name == name and card.inputs[0] == "native"
    assert (folder / "weights.safetensors").stat().st_size <= 20 * 2**20
    training = card.training
    assert training["command"].startswith(f"python -m vce_core.train --config configs/{name}.yaml")
    assert training["iterations"] == training["target_iterations"] > 0 and training["wall_time_s"] <= 3600
    assert training["deviations"] and training["hardware"]["cpu"]
    assert card.data["train"]["count"] == 40 and card.held_out is not None and card.held_out["cases"] >= 20
    synth = Synthesizer.from_checkpoint(folder, device="cpu")
    assert synth.task == "virtual_contrast" and name not in [p.name for p in list_checkpoints(BUNDLED_MODELS)]


def test_training_lineage_follows_initialised_from_first_run_first() -> None:
    from vce_core.checkpoint import training_lineage

    first = {"iterations": 10}
    second = {"iterations": 20, "initialised_from": {"name": "a", "training": first}}
    third = {"iterations": 30, "initialised_from": {"name": "b", "folder": "runs/b", "training": second}}
    assert [(n, r["iterations"]) for n, r in training_lineage(third)] == [("a", 10), ("b", 20), (None, 30)]
    assert training_lineage({"iterations": 5, "initialised_from": {"name": "x"}}) == [
        (None, {"iterations": 5, "initialised_from": {"name": "x"}})
    ]  # a parent without its record: nothing to follow
