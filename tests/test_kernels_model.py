"""The ONNX model step, chunked, against one onnxruntime run on the whole padded image.

The models are tiny convolution nets built here with ``onnx.helper``. A
chunk's kept pixels see ``halo`` pixels of context; with ``halo`` at least the
receptive-field radius the chunked result must equal one run on the whole
image padded by reflection by ``halo`` (dask's ``boundary="reflect"`` is
numpy's ``mode="symmetric"``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
import rasterio
import tifffile
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError
from scipy import ndimage

from pipeline.data import sample_path
from pipeline.errors import InputValueError
from pipeline.kernels import Step
from pipeline.kernels._model import Model, model_session, open_sessions
from pipeline.workflow import Workflow
from pipeline.workflow._fuse import check_chunks, fit_steps, map_steps, total_halo
from tests.conftest import assert_same_partition

CHUNKS_2D = [(1000, 1000), (37, 29), (64, 100), (5, 7)]
CHUNKS_3D = [(1000, 1000, 1000), (7, 13, 11), (16, 32, 20)]


# --- models and references --------------------------------------------------------------


def _save(path: Path, nodes: list, inputs: list, outputs: list, inits: Sequence = ()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _tensor(name: str, shape: Sequence[Any] | None, kind: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, kind, shape)


def conv_model(
    path: Path,
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    activation: str | None = None,
    size: Sequence[int] | None = None,
) -> Path:
    """Same-size convolutions (ReLU between them), then ``activation``, as an ONNX file.

    Each layer is ``(weights (K, C, k...), bias (K,))``; spatial sizes are dynamic
    unless ``size`` fixes them.
    """
    ndim = layers[0][0].ndim - 2
    spatial = list(size) if size is not None else ["D", "H", "W"][-ndim:]
    nodes, inits, previous = [], [], "x"
    for index, (weights, bias) in enumerate(layers):
        inits += [numpy_helper.from_array(weights, f"w{index}")]
        inits += [numpy_helper.from_array(bias, f"b{index}")]
        pads = [weights.shape[-1] // 2] * (2 * ndim)
        out = f"conv{index}"
        nodes.append(
            helper.make_node("Conv", [previous, f"w{index}", f"b{index}"], [out], pads=pads)
        )
        previous = out
        if index < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [previous], [f"relu{index}"]))
            previous = f"relu{index}"
    if activation:
        nodes.append(helper.make_node(activation, [previous], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [previous], ["y"]))
    x = _tensor("x", [1, layers[0][0].shape[1], *spatial])
    y = _tensor("y", [1, layers[-1][0].shape[0], *spatial])
    return _save(path, nodes, [x], [y], inits)


def centred_layer(
    image: np.ndarray, outputs: int, seed: int, kernel: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """A convolution scoring the local mean against the image's median.

    Output ``k`` is ``slope[k] * z - |slope[k]| / 2`` with ``z`` a randomly
    weighted local mean of the bands, centred on the median and scaled by
    the standard deviation, and slopes from -1 to 1: one output is positive
    on bright areas; several make dark / middle / bright classes.
    """
    rng = np.random.default_rng(seed)
    channels, ndim = image.shape[0], image.ndim - 1
    mean = rng.normal(1, 0.5, size=(channels, *(kernel,) * ndim))
    mean /= mean.sum()
    values = image.reshape(channels, -1).astype(np.float64)
    level = float(np.tensordot(mean.sum(axis=tuple(range(1, mean.ndim))), np.median(values, 1), 1))
    spread = float(values.std())
    slopes = np.linspace(-1, 1, outputs) if outputs > 1 else np.ones(1)
    weights = slopes.reshape(-1, *(1,) * mean.ndim) * mean[None] / spread
    bias = -slopes * level / spread - np.abs(slopes) / 2 * (outputs > 1)
    return weights.astype(np.float32), bias.astype(np.float32)


def whole_image_run(path: Path, image: np.ndarray, halo: int) -> np.ndarray:
    """One onnxruntime run (default options) on the image padded by ``halo``, cropped back."""
    widths = [(0, 0)] + [(halo, halo)] * (image.ndim - 1)
    padded = np.pad(image.astype(np.float32), widths, mode="symmetric")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {session.get_inputs()[0].name: padded[None]})
    return scores[(0, slice(None), *(slice(halo, halo + n) for n in image.shape[1:]))]


def run_chunked(values: np.ndarray, chunks: tuple[int, ...], steps: list[Step]) -> np.ndarray:
    data = da.from_array(values, chunks=(values.shape[0], *chunks))
    halo = total_halo(steps, data.ndim - 1)
    check_chunks(data, steps, halo)
    states = fit_steps(data, steps, None)
    return np.asarray(map_steps(data, steps, states, halo).compute())


def landsat() -> np.ndarray:
    with rasterio.open(sample_path("L7_ETMs.tif")) as src:
        return np.asarray(src.read())


def nuclei() -> np.ndarray:
    return np.asarray(tifffile.imread(sample_path("nuclei.tif"))[20:40, 60:124, 80:160])[None]


def assert_decided_equal(got: np.ndarray, want: np.ndarray, close: np.ndarray) -> None:
    """Equal wherever the reference is not within rounding of a decision (``close``).

    The scores were bit-identical in every chunking tried, so nothing is
    excused in practice; the allowance keeps this from failing on a CPU whose
    kernels round a tie differently, and is held to a handful of pixels.
    """
    np.testing.assert_array_equal(got[~close], want[~close])
    assert close.sum() <= 1e-4 * close.size


# --- results equal one whole-image run -----------------------------------------------------


@pytest.mark.parametrize("chunks", CHUNKS_2D)
@pytest.mark.parametrize("halo", [1, 3])
def test_mask_2d_multiband_equals_one_whole_image_run(
    tmp_path: Path, chunks: tuple[int, int], halo: int
) -> None:
    image = landsat()[:, :200, :180]
    path = conv_model(tmp_path / "m.onnx", [centred_layer(image, 1, 0)], activation="Sigmoid")
    got = run_chunked(image, chunks, [Model(path=path, halo=halo, threshold=0.5)])
    scores = whole_image_run(path, image, halo)[0]
    assert got.dtype == bool and got.shape == image.shape[1:]
    assert 0.2 < got.mean() < 0.8  # a real two-sided mask
    assert_decided_equal(got, scores > 0.5, np.abs(scores - 0.5) < 1e-6)


@pytest.mark.parametrize("chunks", CHUNKS_2D)
def test_classes_2d_are_the_argmax_plus_one(tmp_path: Path, chunks: tuple[int, int]) -> None:
    image = landsat()[:, 100:300, 120:300]
    layer = centred_layer(image, 3, 1)
    path = conv_model(tmp_path / "c.onnx", [layer])
    got = run_chunked(image, chunks, [Model(path=path, halo=1, output="classes")])
    scores = whole_image_run(path, image, 1)
    top2 = np.sort(scores, axis=0)[-2:]
    assert got.dtype == np.uint8
    assert set(np.unique(got)) == {1, 2, 3}
    assert_decided_equal(got, np.argmax(scores, axis=0) + 1, top2[1] - top2[0] < 1e-6)


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_mask_3d_equals_one_whole_image_run(tmp_path: Path, chunks: tuple[int, int, int]) -> None:
    volume = nuclei()
    path = conv_model(tmp_path / "m3.onnx", [centred_layer(volume, 1, 2)], activation="Sigmoid")
    got = run_chunked(volume, chunks, [Model(path=path, halo=2, threshold=0.4)])
    scores = whole_image_run(path, volume, 2)[0]
    assert got.shape == volume.shape[1:]
    assert 0.05 < got.mean() < 0.95
    assert_decided_equal(got, scores > 0.4, np.abs(scores - 0.4) < 1e-6)


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_classes_3d(tmp_path: Path, chunks: tuple[int, int, int]) -> None:
    volume = nuclei()
    path = conv_model(tmp_path / "c3.onnx", [centred_layer(volume, 2, 3)])
    got = run_chunked(volume, chunks, [Model(path=path, halo=1, output="classes")])
    scores = whole_image_run(path, volume, 1)
    assert set(np.unique(got)) == {1, 2}
    assert_decided_equal(got, np.argmax(scores, axis=0) + 1, np.abs(scores[1] - scores[0]) < 1e-6)


@pytest.mark.parametrize(
    ("chunks", "halo"), [((1000, 1000), 2), ((23, 31), 2), ((9, 40), 4), ((2, 3), 2)]
)
def test_image_output_of_a_two_layer_net_is_bit_identical(
    tmp_path: Path, chunks: tuple[int, int], halo: int
) -> None:
    """Two 3x3 convolutions (receptive radius 2), 4 output bands for later steps.

    Bit-identical to the whole-image run, not only close: onnxruntime's CPU
    convolution computes a pixel the same way whatever the block around it.
    """
    image = landsat()[:, 100:160, 50:119] if chunks == (2, 3) else landsat()
    rng = np.random.default_rng(5)
    first = (rng.normal(size=(8, 6, 3, 3)) / 200).astype(np.float32), np.zeros(8, np.float32)
    second = (rng.normal(size=(4, 8, 3, 3)) / 30).astype(np.float32), np.ones(4, np.float32)
    path = conv_model(tmp_path / "net.onnx", [first, second])
    step = Model(path=path, halo=halo, output="image")
    assert step.bands(6) == 4
    data = da.from_array(image, chunks=(6, *chunks))
    mapped = map_steps(data, [step], fit_steps(data, [step], None), total_halo([step], 2))
    assert mapped.shape == (4, *image.shape[1:]) and mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped.compute(), whole_image_run(path, image, halo))


def test_a_halo_below_the_receptive_field_shows_at_the_seams(tmp_path: Path) -> None:
    image = landsat()[:, :120, :120]
    rng = np.random.default_rng(6)
    first = (rng.normal(size=(4, 6, 3, 3)) / 100).astype(np.float32), np.zeros(4, np.float32)
    second = (rng.normal(size=(1, 4, 3, 3)) / 10).astype(np.float32), np.zeros(1, np.float32)
    path = conv_model(tmp_path / "net.onnx", [first, second])
    short = run_chunked(image, (40, 40), [Model(path=path, halo=1, output="image")])[0]
    reference = whole_image_run(path, image, 2)[0]
    differs = short != reference
    assert differs.any()
    seams = np.zeros(image.shape[1:], dtype=bool)
    for at in (0, 40, 80, 120):  # chunk seams and the image border (padded by 1, not 2)
        seams[max(at - 1, 0) : at + 1] = seams[:, max(at - 1, 0) : at + 1] = True
    assert not differs[~seams].any()  # only the pixels next to a seam lack context


def test_fit_steps_feed_the_model(tmp_path: Path) -> None:
    """A model after other steps gets their bands; a threshold can follow an image output."""
    from pipeline.kernels import Grayscale, Threshold

    image = landsat()[:3]
    layer = centred_layer(image[:1], 1, 7)
    path = conv_model(tmp_path / "gray.onnx", [layer], activation="Sigmoid")
    steps: list[Step] = [Grayscale(), Model(path=path, halo=1, output="image"), Threshold()]
    got = run_chunked(image, (50, 61), steps)
    assert got.dtype == bool and 0 < got.mean() < 1


# --- models with a fixed size --------------------------------------------------------------


def test_a_fixed_size_model_takes_blocks_up_to_its_size(tmp_path: Path) -> None:
    image = landsat()[:, :150, :130]
    layer = centred_layer(image, 1, 8)
    fixed = conv_model(tmp_path / "fixed.onnx", [layer], activation="Sigmoid", size=(64, 64))
    dynamic = conv_model(tmp_path / "dynamic.onnx", [layer], activation="Sigmoid")
    step = Model(path=fixed, halo=2, output="image")
    assert step.info.size == (64, 64)
    reference = whole_image_run(dynamic, image, 2)
    # 60 + 2 * 2 = 64 exactly; the edge chunks (30 and 10 wide) are padded up to 64.
    np.testing.assert_array_equal(run_chunked(image, (60, 60), [step]), reference)
    np.testing.assert_array_equal(run_chunked(image, (33, 60), [step]), reference)


def test_chunks_too_large_for_a_fixed_size_model_are_refused_before_work(tmp_path: Path) -> None:
    image = landsat()[:, :150, :130]
    fixed = conv_model(
        tmp_path / "fixed.onnx", [centred_layer(image, 1, 8)], activation="Sigmoid", size=(64, 64)
    )
    step = Model(path=fixed, halo=2)
    data = da.from_array(image, chunks=(6, 61, 60))
    with pytest.raises(InputValueError, match=r"fixed size of 64 .* set chunks <= 60"):
        fit_steps(data, [step], None)
    # A block grown by other steps' halos is refused when it comes, with the same reason.
    with pytest.raises(InputValueError, match="fixed size of 64 along spatial axis 1"):
        step.apply(np.zeros((6, 64, 70), np.uint8), None)


# --- bad models and bad images fail before any graph -------------------------------------------


def _sigmoid(path: Path, shape_in: Sequence[Any] | None, kind: int = TensorProto.FLOAT) -> Path:
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    return _save(path, nodes, [_tensor("x", shape_in, kind)], [_tensor("y", shape_in, kind)])


def test_bad_model_files_are_refused_when_the_step_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such model file"):
        Model(path=tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValidationError, match="onnxruntime cannot open it"):
        Model(path=tmp_path / "junk.onnx")

    x, y = _tensor("a", [1, 1, "H", "W"]), _tensor("b", [1, 1, "H", "W"])
    out = _tensor("y", [1, 1, "H", "W"])
    two_in = _save(
        tmp_path / "in2.onnx", [helper.make_node("Add", ["a", "b"], ["y"])], [x, y], [out]
    )
    with pytest.raises(
        ValidationError, match=r"in2.onnx has 2 inputs \(a, b\); .*exactly one input"
    ):
        Model(path=two_in)
    nodes = [helper.make_node("Identity", ["a"], ["y"]), helper.make_node("Identity", ["a"], ["z"])]
    two_out = _save(tmp_path / "out2.onnx", nodes, [x], [out, _tensor("z", [1, 1, "H", "W"])])
    with pytest.raises(ValidationError, match=r"has 2 outputs \(y, z\)"):
        Model(path=two_out)

    cases = [
        (
            _sigmoid(tmp_path / "r3.onnx", [1, 1, "W"]),
            r"rank 3\); the model step needs rank 4 or 5",
        ),
        (_sigmoid(tmp_path / "c.onnx", [1, "C", "H", "W"]), "dynamic channel count \\('C'\\)"),
        (_sigmoid(tmp_path / "n.onnx", [4, 1, "H", "W"]), "batches of 4"),
        (
            _sigmoid(tmp_path / "f64.onnx", [1, 1, "H", "W"], TensorProto.DOUBLE),
            r"tensor\(double\); the model step feeds float32",
        ),
    ]
    for path, message in cases:
        with pytest.raises(ValidationError, match=message):
            Model(path=path)


def test_parameters_must_fit_the_output_and_the_model(tmp_path: Path) -> None:
    one = _sigmoid(tmp_path / "one.onnx", [1, 1, "H", "W"])
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Model(path=one, halo=-1)
    with pytest.raises(ValidationError, match=r"channel 1 does not exist: one\.onnx has 1 output"):
        Model(path=one, channel=1)
    with pytest.raises(ValidationError, match=r"argmax of 2 to 255 channels.*use output: mask"):
        Model(path=one, output="classes")
    with pytest.raises(ValidationError, match="threshold is only for output: mask, not 'image'"):
        Model(path=one, output="image", threshold=0.2)
    with pytest.raises(ValidationError, match="Input should be 'mask', 'classes' or 'image'"):
        Model.model_validate({"path": one, "output": "labels"})


def test_image_bands_and_dimensions_are_checked_before_the_map(tmp_path: Path) -> None:
    image = landsat()
    three = conv_model(tmp_path / "rgb.onnx", [centred_layer(image[:3], 1, 9)])
    step = Model(path=three, halo=1)
    data = da.from_array(image, chunks=(6, 100, 100))
    with pytest.raises(InputValueError, match=r"rgb.onnx takes 3 band\(s\) .* the image has 6"):
        fit_steps(data, [step], None)
    with pytest.raises(InputValueError, match=r"rgb\.onnx takes 3 band"):
        Model(path=three, output="image").bands(6)
    volume = conv_model(tmp_path / "vol.onnx", [centred_layer(nuclei(), 1, 9)])
    with pytest.raises(InputValueError, match=r"vol\.onnx takes 3D images .* the image is 2D"):
        total_halo([Model(path=volume)], 2)


# --- sessions: one per process, single-threaded; the step pickles ------------------------------


def test_one_single_threaded_session_per_file_reopened_when_it_changes(tmp_path: Path) -> None:
    path = _sigmoid(tmp_path / "s.onnx", [1, 1, "H", "W"])
    step = Model(path=path)
    first = model_session(step.path)
    assert model_session(step.path) is first
    assert first.get_session_options().intra_op_num_threads == 1
    copy = pickle.loads(pickle.dumps(step))
    assert copy == step and copy.info == step.info and copy.describe() == step.describe()
    assert copy.describe().startswith(f"model(path='{path}', halo=16, output='mask'")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = model_session(step.path)
    assert second is not first and model_session(step.path) is second
    assert str(path) in open_sessions()


@pytest.mark.cluster
def test_workflow_with_a_model_on_worker_processes(cluster_client: Any, tmp_path: Path) -> None:
    image = landsat()
    path = conv_model(tmp_path / "m.onnx", [centred_layer(image, 1, 0)], activation="Sigmoid")
    flow = Workflow(
        source=str(sample_path("L7_ETMs.tif")),
        steps=[{"model": {"path": str(path), "halo": 1, "output": "mask"}}, {"label": {}}],
        output=str(tmp_path / "labels.zarr"),
        chunks=[100, 90],
    )
    result = flow.run(cluster_client)
    mask = whole_image_run(path, image, 1)[0] > 0.5
    reference, count = ndimage.label(mask)
    assert result.num == count
    assert_same_partition(result.labels.compute(), reference)
    sessions = cluster_client.run(open_sessions)  # one per worker process, opened there
    assert len(sessions) == 2 and all(str(path) in keys for keys in sessions.values())
