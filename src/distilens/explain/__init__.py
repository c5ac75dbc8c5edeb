"""Explanations: attribution methods, teacher–student comparison, agreement, faithfulness,
localisation and sanity checks, and the pipeline's explain stage; for text models, token
attributions and word-level agreement (:mod:`.text`, :mod:`.text_compare`)."""

from . import layers as _layers  # noqa: F401  (registers gradcam, attention, neuron_importance)
from . import perturbation as _perturbation  # noqa: F401  (registers occlusion, kernel_shap, lime)
from .agreement import agreement_scores, cosine, kendall, pearson, spearman, ssim, summarize, topk_iou
from .attribute import EXPLAINERS, attribute, predicted_class
from .compare import Comparison, compare
from .faithfulness import deletion_insertion
from .localization import mass_in_mask, pointing_game
from .sanity import cascading_randomization
from .stage import explain_models
from .text import TEXT_EXPLAINERS, attribute_text, token_to_word, word_scores, words
from .text_compare import explain_text_models, save_text_explanations, word_agreement

__all__ = [
    "EXPLAINERS",
    "attribute",
    "predicted_class",
    "compare",
    "Comparison",
    "agreement_scores",
    "spearman",
    "kendall",
    "pearson",
    "topk_iou",
    "cosine",
    "ssim",
    "summarize",
    "deletion_insertion",
    "mass_in_mask",
    "pointing_game",
    "cascading_randomization",
    "explain_models",
    "TEXT_EXPLAINERS",
    "attribute_text",
    "words",
    "token_to_word",
    "word_scores",
    "word_agreement",
    "explain_text_models",
    "save_text_explanations",
]
