"""Tiny ONNX models built in the tests, so that preprocessing becomes observable.

The workhorse is the *channel-mean* model: its output is the mean of each input channel over
the image, shape (n, 3). Feeding a uniform crop of colour (r, g, b) therefore returns exactly
what the runtime put into the tensor for each channel: channel order, value scale, mean/std and
layout all show up in the output.

The *pixel* model outputs the three channel values of one input pixel (y, x), so a crop's
placement and orientation (flips, height/width swaps, letterbox bars) become observable too.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = 13
IR_VERSION = 8


def channel_mean_model(
    path: Path,
    *,
    size: tuple[int, int] = (16, 16),
    layout: str = "NCHW",
    batch: int | str = "N",
    input_name: str = "input",
    output_name: str = "output",
    output_dim: int | str = 3,
) -> Path:
    """An ONNX model mapping (n, 3, h, w) [or (n, h, w, 3)] to the per-channel mean (n, 3).

    `output_dim` is the class dimension the file declares. A name (e.g. "K") makes it dynamic:
    the input's channel dimension gets the same name, or onnxruntime would infer 3 from it."""
    h, w = size
    c = output_dim if isinstance(output_dim, str) else 3
    shape = [batch, c, h, w] if layout == "NCHW" else [batch, h, w, c]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, output_dim])
    node = helper.make_node("ReduceMean", [input_name], [output_name], axes=axes, keepdims=0)
    return _save(helper.make_graph([node], "channel_mean", [x], [y]), path)


def pixel_model(
    path: Path,
    pixel: tuple[int, int],
    *,
    size: tuple[int, int] = (16, 16),
    layout: str = "NCHW",
    batch: int | str = "N",
) -> Path:
    """An ONNX model mapping (n, 3, h, w) [or (n, h, w, 3)] to the channels of pixel (y, x): (n, 3)."""
    h, w = size
    y, x = pixel
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel {pixel} is outside a {h}x{w} input")
    shape = [batch, 3, h, w] if layout == "NCHW" else [batch, h, w, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    consts = {"starts": [y, x], "ends": [y + 1, x + 1], "axes": axes}
    inits = [helper.make_tensor(k, TensorProto.INT64, [2], v) for k, v in consts.items()]
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["pixel"]),  # (n, 3, 1, 1) or (n, 1, 1, 3)
        helper.make_node("Flatten", ["pixel"], ["output"], axis=1),
    ]
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y_info = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3])
    return _save(helper.make_graph(nodes, "pixel", [x_info], [y_info], initializer=inits), path)


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _toml_value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def manifest_text(sections: dict[str, dict]) -> str:
    out = []
    for name, table in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


def write_model(
    directory: Path,
    name: str = "fas_a",
    *,
    size: tuple[int, int] = (16, 16),
    layout: str = "NCHW",
    batch: int | str = "N",
    model_size: tuple[int, int] | None = None,
    model_layout: str | None = None,
    output_dim: int | str = 3,
    pixel: tuple[int, int] | None = None,
    input: dict | None = None,
    crop: dict | None = None,
    output: dict | None = None,
) -> Path:
    """A channel-mean ONNX file (with `pixel`: a pixel model) plus its manifest TOML in
    `directory`; returns the manifest path.

    `model_size` / `model_layout` / `output_dim` let the ONNX file disagree with the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path, geometry = directory / f"{name}.onnx", {"size": model_size or size, "layout": model_layout or layout}
    if pixel is None:
        channel_mean_model(onnx_path, batch=batch, output_dim=output_dim, **geometry)
    else:
        pixel_model(onnx_path, pixel, batch=batch, **geometry)
    sections = {
        "model": {"name": name, "version": "1", "file": f"{name}.onnx"},
        "input": {"size": list(size), "layout": layout, "color": "RGB", "scale": "unit", **(input or {})},
        "crop": {"side": "max", "scale": 1.0, "border": "pad", "resize": "stretch", **(crop or {})},
        "output": {"type": "probabilities", "live_index": 0, **(output or {})},
    }
    path = directory / f"{name}.toml"
    path.write_text(manifest_text(sections), encoding="utf-8")
    return path


def pipeline_of(tmp_path, **models: dict):
    """A Pipeline whose ensemble (mean, threshold 0.5) has one model per keyword: name =
    write_model's arguments."""
    from liveness.ensemble import Ensemble
    from liveness.manifest import load_manifest
    from liveness.pipeline import Pipeline
    from liveness.runtime import LivenessModel

    manifests = [load_manifest(write_model(tmp_path, name, **kwargs)) for name, kwargs in models.items()]
    return Pipeline(Ensemble("t", [LivenessModel(m) for m in manifests], 0.5))
