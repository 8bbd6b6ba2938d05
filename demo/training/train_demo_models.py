"""Train the three demo liveness models on the procedural demo data and ship them as ONNX.

    python -m demo.training.train_demo_models [--samples N] [--epochs E] [--seed S] [--out DIR]

Dev-only (needs torch, see requirements.txt). What it does:

1. writes the three model manifests (fas_a, fas_b, fas_c) into DIR and reads them back with
   `load_manifest`, so the crop recipes and input preprocessing used here are exactly the ones
   shipped;
2. renders training / validation / held-out samples with `demo.training_samples`
   (three different seeds), round-trips every image through JPEG at a random quality 70-95 as
   the devices do, and caches the crops of each recipe made by `liveness.crop.crop_face`;
3. trains each network (Adam, one-cycle learning rate, flips and brightness/contrast jitter on
   the uint8 crops), turning crops into tensors with `LivenessModel.to_tensor` itself;
4. exports ONNX (dynamic batch axis, single file), then scores validation and held-out sets
   with onnxruntime through `LivenessModel`; the ensemble threshold (mean rule) is the one at
   1% FPR on the validation set, rounded to 3 decimals; writes demo.toml and train_report.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing as mp
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn

from demo.training.models import FasA, FasB, FasC, NHWCInput, count_macs
from liveness.boxes import Box
from liveness.crop import crop_face
from liveness.manifest import EnsembleManifest, ModelManifest, load_manifest
from liveness.metrics import OperatingPoint, threshold_at_fpr
from liveness.runtime import LivenessModel

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models"
CHUNK = 100  # samples per generation job; each job has its own seed, so results do not depend on --workers

MANIFESTS: dict[str, str] = {
    "fas_a": """\
# Demo model A: light depthwise-separable CNN (MobileNet style), ~{mmac} M multiply-adds.
# Trained by demo/training/train_demo_models.py on procedural demo data only.
[model]
name = "fas_a"
version = "3"
file = "fas_a.onnx"

[input]
name = "input"
size = [80, 80]
layout = "NCHW"
color = "RGB"
scale = "unit"
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]

[crop]
side = "max"
scale = 2.7
border = "shift"
resize = "stretch"
interpolation = "opencv_linear"
small_face_ref = 130
small_face_max_scale = 4.0

[output]
name = "output"
type = "logits"
activation = "softmax"
live_index = 1
classes = ["attack", "live"]
""",
    "fas_b": """\
# Demo model B: light MiniFASNet-like CNN, ~{mmac} M multiply-adds. BGR 0..255 in; the
# normalisation is inside the network. Three classes like MiniFASNet: print, live, replay.
# Trained by demo/training/train_demo_models.py on procedural demo data only.
[model]
name = "fas_b"
version = "3"
file = "fas_b.onnx"

[input]
name = "input"
size = [80, 80]
layout = "NCHW"
color = "BGR"
scale = "raw"
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]

[crop]
side = "max"
scale = 4.0
border = "shift"
resize = "stretch"
interpolation = "opencv_linear"

[output]
name = "output"
type = "logits"
activation = "softmax"
live_index = 1
classes = ["print", "live", "replay"]
""",
    "fas_c": """\
# Demo model C: heavier ResNet-style CNN, ~{mmac} M multiply-adds, NHWC input, ImageNet
# normalisation, one sigmoid logit (live).
# Trained by demo/training/train_demo_models.py on procedural demo data only.
[model]
name = "fas_c"
version = "3"
file = "fas_c.onnx"

[input]
name = "input"
size = [128, 128]
layout = "NHWC"
color = "RGB"
scale = "unit"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[crop]
side = "axes"
scale = 1.5
border = "pad"
resize = "letterbox"
interpolation = "opencv_linear"

