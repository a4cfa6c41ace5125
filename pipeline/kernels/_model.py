"""A user's ONNX segmentation model, applied chunk by chunk with overlap.

The model sees each chunk with ``halo`` pixels of context on every side (the
image border is padded by reflection, as the fused map does for every step)
and only the chunk's own pixels are kept. When ``halo`` is at least the
model's receptive-field radius, every kept pixel saw all the context it can
see, and the model's own padding at the block border (e.g. a Conv's zero
``pads``) only reaches pixels that are cut off: the chunked result then
equals one run of the model on the whole image padded by reflection by
``halo``, whatever the chunking. (On the x86-64 CPU tested, onnxruntime's
convolutions gave a pixel bit-identical values whatever the block around
it, with 1 or more threads, so masks and classes were equal, not just close.)

Model layout: one input ``(N, C, H, W)`` for 2D images or ``(N, C, D, H, W)``
for 3D, float32, with a fixed channel count ``C`` (the image's bands); one
output ``(N, K, ...)`` over the same spatial shape, with a fixed ``K``. The
spatial sizes should be dynamic; a model with a fixed size takes blocks up to
that size (smaller blocks, at the image's far edges, are padded up to it by
reflection and the result cropped back; padding beyond the halo does not
change the kept pixels).

Each worker process opens the file once, single-threaded (dask runs one task
per thread already), and keeps the session for later chunks; the step itself
holds only the path and what was read from the model, so it pickles to the
workers as it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import dask.array as da
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ..errors import InputValueError, ReadError
from ._base import Output, Step, register, resolve_path
from ._units import Physical, Pixels, per_axis

LAYOUT = "(N, C, H, W) for 2D images or (N, C, D, H, W) for 3D"


@dataclass(frozen=True)
class ModelInfo:
    """What the model step needs to know about an ONNX model, read from its file.

    Attributes
    ----------
    ndim
        Spatial axes it takes: 2 or 3.
    channels
        ``C``, the bands of its input.
    outputs
        ``K``, the channels of its output.
    size
        Fixed spatial input size per axis, ``None`` where the size is dynamic.
    """

    ndim: int
    channels: int
    outputs: int
    size: tuple[int | None, ...]


@register
class Model(Step):
    """An ONNX segmentation model run on every chunk plus ``halo`` pixels of context.

    The block is cast to float32 and given to the model as a batch of one;
    the output's ``K`` channels become, with ``output``:

    - ``"mask"``: foreground where channel ``channel`` is above ``threshold``
      (``channel`` defaults to the only channel, or the last one);
    - ``"classes"``: the argmax over the ``K`` channels plus 1, as uint8
      classes 1..K (needs 2 <= K <= 255);
    - ``"image"``: the ``K`` channels as float32 bands, for later steps (a
      ``threshold`` step, for instance).

    The model file is opened with onnxruntime (CPU) when the step is made, so
    a missing file, a file onnxruntime cannot read, or a model with other
    than one input and one output in the layout above is refused before any
    work starts. The image's bands and dimensions are checked against the
    model as soon as the workflow knows them (``halo``, ``bands``, ``fit``);
    a block larger than a fixed-size model is refused in ``fit`` when the
    chunks alone are too large, otherwise when the block comes.

    Parameters
    ----------
    path
        The ``.onnx`` file. A relative path is taken from the workflow file's
        folder (from the current directory in Python) and made absolute;
        every worker must see the file there.
    halo
        Context on each side of a chunk: the model's receptive-field radius,
        >= 0: pixels (one number, or one per spatial axis) or a length such as
        ``"20 um"``, converted per axis and rounded to the nearest whole pixel.
    output
        ``"mask"``, ``"classes"`` or ``"image"``.
    threshold
        For ``"mask"``: the value a pixel's channel must exceed.
    channel
        For ``"mask"``: the output channel to threshold (0-based).

    Raises
    ------
    pydantic.ValidationError
        When the file is missing, unreadable, or not a model of the expected
        layout, or a parameter does not fit the output or the model.
    InputValueError
        From ``halo``, ``bands`` and ``fit``, when the image's dimensions or
        bands differ from the model's, or the chunks exceed a fixed-size
        model.

    Examples
    --------
    >>> import tempfile, numpy as np, onnx
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "H", "W"])
    >>> graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g", [x], [y])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    >>> model.ir_version = 8
    >>> folder = tempfile.TemporaryDirectory()
    >>> onnx.save(model, f"{folder.name}/sigmoid.onnx")
    >>> step = Model(path=f"{folder.name}/sigmoid.onnx", halo=0, threshold=0.6)
    >>> step.apply(np.array([[[-1.0, 0.0, 1.0, 2.0]]]), None)
    array([[False, False,  True,  True]])
    >>> folder.cleanup()
    """

    name = "model"

    path: Path = Field(description="the .onnx file")
    context: Annotated[Pixels, Physical("length", ge=0, integer=True)] = Field(
        default=16, alias="halo", description="receptive-field radius: pixels, a length"
    )
    makes: Literal["mask", "classes", "image"] = Field(default="mask", alias="output")
    threshold: float = Field(default=0.5, allow_inf_nan=False, description="for output: mask")
    channel: int | None = Field(default=None, ge=0, description="for output: mask")

    _info: ModelInfo = PrivateAttr()

    @property
    def output(self) -> Output:  # type: ignore[override]
        return self.makes

    @field_validator("path")
    @classmethod
    def _existing_file(cls, value: Path, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"{path}: no such model file")
        return path

    @model_validator(mode="after")
    def _readable_model(self) -> Model:
        info = inspect_model(self.path)
        if self.makes != "mask":
            extra = [name for name in ("threshold", "channel") if name in self.model_fields_set]
            if extra:
                verb = "is" if len(extra) == 1 else "are"
                raise ValueError(
                    f"{' and '.join(extra)} {verb} only for output: mask, not {self.makes!r}"
                )
        if self.makes == "mask" and self.channel is not None and self.channel >= info.outputs:
            raise ValueError(
                f"channel {self.channel} does not exist: {self.path.name} has "
                f"{info.outputs} output channel(s), 0 to {info.outputs - 1}"
            )
        if self.makes == "classes" and not 2 <= info.outputs <= 255:
            hint = " (for one probability channel use output: mask)" if info.outputs == 1 else ""
            raise ValueError(
                f"output: classes takes the argmax of 2 to 255 channels (one score per class); "
                f"{self.path.name} has {info.outputs}{hint}"
            )
        self._info = info
        return self

    @property
    def info(self) -> ModelInfo:
        """What was read from the model file when the step was made."""
        return self._info

    def describe(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in self.model_dump(mode="json", by_alias=True).items()
        )
        return f"{self.name}({params})"

    def halo(self, ndim: int) -> tuple[int, ...]:
        if ndim != self._info.ndim:
            raise InputValueError(
                f"{self.describe()}: {self.path.name} takes {self._info.ndim}D images "
                f"(input {LAYOUT}); the image is {ndim}D"
            )
        return tuple(int(width) for width in per_axis(self, "context", ndim))

    def bands(self, count: int) -> int:
        self._check_bands(count)
        return self._info.outputs if self.makes == "image" else 1

    def fit(self, data: da.Array, valid: da.Array | None) -> None:
        """Check the image against the model; nothing is fitted."""
        halo = self.halo(data.ndim - 1)
        self._check_bands(data.shape[0])
        for axis, (fixed, sizes, width) in enumerate(
            zip(self._info.size, data.chunks[1:], halo, strict=True)
        ):
            if fixed is not None and max(sizes) + 2 * width > fixed:
                room = fixed - 2 * width
                fix = f"set chunks <= {room}" if room > 0 else "lower the halo"
                raise InputValueError(
                    f"{self.describe()}: {self.path.name} takes a fixed size of {fixed} "
                    f"along spatial axis {axis}; chunks of {max(sizes)} plus twice the halo "
                    f"{width} make larger blocks: {fix}"
                )

    def run_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The size to run the model at for a block of spatial ``shape``.

        That is ``shape`` itself, except along axes where the model has a
        fixed size, which a block may not exceed.
        """
        run = []
        for axis, (fixed, size) in enumerate(zip(self._info.size, shape, strict=True)):
            if fixed is not None and size > fixed:
                raise InputValueError(
                    f"{self.describe()}: {self.path.name} takes a fixed size of {fixed} along "
                    f"spatial axis {axis}; a block (chunk plus the halo of every step on both "
                    f"sides) is {size}: use smaller chunks"
                )
            run.append(size if fixed is None else fixed)
        return tuple(run)

    def apply(self, block: np.ndarray, state: Any) -> np.ndarray:
        self._check_bands(block.shape[0])
        shape = block.shape[1:]
        run = self.run_shape(shape)
        data = np.ascontiguousarray(block, dtype=np.float32)[None]
        if run != shape:
            grow = [(0, 0), (0, 0)] + [(0, r - s) for r, s in zip(run, shape, strict=True)]
            data = np.ascontiguousarray(np.pad(data, grow, mode="symmetric"))
        session = model_session(self.path)
        (result,) = session.run(None, {session.get_inputs()[0].name: data})
        expected = (1, self._info.outputs, *run)
        if result.shape != expected:
            raise InputValueError(
                f"{self.describe()}: {self.path.name} returned shape {result.shape} for an input "
                f"of shape {data.shape}; expected {expected} (has the file changed?)"
            )
        scores = result[(0, slice(None), *(slice(0, s) for s in shape))]
        if self.makes == "mask":
            channel = self._info.outputs - 1 if self.channel is None else self.channel
            return np.asarray(scores[channel] > self.threshold)
        if self.makes == "classes":
            return (np.argmax(scores, axis=0) + 1).astype(np.uint8)
        if self.makes == "image":
            return scores.astype(np.float32)
        raise InputValueError(f"output must be mask, classes or image; got {self.makes!r}")

    def _check_bands(self, count: int) -> None:
        if count != self._info.channels:
            raise InputValueError(
                f"{self.describe()}: {self.path.name} takes {self._info.channels} band(s) "
                f"(input channels C in {LAYOUT}); the image has {count} here: choose bands "
                "with source: {path: ..., bands: [...]} or steps before the model"
            )


