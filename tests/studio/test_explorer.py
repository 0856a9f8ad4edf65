"""Explorer logic without Gradio: the viewer payload (orientation, square pixels, what each panel shows),
synthetic slices equal to the whole-volume synthesis in every plane, labels of every number, and the
volume worker (stale requests dropped, idle precomputation yielding)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from studio.cases import CaseLibrary
from studio.explorer import Explorer, StackSpec, View
from studio.generators import GeneratorRegistry
from studio.volumes import IDLE, Stopped, VolumeJobs
from support import GENERATOR, write_app_checkpoint
from vce_core.display import slice_spacing, take_slice
from vce_core.errors import VCEInputError
from vce_core.io import Case, Volume, save_case
from vce_core.viewer import oriented

SHAPE = (20, 16, 8)  # I, J, K all different, so a transposed image would show
SPACING = (1.0, 1.0, 3.0)
LAST = {"axial": SHAPE[2] - 1, "coronal": SHAPE[1] - 1, "sagittal": SHAPE[0] - 1}


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    """An explorer over one 1 × 1 × 3 mm case (acquired low dose 0.33) and the tiny test generator.

    The standard dose has a bright marker at the right-anterior-superior corner.
    """
    root = tmp_path_factory.mktemp("anisotropic")
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    brain = (i / 0.8) ** 2 + (j / 0.8) ** 2 + (k / 0.9) ** 2 < 1
    rng = np.random.default_rng(0)
    native = np.where(brain, 100.0 + rng.normal(0, 3, SHAPE), 0.0).astype(np.float32)
    enhancement = 60.0 * np.exp(-(i**2 + j**2 + k**2) / 0.1) * brain
    standard = (native + enhancement).astype(np.float32)
    standard[-1, -1, -1] = 1000.0
    affine = np.diag([*SPACING, 1.0])

    def volume(values: np.ndarray) -> Volume:
        return Volume(values.astype(np.float32), affine=affine, spacing=SPACING)

    case = Case(
        native=volume(native),
        standard_dose=volume(standard),
        low_doses={0.33: volume(native + 0.33 * enhancement)},
        field_strength=3.0,
        meta={"case_id": "anisotropic"},
    )
    save_case(case, root / "data" / "anisotropic")
    write_app_checkpoint(root / "models" / GENERATOR)
    return Explorer(CaseLibrary(root / "data"), GeneratorRegistry(root / "models"))


def _decoded(explorer: Explorer, data: dict[str, Any], kind: str) -> np.ndarray:
    """The slice on screen of the panel ``kind`` as the browser decodes it."""
    panel = next(p for p in data["panels"] if p["key"] == kind)
    stack = data["stacks"][panel["stack"]]
    text = stack["slices"][str(data["index"])]
    return explorer.encoding("anisotropic").decode(text, (data["rows"], data["cols"]))


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_payload_geometry_and_orientation(explorer: Explorer, plane: str) -> None:
    data = explorer.viewer_payload(View("anisotropic", GENERATOR, 0.33, plane, LAST[plane]))
    lc = explorer.library.get("anisotropic")
    expected, pixel = oriented(
        take_slice(lc.case.standard_dose.data, plane, LAST[plane]), slice_spacing(SPACING, plane)
    )
    assert (data["rows"], data["cols"]) == expected.shape and data["spacing"] == list(pixel)
    standard = _decoded(explorer, data, "standard")
    step = explorer.encoding("anisotropic").scale
    assert np.max(np.abs(standard - expected)) <= step
    rows, cols = np.nonzero(standard > 500)  # the right-anterior-superior marker is at the top left
    assert rows.min() == 0 and cols.min() == 0
    top, left = {"axial": ("A", "R"), "coronal": ("S", "R"), "sagittal": ("S", "A")}[plane]
    assert data["markers"]["top"] == top and data["markers"]["left"] == left
    if plane != "axial":
        assert data["spacing"][0] == 3.0  # rows run along k: 3 mm, drawn as such by the browser


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_synthetic_slices_equal_the_whole_volume_synthesis(explorer: Explorer, plane: str) -> None:
    lc = explorer.library.get("anisotropic")
    synth = explorer.generators.get(GENERATOR)
    volume = synth.synthesize(lc.case.native, lc.case.standard_dose, 0.27, 3.0, seed=lc.noise_seed())
    index = 3
    got = explorer.synthetic_slice(lc, GENERATOR, 0.27, plane, index, session="t")
    np.testing.assert_allclose(got, take_slice(volume, plane, index), rtol=0, atol=1e-4)


def test_panels_say_what_they_show(explorer: Explorer) -> None:
    data = explorer.viewer_payload(View("anisotropic", GENERATOR, 0.5, "axial", 2))
    titles = {p["key"]: p for p in data["panels"]}
    assert titles["synthetic"]["title"] == f"Synthetic · 50 % · {GENERATOR}"
    assert titles["real"]["message"] == "no acquisition at 50 % dose"  # real data: nothing at 50 %
    assert titles["difference"]["message"] == "no acquisition at 50 % dose"
    assert titles["baseline"]["derive"] == {
        "op": "lerp",
        "a": titles["native"]["stack"],
        "b": titles["standard"]["stack"],
        "t": 0.5,
    }
    assert data["context"] == "anisotropic|axial" and data["window"]["preset"] == "Brain T1"
    acquired = explorer.viewer_payload(View("anisotropic", GENERATOR, 0.33, "axial", 2))
    real = next(p for p in acquired["panels"] if p["key"] == "real")
    assert real["title"] == "Real · 33 % · acquired" and "message" not in real


def test_stack_loader_serves_only_known_stacks(explorer: Explorer) -> None:
    data = explorer.viewer_payload(View("anisotropic", GENERATOR, 0.33, "coronal", 2))
    native = next(p for p in data["panels"] if p["key"] == "native")["stack"]
    got = explorer.stack_slices(native, [0, 1, 99, -1, True])  # type: ignore[list-item]
    assert sorted(got) == [0, 1]
    assert explorer.stack_slices("not-a-stack", [0]) == {}
    unknown = StackSpec("anisotropic", "native", "axial").id  # valid form, never handed out here
    assert explorer.stack_slices(unknown, [0]) in ({}, explorer.stack_slices(unknown, [0]))


def test_every_number_is_labelled_with_the_view(explorer: Explorer) -> None:
    view = View("anisotropic", GENERATOR, 0.33, "sagittal", 4)
    metrics = explorer.slice_metrics(view)
    assert f"anisotropic · {GENERATOR} · sagittal slice 5 · 33 % dose" in metrics and "PSNR" in metrics
    noise = explorer.noise_chart(view)
    assert "anisotropic · sagittal slice 5" in noise.layout.title.text and "33 %" in noise.layout.title.text
    response = explorer.dose_response(view)
    assert "largest enhancing lesion of anisotropic" in response.layout.title.text
    volume = explorer.volume_metrics("anisotropic", GENERATOR, 0.33)
    assert f"anisotropic · {GENERATOR} · 33 % dose" in volume
    other = explorer.slice_metrics(View("anisotropic", GENERATOR, 0.33, "axial", 1))
    assert "axial slice 2" in other and other != metrics


def test_noise_chart_shows_the_subtraction_noise(explorer: Explorer) -> None:
    """The traces are the local noise of image − native (seed 000's claim), not of the images themselves."""
    from scipy import ndimage

    from studio.figures import local_noise_sd

    view = View("anisotropic", GENERATOR, 0.33, "axial", 2)
    lc = explorer.library.get("anisotropic")
    na = take_slice(lc.case.native.data, "axial", 2).astype(np.float32)
    sd = take_slice(lc.case.standard_dose.data, "axial", 2).astype(np.float32)
    real = take_slice(lc.acquired_volume(0.33).data, "axial", 2).astype(np.float32)
    region = ndimage.binary_erosion(lc.brain_slice("axial", 2) & ~take_slice(lc.ce, "axial", 2))
    traces = {t.name.split(":")[0]: np.asarray(t.x) for t in explorer.noise_chart(view).data}
    np.testing.assert_allclose(traces["Real"], local_noise_sd(real - na)[region], rtol=1e-4, atol=1e-4)
    baseline = np.float32(0.33) * (sd - na)  # the linear baseline minus native
    np.testing.assert_allclose(
        traces["Linear baseline"], local_noise_sd(baseline)[region], rtol=1e-4, atol=1e-4
    )
    assert "Subtraction noise (image − native)" in explorer.noise_chart(view).layout.title.text


def test_card_summary_states_the_truth_figures() -> None:
    from studio.generators import card_summary
    from vce_core.checkpoint import read_card

    figures = {
        "psnr": 30.0,
        "lesion_error": 0.021,
        "lesion_error_vs": {"linear": 0.08, "physics": 0.012},
        "sub_sigma_ratio": 0.98,
        "doses": [0.1, 0.33],
        "cases": 24,
        "report": "reports/x",
    }
    card = read_card(Path(__file__).parents[2] / "assets" / "models" / "ld_cgan_2d_l1")
    text = card_summary(card.with_changes(held_out=figures))
    assert "vs the noise-free truth: 0.021 (baselines: linear 0.08, physics 0.012)" in text
    assert "synthetic / real: 0.98" in text and "`reports/x`" in text and "24 test cases" in text
    assert "noise-free" not in card_summary(card.with_changes(held_out={"psnr": 30.0}))
    # with the real scan's own error (its noise), beside the baselines or alone
    scan = {**figures, "lesion_error_real_scan": 0.0023}
    assert "physics 0.012; the real scan at that dose: 0.0023, its noise alone)" in card_summary(
        card.with_changes(held_out=scan)
    )
    # a noise-calibrated card (vce_core.evaluate.calibrate) says so: the matched measure, then the other
    record = {
        "texture_scale": 0.8422,
        "measure": "sigma",
        "cases": 10,
        "data": ["data/phantom/val"],
        "ratio_as_trained": {"0.1": 1.17, "0.33": 1.15},
        "ratio_calibrated": {"0.1": 0.99, "0.33": 1.01},
        "residual_as_trained": {"0.1": 0.94, "0.33": 0.92},
        "residual_calibrated": {"0.1": 0.80, "0.33": 0.80},
    }
    calibrated = card.with_changes(training={**card.training, "noise_calibration": record})
    assert (
        "Noise calibrated after training: texture × 0.842 on 10 cases of data/phantom/val "
        "(σ̂ ratio 1.16 → 1.00; residual SD ratio 0.93 → 0.80, 1 = the real noise)"
    ) in card_summary(calibrated)
    by_residual = {**record, "measure": "residual", "residual_as_trained": None}
    by_residual |= {"ratio_as_trained": {"0.1": 0.93}, "ratio_calibrated": {"0.1": 1.0}}
    text = card_summary(card.with_changes(training={**card.training, "noise_calibration": by_residual}))
    assert "(residual SD ratio 0.93 → 1.00, 1 = the real noise)" in text  # σ̂ left out: not recorded
    assert "Noise calibrated" not in card_summary(card)
    # a native-slope fit (calibrate --fit native-slope) says what was removed, where and on what
    fit = {"native_slope": [0.0548, 0.0617], "lesion_type": "weakly enhancing", "cases": 34}
    fit["data"] = ["data/phantom/val", "data/calib_s3131/val"]
    assert (
        "Native lesion contrast removed after training: the texture heads' copy of the native image's "
        "detail, slope 0.055 at 1.5 T and 0.062 at 3 T, fitted on weakly enhancing lesions of 34 cases of "
        "data/phantom/val, data/calib_s3131/val"
    ) in card_summary(card.with_changes(training={**card.training, "native_slope_fit": fit}))
    with_ci = {**fit, "parent_native_slope": [0.01, 0.0]}  # the CI is of the change: shifted by the parent
    with_ci["per_field_strength"] = {"1.5 T": {"lesion_slope_ci": [0.0273, 0.0834]}, "3 T": {}}
    assert (
        "slope 0.055 [0.037, 0.093] at 1.5 T and 0.062 at 3 T (95 % CI over cases), fitted on weakly"
    ) in card_summary(card.with_changes(training={**card.training, "native_slope_fit": with_ci}))
    # a hold-out trained without 3 T: its 3 T slope not fitted (calibrate --field-strengths 1.5)
    one_field = {**with_ci, "native_slope": [0.0548, 0.0]}
    one_field["per_field_strength"] = {**with_ci["per_field_strength"], "3 T": {"fitted": False}}
    assert (
        "slope 0.055 [0.037, 0.093] at 1.5 T and 0.000 at 3 T (not fitted: the parent's) (95 % CI over cases)"
    ) in card_summary(card.with_changes(training={**card.training, "native_slope_fit": one_field}))
    assert "Native lesion contrast" not in card_summary(card)
    # a fine-tuned card: the parent's training first, then the refit and what it trained
    models = Path(__file__).parents[2] / "assets" / "models"
    default = read_card(models / "ld_cgan_2d_np_physics_t1sup_lf25_w8k_t1h32")
    assert (
        "Training: 10000 iterations, 42.2 min, on Intel(R) Xeon(R) Processor "
        "(ld_cgan_2d_np_physics_t1sup_lf25_w8k); then 5000 iterations, 9.6 min, on Intel(R) Xeon(R) "
        "Processor, training only t1_head"
    ) in card_summary(default)
    alone = {k: v for k, v in scan.items() if k != "lesion_error_vs"}
    assert "truth: 0.021 (the real scan at that dose: 0.0023, its noise alone)" in card_summary(
        card.with_changes(held_out=alone)
    )


def test_volume_metrics_without_acquisition_is_a_plain_error(explorer: Explorer) -> None:
    with pytest.raises(VCEInputError, match="no acquisition at 50 % of the standard dose"):
        explorer.volume_metrics("anisotropic", None, 0.5)


def test_unknown_case_and_plane_are_plain_errors(explorer: Explorer, tmp_path: Path) -> None:
    with pytest.raises(VCEInputError, match="no case 'nope'"):
        explorer.viewer_payload(View("nope", None, 0.0, "axial", 0))
    with pytest.raises(VCEInputError, match="unknown plane 'oblique'"):
        explorer.viewer_payload(View("anisotropic", None, 0.0, "oblique", 0))
    with pytest.raises(VCEInputError, match="no cases in"):
        CaseLibrary(tmp_path).get("anything")


def test_noise_legend_matches_its_histogram() -> None:
    """Pure white noise of SD 5: the σ̂ in the legend and the histogram's median both say 5."""
    from studio.figures import local_noise_sd
    from vce_core.metrics import noise_sigma

    img = np.random.default_rng(3).normal(100.0, 5.0, (96, 96))
    region = np.ones(img.shape, bool)
    assert noise_sigma(img, region) == pytest.approx(5.0, rel=0.06)
    assert float(np.median(local_noise_sd(img)[region])) == pytest.approx(5.0, rel=0.12)


# ---------------------------------------------------------------------------------------- volume worker
class SlowVolumes:
    """A compute function of ``steps`` batches of ``pause`` seconds that records what it was asked."""

    def __init__(self, steps: int = 20, pause: float = 0.02) -> None:
        self.steps, self.pause = steps, pause
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.stopped: list[Any] = []

    def __call__(self, key: Any, progress: Any) -> np.ndarray:
        self.started.append(key)
        try:
            for n in range(self.steps):
                time.sleep(self.pause)
                progress(n + 1, self.steps)
        except Stopped:
            self.stopped.append(key)
            raise
        self.finished.append(key)
        return np.full((2, 2, 2), float(key))


def _slow_jobs(steps: int) -> tuple[SlowVolumes, VolumeJobs]:
    """A :class:`SlowVolumes` of ``steps`` batches and the volume worker over it."""
    compute = SlowVolumes(steps=steps)
    return compute, VolumeJobs(compute)


def _waiting(jobs: VolumeJobs, key: Any, session: str) -> tuple[threading.Thread, list[Any]]:
    """A started thread waiting for ``jobs.get(key, session)``, and the list it appends the result to."""
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(jobs.get(key, session)))
    waiter.start()
    return waiter, got


