"""Segmentation steps: each declares its halo, its global fit and its per-chunk work."""

from ._base import SEGMENTS, STEPS, Grid, Step, register, step_class
from ._classes import MultiOtsu
from ._classifier import PixelClassifier
from ._components import Label
from ._custom import step
from ._edges import Canny, Edges, Invert
from ._grayscale import Grayscale
from ._grow import RegionGrow
from ._holes import FillHoles
from ._kmeans import KMeans
from ._model import Model
from ._morphology import Closing, Opening
from ._nodata import MaskNodata
from ._postprocess import ClearBorder, KeepLargest, RemoveSmall
from ._preprocess import Expression, Median, Normalize, Window
from ._smooth import Gaussian
from ._superpixels import Felzenszwalb, Slic
from ._threshold import Threshold
from ._units import Length, Size
from ._watershed import Watershed

__all__ = [
    "SEGMENTS",
    "STEPS",
    "Canny",
    "ClearBorder",
    "Closing",
    "Edges",
    "Expression",
    "Felzenszwalb",
    "FillHoles",
    "Gaussian",
    "Grayscale",
    "Grid",
    "Invert",
    "KMeans",
    "KeepLargest",
    "Label",
    "Length",
    "MaskNodata",
    "Median",
    "Model",
    "MultiOtsu",
    "Normalize",
    "Opening",
    "PixelClassifier",
    "RegionGrow",
    "RemoveSmall",
    "Size",
    "Slic",
    "Step",
    "Threshold",
    "Watershed",
    "Window",
    "register",
    "step",
    "step_class",
]