[output]
name = "output"
type = "logits"
activation = "sigmoid"
live_index = 0
classes = ["live"]
""",
}
NETS = {"fas_a": FasA, "fas_b": FasB, "fas_c": FasC}
# Class index per (label, attack type) for each network's training target.
ATTACK_TYPES = ("print", "replay")


def targets(name: str, is_attack: np.ndarray, attack_type: np.ndarray) -> np.ndarray:
    if name == "fas_a":  # ["attack", "live"]
        return (~is_attack).astype(np.int64)
    if name == "fas_b":  # ["print", "live", "replay"]
        return np.where(~is_attack, 1, np.where(attack_type == 1, 2, 0)).astype(np.int64)
    return (~is_attack).astype(np.float32)  # fas_c: one logit, 1 = live


class _Preprocess:
    """`LivenessModel.to_tensor` needs only `.manifest`; this lets training use that exact code
    before the ONNX file exists."""

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return LivenessModel.to_tensor(self, crops)  # type: ignore[arg-type]


# ---------------------------------------------------------------- data


@dataclass
class CropSet:
    crops: dict[str, np.ndarray]  # model name -> uint8 (n, views, h, w, 3); view 0 = the true box
    is_attack: np.ndarray  # bool (n,)
    attack_type: np.ndarray  # int (n,): -1 genuine, 0 print, 1 replay

    def __len__(self) -> int:
        return len(self.is_attack)

    def view0(self, name: str) -> np.ndarray:
        return self.crops[name][:, 0]


_WORKER_MANIFESTS: dict[str, ModelManifest] = {}


def _init_worker(manifests: dict[str, ModelManifest]) -> None:
    _WORKER_MANIFESTS.clear()
    _WORKER_MANIFESTS.update(manifests)
    torch.set_num_threads(1)


def jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def jitter_box(box: Box, rng: np.random.Generator) -> Box:
    """A detector-like box: centre moved by up to ~5% of the side, size changed by up to ~10%."""
    side = max(box.w, box.h)
    dx, dy = rng.uniform(-0.05, 0.05, 2) * side
    sw, sh = np.exp(rng.uniform(-0.1, 0.1)), np.exp(rng.uniform(-0.1, 0.1))
    w, h = box.w * sw, box.h * sh
    return Box(box.cx + dx - w / 2, box.cy + dy - h / 2, w, h)


def _render_chunk(job: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    from demo import training_samples

    n, seed, views = job
    rng = np.random.default_rng([seed, 7919])
    crops: dict[str, list[np.ndarray]] = {k: [] for k in _WORKER_MANIFESTS}
    is_attack, attack_type = [], []
    for sample in training_samples(n, seed):
        image = jpeg_round_trip(sample.image, int(rng.integers(70, 96)))
        boxes = [sample.box] + [jitter_box(sample.box, rng) for _ in range(views - 1)]
        for name, m in _WORKER_MANIFESTS.items():
            crops[name].append(np.stack([crop_face(image, m.crop, b, m.size) for b in boxes]))
        attack = sample.label == "attack"
        is_attack.append(attack)
        attack_type.append(ATTACK_TYPES.index(sample.attack_type) if attack else -1)
    return (
        {k: np.stack(v) for k, v in crops.items()},
        np.array(is_attack, dtype=bool),
        np.array(attack_type, dtype=np.int64),
    )


def render_set(
    n: int, seed: int, views: int, manifests: dict[str, ModelManifest], pool, cache: Path | None = None
) -> CropSet:
    """n samples of `training_samples` (in chunks of CHUNK, chunk c drawn with seed
    seed * 10000 + c), each cropped for every manifest with the true box and views - 1 jittered
    boxes. `cache`: a directory to keep the crops in between runs (development only)."""
    key = "|".join(f"{k}:{m.crop}:{m.size}" for k, m in sorted(manifests.items()))
    digest = hashlib.sha256(f"{n}|{seed}|{views}|{key}".encode()).hexdigest()[:16]
    cached = cache / f"crops_{n}_{seed}_{views}_{digest}.npz" if cache else None
    if cached and cached.exists():
        z = np.load(cached)
        return CropSet({k: z[k] for k in manifests}, z["is_attack"], z["attack_type"])
    jobs = [(min(CHUNK, n - i), seed * 10_000 + i // CHUNK, views) for i in range(0, n, CHUNK)]
    parts = pool.map(_render_chunk, jobs, chunksize=1) if pool else [_render_chunk(j) for j in jobs]
    out = CropSet(
        crops={k: np.concatenate([p[0][k] for p in parts]) for k in manifests},
        is_attack=np.concatenate([p[1] for p in parts]),
        attack_type=np.concatenate([p[2] for p in parts]),
    )
    if cached:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cached, is_attack=out.is_attack, attack_type=out.attack_type, **out.crops)
    return out


def augment(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light augmentation on uint8 crops: horizontal flips, brightness and contrast jitter.
    Returns float32 in 0..255 (what to_tensor accepts, like uint8)."""
    x = crops.astype(np.float32)
    n = len(x)
    flip = rng.random(n) < 0.5
    x[flip] = x[flip, :, ::-1]
    contrast = rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(-15, 15, (n, 1, 1, 1)).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * contrast + mean + brightness
    return np.clip(x, 0, 255)


# ---------------------------------------------------------------- training