def test_a_session_waits_only_for_its_latest_volume() -> None:
    compute, jobs = _slow_jobs(50)
    waiter, first = _waiting(jobs, 1, "session")
    time.sleep(0.1)
    latest = jobs.get(2, "session")  # the same session moved on: its earlier request is dropped
    waiter.join(5)
    assert first == [None] and float(latest[0, 0, 0]) == 2.0
    assert compute.stopped == [1] and compute.finished == [2]
    assert jobs.cached(2) is not None and jobs.cached(1) is None


def test_another_session_keeps_a_shared_volume_alive() -> None:
    compute, jobs = _slow_jobs(30)
    other, got_b = _waiting(jobs, 1, "b")
    time.sleep(0.05)
    first, got_a = _waiting(jobs, 1, "a")
    time.sleep(0.05)
    jobs.get(2, "a")  # a moves on, b still waits for 1
    other.join(5)
    first.join(5)
    assert got_a == [None] and [float(v[0, 0, 0]) for v in got_b] == [1.0] and 1 in compute.finished


def test_idle_precomputation_yields_to_interactive_work() -> None:
    compute, jobs = _slow_jobs(20)
    jobs.prefetch([7, 8])
    time.sleep(0.1)
    assert compute.started[:1] == [7]
    got = jobs.get(3, "s")  # preempts the idle job at its next batch
    assert float(got[0, 0, 0]) == 3.0
    assert 7 in compute.stopped and compute.finished[0] == 3
    deadline = time.time() + 10
    while (jobs.cached(7) is None or jobs.cached(8) is None) and time.time() < deadline:
        time.sleep(0.05)
    assert jobs.cached(7) is not None and jobs.cached(8) is not None  # resumed when idle again
    with jobs.foreground():
        jobs.prefetch([9])
        time.sleep(0.3)
        assert jobs.progress(9) in (0.0, None)  # paused while interactive work runs
    assert IDLE == "<idle>"