def inspect_model(path: Path) -> ModelInfo:
    """Open ``path`` with onnxruntime and check it is a model the model step can run.

    Raises
    ------
    InputValueError
        When onnxruntime cannot open it, or it has other than one input and
        one output, or they are not in the layout ``(N, C, spatial...)`` with
        fixed channel counts and float32 input.
    """
    session = model_session(path)
    name = path.name
    inputs, outputs = session.get_inputs(), session.get_outputs()
    for what, args, kind in (("input", inputs, "the image"), ("output", outputs, "the scores")):
        if len(args) != 1:
            raise InputValueError(
                f"{name} has {len(args)} {what}s ({', '.join(a.name for a in args) or 'none'}); "
                f"the model step needs exactly one {what}, {kind} as {LAYOUT}"
            )
    (source,), (result,) = inputs, outputs
    shape, out_shape = list(source.shape or []), list(result.shape or [])
    if source.type != "tensor(float)":
        raise InputValueError(
            f"{name}: its input {source.name!r} is {source.type}; the model step feeds "
            "float32 images (tensor(float))"
        )
    if len(shape) not in (4, 5):
        raise InputValueError(
            f"{name}: its input {source.name!r} has shape {shape} (rank {len(shape)}); "
            f"the model step needs rank 4 or 5: {LAYOUT}"
        )
    if _fixed(shape[0]) not in (None, 1):
        raise InputValueError(
            f"{name}: its input takes batches of {shape[0]}; the model step runs one block "
            "at a time: export the model with a batch size of 1 or a dynamic one"
        )
    channels = _fixed(shape[1])
    if channels is None:
        raise InputValueError(
            f"{name}: its input has a dynamic channel count ({shape[1]!r}); the model step "
            "needs a fixed number of channels C: export the model with it"
        )
    outs = _fixed(out_shape[1]) if len(out_shape) == len(shape) else None
    if outs is None:
        raise InputValueError(
            f"{name}: its output {result.name!r} has shape {out_shape}; the model step needs "
            f"(N, K, ...) with the input's rank {len(shape)} and a fixed channel count K"
        )
    size = tuple(_fixed(dim) for dim in shape[2:])
    out_size = tuple(_fixed(dim) for dim in out_shape[2:])
    for axis, (a, b) in enumerate(zip(size, out_size, strict=True)):
        if a is not None and b is not None and a != b:
            raise InputValueError(
                f"{name}: its output's spatial axis {axis} is {b} for an input of {a}; the "
                "model step needs an output over the same pixels as its input"
            )
    return ModelInfo(ndim=len(shape) - 2, channels=channels, outputs=outs, size=size)


def _fixed(dim: Any) -> int | None:
    """A dimension's fixed size, or None for a dynamic one (a name, None, or <= 0)."""
    return dim if isinstance(dim, int) and dim > 0 else None


_SESSIONS: dict[str, tuple[tuple[int, int], Any]] = {}
_LOCK = threading.Lock()


def open_sessions() -> list[str]:
    """The model files this process holds an onnxruntime session for."""
    with _LOCK:
        return list(_SESSIONS)


def model_session(path: Path) -> Any:
    """This process's onnxruntime session for the model file at ``path``.

    One session per file and process, opened on first use and reopened when
    the file's size or modification time changes. It runs on the calling
    thread only (one intra-op thread): dask's threads and processes are the
    parallelism, and more threads per session would oversubscribe the cores.

    Raises
    ------
    ReadError
        When the file is missing here.
    InputValueError
        When onnxruntime cannot open it.
    """
    key = str(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ReadError(f"{path}: cannot read the model file ({error.strerror})") from None
    stamp = (stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        cached = _SESSIONS.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(key, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's errors derive from Exception only
            raise InputValueError(
                f"{path}: onnxruntime cannot open it as an ONNX model: {error}"
            ) from None
        _SESSIONS[key] = (stamp, session)
        return session
