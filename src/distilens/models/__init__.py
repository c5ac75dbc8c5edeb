"""Models: the architecture zoo, safe save/load, and layer taps."""

from .io import load_model, save_model, state_dict_digest
from .tap import FeatureTap, get_layer, last_spatial_layer
from .soft_tree import SoftDecisionTree
from .zoo import CNN, MLP, MODELS, build_model, count_params

__all__ = [
    "MODELS",
    "build_model",
    "count_params",
    "save_model",
    "load_model",
    "state_dict_digest",
    "FeatureTap",
    "get_layer",
    "last_spatial_layer",
    "CNN",
    "MLP",
    "SoftDecisionTree",
]