def test_a_session_may_wait_twice_for_the_same_volume() -> None:
    """The viewer and the metrics of one session both wait for the volume on screen: both get it."""
    compute, jobs = _slow_jobs(20)
    waiters = []
    for _ in range(2):
        waiters.append(_waiting(jobs, 4, "s"))
        time.sleep(0.05)
    for waiter, _ in waiters:
        waiter.join(5)
    got = [volume for _, results in waiters for volume in results]
    assert len(got) == 2 and all(g is not None and float(g[0, 0, 0]) == 4.0 for g in got)
    assert compute.started == [4] and compute.stopped == []


def test_moving_on_ends_a_stale_wait_at_once() -> None:
    """A session's slider moved while it waited: supersede() ends that wait; keep= spares the new wish."""
    compute, jobs = _slow_jobs(200)
    waiter, got = _waiting(jobs, 1, "s")
    time.sleep(0.1)
    jobs.supersede("s", keep=1)  # the same wish: nothing ends
    time.sleep(0.3)
    assert waiter.is_alive()
    started = time.time()
    jobs.supersede("s", keep=2)
    waiter.join(5)
    assert got == [None] and time.time() - started < 2.0
    deadline = time.time() + 5
    while 1 not in compute.stopped and time.time() < deadline:
        time.sleep(0.05)
    assert 1 in compute.stopped  # nobody waits for it any more


