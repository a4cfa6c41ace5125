"""Bad input fails before any chunk is computed, naming the argument and the fix."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import pipeline


def _explodes(block: np.ndarray) -> np.ndarray:
    raise AssertionError("a chunk was computed although the input was invalid")


def _never_computed(shape: tuple[int, ...], dtype: object = bool) -> da.Array:
    return da.zeros(shape, chunks=4, dtype=dtype).map_blocks(_explodes, dtype=dtype)


@pytest.mark.parametrize(
    ("mask", "kwargs", "error", "message"),
    [
        (_never_computed((0, 5)), {}, pipeline.InputValueError, r"shape \(0, 5\).*no pixels"),
        (_never_computed((2, 2, 2, 2)), {}, pipeline.InputValueError, "2D or 3D; got a 4D"),
        (_never_computed((5,)), {}, pipeline.InputValueError, "2D or 3D; got a 1D"),
        (
            _never_computed((8, 8), np.complex64),
            {},
            pipeline.UnsupportedInputError,
            "dtype complex64",
        ),
        (
            _never_computed((8, 8)),
            {"structure": np.ones((3, 3, 3))},
            pipeline.InputValueError,
            r"structure must have shape \(3, 3\) for a 2D mask; got shape \(3, 3, 3\)",
        ),
        (
            _never_computed((8, 8)),
            {"structure": [[0, 1, 0], [0, 1, 1], [0, 0, 0]]},
            pipeline.InputValueError,
            "centrosymmetric",
        ),
        (
            _never_computed((8, 8)),
            {"structure": np.ones((3, 3)), "connectivity": 1},
            pipeline.InputValueError,
            "either structure or connectivity",
        ),
        (
            _never_computed((8, 8)),
            {"connectivity": 3},
            pipeline.InputValueError,
            "connectivity must be an integer from 1 to 2 for a 2D mask; got 3",
        ),
        (
            _never_computed((8, 8, 8)),
            {"connectivity": 0},
            pipeline.InputValueError,
            "from 1 to 3",
        ),
        (
            _never_computed((8, 8)),
            {"by_value": "yes"},
            pipeline.InputValueError,
            "by_value must be True or False",
        ),
        ([[1, 0], [0, 1]], {}, pipeline.UnsupportedInputError, "dask or numpy array; got list"),
        (
            np.array([[1.0, np.nan], [0.0, 1.0]]),
            {},
            pipeline.InputValueError,
            "contains NaN",
        ),
    ],
)
def test_bad_input_is_refused_before_any_work(
    mask: object, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        pipeline.label(mask, **kwargs)


def test_errors_are_pipeline_errors_and_builtins() -> None:
    with pytest.raises(ValueError):
        pipeline.label(_never_computed((2, 2, 2, 2)))
    with pytest.raises(TypeError):
        pipeline.label(_never_computed((8, 8), np.complex64))
    with pytest.raises(pipeline.PipelineError):
        pipeline.label(np.zeros((0, 3)))


def test_unknown_chunk_sizes_are_refused() -> None:
    values = da.from_array(np.arange(16), chunks=4)
    mask = values[values > 3][:, None]  # boolean indexing leaves chunk sizes unknown
    with pytest.raises(pipeline.InputValueError, match=r"compute_chunk_sizes\(\)"):
        pipeline.label(mask)


def test_nan_in_a_lazy_mask_names_the_chunk() -> None:
    values = np.zeros((8, 8), dtype=np.float32)
    values[6, 1] = np.nan
    with pytest.raises(pipeline.InputValueError, match=r"chunk \(1, 0\) contains NaN"):
        pipeline.label(da.from_array(values, chunks=4))
