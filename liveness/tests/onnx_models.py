"""Tiny ONNX models built in the tests, so that preprocessing becomes observable.

The workhorse is the *channel-mean* model: its output is the mean of each input channel over
the image, shape (n, 3). Feeding a uniform crop of colour (r, g, b) therefore returns exactly
what the runtime put into the tensor for each channel: channel order, value scale, mean/std and
layout all show up in the output.
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
) -> Path:
    """An ONNX model mapping (n, 3, h, w) [or (n, h, w, 3)] to the per-channel mean (n, 3)."""
    h, w = size
    shape = [batch, 3, h, w] if layout == "NCHW" else [batch, h, w, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3])
    node = helper.make_node("ReduceMean", [input_name], [output_name], axes=axes, keepdims=0)
    graph = helper.make_graph([node], "channel_mean", [x], [y])
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
    input: dict | None = None,
    crop: dict | None = None,
    output: dict | None = None,
) -> Path:
    """A channel-mean ONNX file plus its manifest TOML in `directory`; returns the manifest path.

    `model_size` / `model_layout` let the ONNX file disagree with the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    channel_mean_model(
        directory / f"{name}.onnx",
        size=model_size or size,
        layout=model_layout or layout,
        batch=batch,
    )
    sections = {
        "model": {"name": name, "version": "1", "file": f"{name}.onnx"},
        "input": {"size": list(size), "layout": layout, "color": "RGB", "scale": "unit", **(input or {})},
        "crop": {"side": "max", "scale": 1.0, "border": "pad", "resize": "stretch", **(crop or {})},
        "output": {"type": "probabilities", "live_index": 0, **(output or {})},
    }
    path = directory / f"{name}.toml"
    path.write_text(manifest_text(sections), encoding="utf-8")
    return path