def test_warm_up_starts_the_phantom_subject_of_a_phantom_case(workspace: dict[str, Path]) -> None:
    """Opening the app warms the first case: the prepared generator inputs and, for a phantom case, the
    background build of the subject that simulates real images at doses nobody acquired (without it the
    first such dose step waited seconds for the build)."""
    fresh = Explorer(CaseLibrary(workspace["data"]), GeneratorRegistry(workspace["models"]))
    case_id = fresh.library.case_ids()[0]
    lc = fresh.library.get(case_id)
    assert lc.is_phantom and lc._phantom is None  # nothing started by opening the library
    fresh.warm_up(case_id, GENERATOR)
    assert GENERATOR in lc.prepared
    assert lc._phantom is not None  # started in the background ...
    assert lc.phantom() is not None  # ... and it finishes


def test_physics_base_generator_gets_the_case_sequence(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A generator built on the physics baseline synthesizes in the explorer with the case's TR and flip
    angle: untrained, its axial slice is the physics baseline's (vce_core.baselines, numpy)."""
    from support import SMALL, copy_case, phantom_case, write_checkpoint
    from vce_core.baselines import physics_baseline

    root = tmp_path_factory.mktemp("explorer-physics")
    copy_case(phantom_case(tmp_path_factory), root / "data")
    write_checkpoint(root / "models" / "phys", {**SMALL, "base": "physics"})
    explorer = Explorer(CaseLibrary(root / "data"), GeneratorRegistry(root / "models"))
    lc = explorer.library.get(explorer.library.case_ids()[0])
    index = lc.case.native.shape[2] // 2
    got = explorer.synthetic_slice(lc, "phys", 0.2, "axial", index, session="t")
    native, sd = lc.case.native.data.astype(np.float32), lc.case.standard_dose.data.astype(np.float32)
    prepared = explorer._prepared(lc, "phys")
    ref = physics_baseline(
        native,
        sd,
        0.2,
        dict(lc.case.meta["sequence"]),
        field_strength=lc.case.field_strength,
        min_signal=0.05 * prepared.params["high"],
    )[:, :, index]
    np.testing.assert_allclose(got, ref, atol=2e-4 * float(np.percentile(native, 99.5)))


def test_a_case_at_a_field_strength_the_generator_never_saw_is_flagged(
    explorer: Explorer, tmp_path: Path
) -> None:
    """The per-slice metrics carry the caution when the case's field strength is none of those on the
    generator's card, and only then (the fixture's case and generator are both at 3 T)."""
    view = View("anisotropic", GENERATOR, 0.33, "axial", 3)
    assert "**Caution:**" not in explorer.slice_metrics(view)
    from vce_core.checkpoint import update_card

    models = tmp_path / "models"
    write_app_checkpoint(models / GENERATOR)
    update_card(models / GENERATOR, data={"train": {"count": 0, "field_strengths": [1.5]}})
    other = Explorer(explorer.library, GeneratorRegistry(models))
    flagged = other.slice_metrics(view)
    assert "**Caution:**" in flagged and "trained at 1.5 T only" in flagged and "at 3 T" in flagged
    assert "PSNR" in flagged  # the metrics are still shown
