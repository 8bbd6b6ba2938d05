"""The shipped demo liveness models (demo/models/) on held-out demo data.

Real inference with onnxruntime through the production code path (load_manifest, crop_face,
LivenessModel, the ensemble mean); no torch. The held-out set is rendered with `render_sample`
from a seed the training script never uses (it draws from `training_samples`).
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo import render_sample
from liveness.crop import crop_face
from liveness.manifest import EnsembleManifest, ModelManifest, load_manifest
from liveness.metrics import threshold_at_fpr
from liveness.runtime import LivenessModel
from tests.conftest import DEMO_MANIFEST, ROOT

DEMO = DEMO_MANIFEST
DEMO_MODELS = DEMO.parent
TRAINING_SCRIPT = ROOT / "demo" / "training" / "train_demo_models.py"
SEED = 0x5EED_7E57  # held-out: never used by demo/training/train_demo_models.py
N_GENUINE, N_PRINT, N_REPLAY = 300, 75, 75
SIZES = ((480, 640), (640, 480), (800, 600), (1280, 720))  # (width, height)


def _auc(live: np.ndarray, is_attack: np.ndarray) -> float:
    """P(a genuine image scores higher than an attack), ties half."""
    g, a = live[~is_attack], live[is_attack]
    greater = (g[:, None] > a[None, :]).sum()
    ties = (g[:, None] == a[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(g) * len(a)))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.fixture(scope="module")
def ensemble() -> EnsembleManifest:
    e = load_manifest(DEMO)
    assert isinstance(e, EnsembleManifest)
    return e


@pytest.fixture(scope="module")
def held_out():
    rng = np.random.default_rng(SEED)
    kinds = [("genuine", None)] * N_GENUINE + [("attack", "print")] * N_PRINT + [("attack", "replay")] * N_REPLAY
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    samples = []
    for label, attack_type in kinds:
        size = SIZES[int(rng.integers(len(SIZES)))]
        face = float(rng.uniform(130, 300))
        s = render_sample(rng, label=label, attack_type=attack_type, size=size, face_size=face)
        samples.append((_jpeg(s.image, int(rng.integers(70, 96))), s.box, label, attack_type))
    return samples


def _score(ensemble: EnsembleManifest, samples) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    live, probs = {}, {}
    for manifest in ensemble.models:
        model = LivenessModel(manifest)
        crops = np.stack([crop_face(img, manifest.crop, box, manifest.size) for img, box, _, _ in samples])
        p = model.probabilities(crops)
        probs[manifest.name] = p
        live[manifest.name] = model.live_probability(p)
    return live, probs


@pytest.fixture(scope="module")
def scored(ensemble, held_out):
    live, probs = _score(ensemble, held_out)
    mean = np.mean(np.stack([live[m.name] for m in ensemble.models]), axis=0)
    is_attack = np.array([label == "attack" for _, _, label, _ in held_out])
    types = np.array([t or "" for _, _, _, t in held_out])
    return live, probs, mean, is_attack, types


def test_manifests(ensemble):
    assert ensemble.name == "demo"
    assert ensemble.rule == "mean"
    assert [m.name for m in ensemble.models] == ["fas_a", "fas_b", "fas_c"]
    assert 0 < ensemble.threshold < 1
    by_name = {m.name: m for m in ensemble.models}
    assert by_name["fas_a"].size == (80, 80) and by_name["fas_b"].size == (80, 80)
    assert by_name["fas_c"].size == (128, 128) and by_name["fas_c"].layout == "NHWC"
    assert by_name["fas_b"].color == "BGR" and by_name["fas_b"].scale == "raw"
    assert by_name["fas_b"].attack_classes == {0: "print", 2: "replay"}
    total = sum(Path(m.file).stat().st_size for m in ensemble.models)
    assert total < 8_000_000
    for m in ensemble.models:  # single-file ONNX: no external weights next to it
        assert not Path(str(m.file) + ".data").exists()


def test_ensemble_tpr_at_1pct_fpr(scored, ensemble):
    _, _, mean, is_attack, types = scored
    op = threshold_at_fpr(mean, is_attack, 0.01)
    assert op.genuine == N_GENUINE and op.attacks == N_PRINT + N_REPLAY
    assert op.threshold is not None
    assert op.tpr >= 0.9, f"ensemble TPR at FPR 1% = {op.tpr:.3f} ({op.tp}/{op.attacks})"
    # the shipped threshold is a sensible operating point on unseen data too
    flagged = mean <= ensemble.threshold
    assert flagged[~is_attack].mean() <= 0.03
    assert flagged[is_attack].mean() >= 0.9
    for t in ("print", "replay"):
        assert flagged[types == t].mean() >= 0.8, t


def test_each_model_better_than_chance(scored):
    live, _, _, is_attack, _ = scored
    for name, s in live.items():
        assert np.all((s >= 0) & (s <= 1)), name
        assert _auc(s, is_attack) > 0.8, name


def test_scores_deterministic(scored, ensemble, held_out):
    live, _, _, _, _ = scored
    again, _ = _score(ensemble, held_out[:60])
    for name, s in again.items():
        np.testing.assert_array_equal(s, live[name][:60])


def test_fas_b_attack_type(scored, ensemble):
    _, probs, mean, is_attack, types = scored
    fas_b = next(m for m in ensemble.models if m.name == "fas_b")
    guess = np.array(LivenessModel(fas_b).attack_guess(probs["fas_b"]))
    detected = is_attack & (mean <= ensemble.threshold)
    assert detected.sum() >= 100
    right = (guess[detected] == types[detected]).mean()
    assert right >= 0.8, f"fas_b attack type right on {right:.3f} of detected attacks"


# --- the manifests: the shipped ones and the ones the training script writes all load -------------


def _model_manifests_of_the_training_script() -> dict[str, str]:
    """MANIFESTS of demo/training/train_demo_models.py, read without importing it (torch)."""
    source = TRAINING_SCRIPT.read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MANIFESTS":
            return ast.literal_eval(node.value)
    raise AssertionError("no MANIFESTS in train_demo_models.py")


def test_it_ships_the_ensemble_and_its_three_models():
    # the parametrized test below runs once per file found: an empty folder would skip it
    assert sorted(p.name for p in DEMO_MODELS.glob("*.toml")) == ["demo.toml", "fas_a.toml", "fas_b.toml", "fas_c.toml"]


@pytest.mark.parametrize("path", sorted(DEMO_MODELS.glob("*.toml")), ids=lambda p: p.name)
def test_it_loads_every_shipped_demo_manifest(path):
    m = load_manifest(path)
    assert isinstance(m, ModelManifest | EnsembleManifest) and m.name == path.stem


def test_it_loads_the_manifests_the_training_script_writes(tmp_path):
    manifests = _model_manifests_of_the_training_script()
    assert set(manifests) == {"fas_a", "fas_b", "fas_c"}
    for name, text in manifests.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text.format(mmac=10), encoding="utf-8")
        m = load_manifest(path)
        assert m.name == name
