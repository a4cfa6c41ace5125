"""Segmentation steps: each declares its halo, its global fit and its per-chunk work."""

from ._base import SEGMENTS, STEPS, Step, register, step_class
from ._classes import MultiOtsu
from ._classifier import PixelClassifier
from ._components import Label
from ._custom import step
from ._grayscale import Grayscale
from ._holes import FillHoles
from ._kmeans import KMeans
from ._model import Model
from ._postprocess import ClearBorder, KeepLargest, RemoveSmall
from ._preprocess import Expression, Median, Normalize, Window
from ._smooth import Gaussian
from ._superpixels import Felzenszwalb, Slic
from ._threshold import Threshold
from ._watershed import Watershed

__all__ = [
    "SEGMENTS",
    "STEPS",
    "ClearBorder",
    "Expression",
    "Felzenszwalb",
    "FillHoles",
    "Gaussian",
    "Grayscale",
    "KMeans",
    "KeepLargest",
    "Label",
    "Median",
    "Model",
    "MultiOtsu",
    "Normalize",
    "PixelClassifier",
    "RemoveSmall",
    "Slic",
    "Step",
    "Threshold",
    "Watershed",
    "Window",
    "register",
    "step",
    "step_class",
]
