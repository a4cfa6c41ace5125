"""Segmentation steps: each declares its halo, its global fit and its per-chunk work."""

from ._base import STEPS, Step, register, step_class
from ._components import Label
from ._preprocess import Expression, Median, Normalize, Window
from ._smooth import Gaussian
from ._threshold import Threshold

__all__ = [
    "STEPS",
    "Expression",
    "Gaussian",
    "Label",
    "Median",
    "Normalize",
    "Step",
    "Threshold",
    "Window",
    "register",
    "step_class",
]
