"""ONNX liveness models: sessions loaded once per process, batched inference."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .manifest import ManifestError, ModelManifest

# Images per onnxruntime call on dynamic-batch models: the throughput hardly depends on the batch
# size, but onnxruntime's working memory grows with it (bench/README.md, inference ceiling).
RUN_BATCH = 16


@functools.lru_cache(maxsize=32)
def load_session(path: str, threads: int = 0) -> ort.InferenceSession:
    """One session per (file, threads) per process. threads=0: onnxruntime's default."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def output_values(shape) -> int | None:
    """Values per image of an ONNX output of `shape` (batch first): the product of the other
    dimensions, as `probabilities` flattens them; None when one of them is dynamic."""
    if not shape:
        return None
    n = 1
    for d in shape[1:]:
        if not isinstance(d, int):
            return None
        n *= d
    return n


class LivenessModel:
    """One ONNX model with its manifest. `predict` takes uint8 RGB crops (n, h, w, 3)."""

    def __init__(self, manifest: ModelManifest, threads: int = 0, *, cached: bool = True):
        """`cached=False`: a session of its own, not kept in the process's cache (a file checked
        once, e.g. an upload in a temporary folder, must not stay loaded in a web process)."""
        self.manifest = manifest
        if not Path(manifest.file).is_file():
            raise ManifestError(f"model.file: {manifest.file} does not exist")
        self.session = (load_session if cached else load_session.__wrapped__)(str(manifest.file), threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_name = manifest.input_name or self.session.get_inputs()[0].name
        if self.input_name not in inputs:
            raise ManifestError(f"input.name: the model has no input {self.input_name!r} (it has {', '.join(inputs)})")
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output_name = manifest.output_name or self.session.get_outputs()[0].name
        if self.output_name not in outputs:
            raise ManifestError(
                f"output.name: the model has no output {self.output_name!r} (it has {', '.join(outputs)})"
            )
        shape = inputs[self.input_name].shape
        self._check_shape(shape)
        self._check_outputs(outputs[self.output_name].shape)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def _check_shape(self, shape) -> None:
        m = self.manifest
        h, w = m.size
        want = [3, h, w] if m.layout == "NCHW" else [h, w, 3]
        got = list(shape[1:])
        if len(shape) != 4 or any(isinstance(g, int) and g != e for g, e in zip(got, want, strict=True)):
            raise ManifestError(
                f"input: manifest says {m.layout} {h}x{w}x3, the ONNX input {self.input_name!r} has shape {shape}"
            )

    def _check_outputs(self, shape) -> None:
        """live_index and classes against the ONNX output's values per image (its dimensions after
        the batch), when those are fixed; a dynamic output is checked when scoring."""
        n = output_values(shape)
        if n is not None:
            self._check_values(n, f"the ONNX output {self.output_name!r} (shape {shape}) gives {n} values per image")

    def _check_values(self, n: int, where: str) -> None:
        m = self.manifest
        if max(m.live_index) >= n:
            raise ManifestError(f"output.live_index: {max(m.live_index)} is beyond the outputs: {where}")
        if m.classes and len(m.classes) != n:
            raise ManifestError(f"output.classes: names {len(m.classes)} classes, but {where}")

    @property
    def name(self) -> str:
        return self.manifest.name

    def to_tensor(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB crops (n, h, w, 3) to the model's input: channel order, (value / 255 if
        `unit`) - mean) / std, layout. One pass per channel straight into the output array
        (value * a + b with a = k / std, b = -mean / std), cheaper than step by step; equal
        to it up to float32 rounding."""
        m = self.manifest
        n, h, w, _ = crops.shape
        k = 1 / 255.0 if m.scale == "unit" else 1.0
        a = np.float32(k) / np.asarray(m.std, np.float32)
        b = -np.asarray(m.mean, np.float32) / np.asarray(m.std, np.float32)
        out = np.empty((n, 3, h, w) if m.layout == "NCHW" else (n, h, w, 3), np.float32)
        for c, src in enumerate((2, 1, 0) if m.color == "BGR" else (0, 1, 2)):
            dst = out[:, c] if m.layout == "NCHW" else out[..., c]
            np.multiply(crops[..., src], a[c], out=dst, dtype=np.float32)
            dst += b[c]
        return out

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities (n, k) for uint8 RGB crops (n, h, w, 3)."""
        x = self.to_tensor(crops)
        if len(x) == 0:  # nothing to run (reshape(0, -1) below would fail)
            return np.zeros((0, max(self.manifest.live_index) + 1), np.float64)
        if self.fixed_batch and self.fixed_batch != len(x):
            # a model exported with a fixed batch size b: run chunks of b, the last zero-padded
            b = self.fixed_batch
            padded = np.concatenate([x, np.zeros((-len(x) % b, *x.shape[1:]), x.dtype)])
            out = np.concatenate([self._run(padded[i : i + b]) for i in range(0, len(padded), b)])[: len(x)]
        else:  # chunks of RUN_BATCH: as fast as larger batches here, a quarter of the working memory of 64
            out = np.concatenate([self._run(x[i : i + RUN_BATCH]) for i in range(0, len(x), RUN_BATCH)])
        out = out.reshape(len(x), -1).astype(np.float64)
        m = self.manifest
        if m.output_type == "logits":
            out = _softmax(out) if m.activation == "softmax" else 1 / (1 + np.exp(-out))
        self._check_values(out.shape[1], f"the model gives {out.shape[1]} values")  # a dynamic shape: known now
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def live_probability(self, probs: np.ndarray) -> np.ndarray:
        return np.clip(probs[:, list(self.manifest.live_index)].sum(axis=1), 0.0, 1.0)

    def attack_guess(self, probs: np.ndarray) -> list[str | None]:
        """The most probable named attack class per row (None if the manifest names none)."""
        named = self.manifest.attack_classes
        if not named:
            return [None] * len(probs)
        idx = list(named)
        return [named[idx[int(np.argmax(row[idx]))]] for row in probs]
