"""Models: the architecture zoo, safe save/load, and layer taps."""

from .io import load_model, load_run_model, save_model, state_dict_digest
from .tap import FeatureTap, get_layer, last_spatial_layer
from .soft_tree import SoftDecisionTree
from .zoo import CNN, MLP, MODELS, build_model, count_params
from .convnets import MobileNet, ResNet, describe_models  # registers resnet, mobilenet
from .text import EmbeddingBagClassifier, TextCNN, TinyTransformer  # registers the text models
from .foreign import build_architecture, build_for_data, check_teacher, load_teacher
from .hf import HFTextClassifier, MiniLMClassifier, load_hf_teacher  # registers hf, minilm

__all__ = [
    "MODELS",
    "build_model",
    "count_params",
    "save_model",
    "load_model",
    "load_run_model",
    "state_dict_digest",
    "FeatureTap",
    "get_layer",
    "last_spatial_layer",
    "CNN",
    "MLP",
    "SoftDecisionTree",
    "ResNet",
    "MobileNet",
    "describe_models",
    "EmbeddingBagClassifier",
    "TextCNN",
    "TinyTransformer",
    "load_teacher",
    "check_teacher",
    "build_for_data",
    "build_architecture",
    "HFTextClassifier",
    "MiniLMClassifier",
    "load_hf_teacher",
]