def train_one(
    name: str, manifest: ModelManifest, data: CropSet, val: CropSet, epochs: int, seed: int, batch: int = 64
) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NETS[name]()
    pre = _Preprocess(manifest)
    nhwc = manifest.layout == "NHWC"
    y_all = targets(name, data.is_attack, data.attack_type)
    x_all = data.crops[name]
    steps = epochs * math.ceil(len(x_all) / batch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    if name == "fas_c":
        loss_fn: nn.Module = nn.BCEWithLogitsLoss()
    else:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(x_all))
        total, count = 0.0, 0
        for i in range(0, len(order), batch):
            idx = np.sort(order[i : i + batch])
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            view = rng.integers(0, x_all.shape[1], len(idx))
            x = torch.from_numpy(pre(augment(x_all[idx, view], rng)))
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            y = torch.from_numpy(y_all[idx])
            out = net(x)
            loss = loss_fn(out[:, 0], y) if name == "fas_c" else loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        live = torch_live_probability(name, net, pre, val.view0(name), nhwc)
        op = threshold_at_fpr(live, val.is_attack, 0.01)
        print(
            f"  {name} epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}, "
            f"val TPR@FPR1% {op.tpr:.3f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    net.eval()
    return net


@torch.no_grad()
def torch_live_probability(name: str, net: nn.Module, pre, crops: np.ndarray, nhwc: bool) -> np.ndarray:
    net.eval()
    outs = []
    for i in range(0, len(crops), 256):
        x = torch.from_numpy(pre(crops[i : i + 256]))
        if nhwc:
            x = x.permute(0, 3, 1, 2)
        outs.append(net(x))
    out = torch.cat(outs)
    if name == "fas_c":
        return torch.sigmoid(out[:, 0]).numpy().astype(np.float64)
    return torch.softmax(out, dim=1)[:, 1].numpy().astype(np.float64)


# ---------------------------------------------------------------- export and evaluation


def export(name: str, net: nn.Module, manifest: ModelManifest) -> Path:
    path = Path(manifest.file)
    model = NHWCInput(net) if manifest.layout == "NHWC" else net
    model.eval()
    h, w = manifest.size
    dummy = torch.zeros(2, h, w, 3) if manifest.layout == "NHWC" else torch.zeros(2, 3, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    # Always one self-contained file (an exporter may write weights to <file>.data).
    proto = onnx.load(str(path), load_external_data=True)
    proto.producer_name = "koala-monitor demo/training/train_demo_models.py"
    proto.doc_string = f"Koala Monitor demo liveness model {name} (procedural demo data only)"
    data_file = path.with_name(path.name + ".data")
    onnx.save_model(proto, str(path), save_as_external_data=False)
    if data_file.exists():
        data_file.unlink()
    onnx.checker.check_model(str(path))
    return path


def ort_scores(models: list[LivenessModel], data: CropSet) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    live, probs = {}, {}
    for m in models:
        crops = data.view0(m.name)
        p = np.concatenate([m.probabilities(crops[i : i + 256]) for i in range(0, len(crops), 256)])
        probs[m.name] = p
        live[m.name] = m.live_probability(p)
    return live, probs


def auc(scores: np.ndarray, is_attack: np.ndarray) -> float:
    """P(live score of a genuine > that of an attack), ties count half."""
    g, a = scores[~is_attack], scores[is_attack]
    order = np.argsort(np.concatenate([a, g]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([a, g])[order]
    # average ranks for ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    cum = np.cumsum(counts)
    avg = cum - (counts - 1) / 2
    ranks[order] = avg[inv]
    rg = ranks[len(a) :].sum()
    return float((rg - len(g) * (len(g) + 1) / 2) / (len(g) * len(a)))


def figures(scores: np.ndarray, is_attack: np.ndarray) -> dict:
    out = {"auc": round(auc(scores, is_attack), 5)}
    for f in (0.01, 0.001):
        op = threshold_at_fpr(scores, is_attack, f)
        out[f"fpr_{f:g}"] = {
            "threshold": op.threshold,
            "tpr": round(op.tpr, 4),
            "fpr": round(op.fpr, 4),
            "tp": op.tp,
            "fp": op.fp,
            "attacks": op.attacks,
            "genuine": op.genuine,
        }
    return out


def fmt(name: str, f: dict) -> str:
    a, b = f["fpr_0.01"], f["fpr_0.001"]
    return (
        f"  {name:9s} AUC {f['auc']:.4f} | FPR 1%: TPR {a['tpr']:.4f} ({a['tp']}/{a['attacks']}, "
        f"FP {a['fp']}/{a['genuine']}) | FPR 0.1%: TPR {b['tpr']:.4f} ({b['tp']}/{b['attacks']}, FP {b['fp']})"
    )


# ---------------------------------------------------------------- the run, step by step


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=6000, help="training samples")
    ap.add_argument("--val-samples", type=int, default=1000, help="validation samples (threshold)")
    ap.add_argument("--test-samples", type=int, default=2000, help="held-out samples (reported figures)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes rendering samples")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--views", type=int, default=2, help="crops per training image: true box + jittered boxes")
    ap.add_argument("--cache", type=Path, default=None, help="keep rendered crops here between runs (development)")
    ap.add_argument("--only", default="", help="comma-separated model names to (re)train (debugging)")
    return ap.parse_args(argv)


def write_manifests(out: Path) -> tuple[dict[str, ModelManifest], dict[str, int]]:
    """Step 1: the three model manifests written into `out` and read back; and each net's
    multiply-adds (which the manifests' comments quote)."""
    manifests: dict[str, ModelManifest] = {}
    macs: dict[str, int] = {}
    for name, text in MANIFESTS.items():
        net = NETS[name]()
        h, w = (128, 128) if name == "fas_c" else (80, 80)
        macs[name] = count_macs(net, (3, h, w))
        (out / f"{name}.toml").write_text(text.format(mmac=round(macs[name] / 1e6)), encoding="utf-8")
        loaded = load_manifest(out / f"{name}.toml")
        assert isinstance(loaded, ModelManifest)
        manifests[name] = loaded
    return manifests, macs


def render_sets(
    args: argparse.Namespace, manifests: dict[str, ModelManifest]
) -> tuple[dict[str, CropSet], dict[str, int], float]:
    """Step 2: the train, val and test crop sets (three seeds), their seeds, and the seconds taken."""
    seeds = {"train": args.seed, "val": args.seed + 1000, "test": args.seed + 2000}
    sizes = {"train": args.samples, "val": args.val_samples, "test": args.test_samples}
    views = {"train": args.views, "val": 1, "test": 1}
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    t0 = time.time()
    sets: dict[str, CropSet] = {}
    if args.workers > 1:
        with ctx.Pool(args.workers, initializer=_init_worker, initargs=(manifests,)) as pool:
            for label in ("train", "val", "test"):
                sets[label] = render_set(sizes[label], seeds[label], views[label], manifests, pool, args.cache)
    else:
        _init_worker(manifests)
        torch.set_num_threads(2)
        for label in ("train", "val", "test"):
            sets[label] = render_set(sizes[label], seeds[label], views[label], manifests, None, args.cache)
    t_data = time.time() - t0
    for label, s in sets.items():
        print(
            f"{label}: {len(s)} samples ({int((~s.is_attack).sum())} genuine, "
            f"{int((s.attack_type == 0).sum())} print, {int((s.attack_type == 1).sum())} replay), seed {seeds[label]}"
        )
    print(f"rendering + crops: {t_data:.0f}s", flush=True)
    return sets, seeds, t_data


def train_and_export(
    args: argparse.Namespace, manifests: dict[str, ModelManifest], macs: dict[str, int], train: CropSet, val: CropSet
) -> dict[str, float]:
    """Step 3 and the export of step 4: each network (or those of --only) trained, exported to
    ONNX and checked against torch. Returns the training seconds per model."""
    only = [n for n in args.only.split(",") if n] or list(MANIFESTS)
    t_train = {}
    for k, name in enumerate(MANIFESTS):
        if name not in only:
            continue
        print(f"training {name} ({macs[name] / 1e6:.1f} M multiply-adds)", flush=True)
        t0 = time.time()
        net = train_one(name, manifests[name], train, val, args.epochs, args.seed * 100 + k)
        t_train[name] = round(time.time() - t0, 1)
        export(name, net, manifests[name])
        # the exported file must agree with torch on the same tensors
        check = val.view0(name)[:64]
        ref = torch_live_probability(name, net, _Preprocess(manifests[name]), check, manifests[name].layout == "NHWC")
        lm = LivenessModel(manifests[name])
        got = lm.live_probability(lm.probabilities(check))
        diff = float(np.abs(ref - got).max())
        print(f"  exported {manifests[name].file.name}: torch vs onnxruntime max |diff| {diff:.2e}", flush=True)
        if diff > 1e-4:
            raise SystemExit(f"{name}: ONNX export disagrees with torch ({diff})")
    return t_train


def write_ensemble(models: list[LivenessModel], val: CropSet, out: Path) -> tuple[float, OperatingPoint]:
    """The ensemble's threshold (the validation set's 1% FPR point of the mean, onnxruntime only,
    rounded to 3 decimals), written to demo.toml and read back. Returns it and that operating point."""
    val_live, _ = ort_scores(models, val)
    val_ens = np.mean(np.stack([val_live[m.name] for m in models]), axis=0)
    op = threshold_at_fpr(val_ens, val.is_attack, 0.01)
    if op.threshold is None:
        raise SystemExit("no threshold at FPR 1% on the validation set")
    threshold = round(op.threshold, 3)
    ens_text = (
        "# The demo liveness ensemble: mean of the three models' live probabilities.\n"
        f"# threshold: the validation set's 1% FPR point ({op.threshold:.6f}), rounded; live if score > threshold.\n"
        "[ensemble]\n"
        'name = "demo"\n'
        f"threshold = {threshold}\n"
        'rule = "mean"\n'
        'models = ["fas_a.toml", "fas_b.toml", "fas_c.toml"]\n'
    )
    (out / "demo.toml").write_text(ens_text, encoding="utf-8")
    ens = load_manifest(out / "demo.toml")
    assert isinstance(ens, EnsembleManifest)
    return threshold, op


def held_out_figures(models: list[LivenessModel], test: CropSet, threshold: float) -> dict:
    """The held-out set scored with onnxruntime: each model's and the ensemble's figures, the
    ensemble at the shipped threshold, and fas_b's attack-type guess; printed as it goes."""
    test_live, test_probs = ort_scores(models, test)
    test_ens = np.mean(np.stack([test_live[m.name] for m in models]), axis=0)
    held_out: dict = {}
    for m in models:
        f = figures(test_live[m.name], test.is_attack)
        held_out[m.name] = f
        print(fmt(m.name, f))
    f = figures(test_ens, test.is_attack)
    held_out["ensemble"] = f
    print(fmt("ensemble", f))
    decided_attack = test_ens <= threshold
    g, a = ~test.is_attack, test.is_attack
    at_thr = {
        "fpr": round(float(decided_attack[g].mean()), 4),
        "tpr": round(float(decided_attack[a].mean()), 4),
        "tpr_print": round(float(decided_attack[test.attack_type == 0].mean()), 4),
        "tpr_replay": round(float(decided_attack[test.attack_type == 1].mean()), 4),
    }
    held_out["ensemble_at_threshold"] = at_thr
    print(
        f"  at threshold {threshold}: FPR {at_thr['fpr']:.4f}, TPR {at_thr['tpr']:.4f} "
        f"(print {at_thr['tpr_print']:.4f}, replay {at_thr['tpr_replay']:.4f})"
    )
    b = next(m for m in models if m.name == "fas_b")
    guess = np.array(b.attack_guess(test_probs["fas_b"]))
    det = a & decided_attack
    type_names = np.array(ATTACK_TYPES)[np.maximum(test.attack_type, 0)]
    type_acc = float((guess[det] == type_names[det]).mean()) if det.any() else 0.0
    held_out["fas_b_attack_type_accuracy"] = round(type_acc, 4)
    print(f"  fas_b attack-type guess right on {type_acc:.4f} of detected attacks")
    return held_out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    manifests, macs = write_manifests(out)
    sets, seeds, t_data = render_sets(args, manifests)
    train, val, test = sets["train"], sets["val"], sets["test"]
    t_train = train_and_export(args, manifests, macs, train, val)

    # Ensemble evaluation with onnxruntime only.
    models = [LivenessModel(manifests[n]) for n in MANIFESTS]
    threshold, op = write_ensemble(models, val, out)
    report: dict = {
        "seed": args.seed,
        "seeds": seeds,
        "samples": {"train": len(train), "val": len(val), "test": len(test)},
        "epochs": args.epochs,
        "threshold": threshold,
    }
    print(f"ensemble threshold (val FPR 1% point {op.threshold:.6f}, val TPR {op.tpr:.4f}): {threshold}")
    print(f"held-out set (seed {seeds['test']}): {len(test)} samples")
    report["held_out"] = held_out_figures(models, test, threshold)
    report["models"] = {
        n: {
            "mmac": round(macs[n] / 1e6, 1),
            "params": sum(p.numel() for p in NETS[n]().parameters()),
            "bytes": manifests[n].file.stat().st_size,
        }
        for n in MANIFESTS
    }
    report["seconds"] = {"data": round(t_data, 1), "train": t_train, "total": round(time.time() - t_start, 1)}
    report["versions"] = {"torch": torch.__version__, "onnx": onnx.__version__}
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"total {time.time() - t_start:.0f}s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
