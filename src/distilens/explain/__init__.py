"""Explanations: attribution methods, teacher–student comparison, agreement scores."""

from .agreement import agreement_scores, cosine, spearman, summarize, topk_iou
from .attribute import EXPLAINERS, attribute, predicted_class
from .compare import Comparison, compare
from .faithfulness import deletion_insertion

__all__ = [
    "EXPLAINERS",
    "attribute",
    "predicted_class",
    "compare",
    "Comparison",
    "agreement_scores",
    "spearman",
    "topk_iou",
    "cosine",
    "summarize",
    "deletion_insertion",
]
