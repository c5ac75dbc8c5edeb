"""Explanations for every kind of data: one registry of attribution methods, one verb, one
comparison of teacher and student, one explain stage.

* :data:`EXPLAINERS` (:mod:`.explainers`): each method declares the input kinds it explains
  ("image", "table", "text"); :func:`attribute` explains a model on images, table rows or a
  text model's token ids.
* :func:`compare` explains teacher and student for the same class and scores how their maps
  agree once an aligner (:mod:`.align`: pixels, features, words) has brought them onto
  common units — across two tokenizers for text.
* :func:`explain_models` adds faithfulness (deletion/insertion), localisation and the sanity
  check; :func:`choose_methods` and :func:`explain_stage` are the run's explain stage, fed
  an :class:`ExplainInputs` built by the caller.
"""

from . import gradients as _gradients  # noqa: F401  (registers saliency, input_x_gradient, IG, deeplift, smoothgrad)
from . import layers as _layers  # noqa: F401  (registers gradcam, attention, neuron_importance)
from . import perturbation as _perturbation  # noqa: F401  (registers occlusion, kernel_shap, lime)
from . import tokens as _tokens  # noqa: F401  (registers the token-id methods for text)
from .agreement import agreement_scores, cosine, kendall, pearson, spearman, ssim, summarize, topk_iou
from .align import Aligner, FeatureAligner, PixelAligner, WordAligner, default_aligner
from .attribute import attribute, predicted_class
from .compare import compare
from .comparison import Aligned, Comparison
from .explainers import EXPLAINERS, KINDS, Explainer, Kind, explainers_for, get_explainer, input_kind, register_explainer
from .faithfulness import deletion_insertion
from .hygiene import eval_mode, no_hook_leak, seeded
from .inputs import ExplainInputs, ModelInputs
from .localization import mass_in_mask, pointing_game
from .sanity import cascading_randomization
from .methods import choose_methods
from .stage import explain_models, explain_stage, stratified_indices
from .teacher_memo import TeacherMemo
from .text_payload import TEXT_PAYLOAD, save_text_explanations, text_payload
from .words import WORD_RE, special_token_mask, sum_into_words, token_to_word, word_agreement, word_scores, words

__all__ = [
    "EXPLAINERS",
    "KINDS",
    "Kind",
    "Explainer",
    "register_explainer",
    "get_explainer",
    "explainers_for",
    "input_kind",
    "attribute",
    "predicted_class",
    "eval_mode",
    "no_hook_leak",
    "seeded",
    "compare",
    "Comparison",
    "Aligned",
    "Aligner",
    "PixelAligner",
    "FeatureAligner",
    "WordAligner",
    "default_aligner",
    "ExplainInputs",
    "ModelInputs",
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
    "stratified_indices",
    "choose_methods",
    "explain_models",
    "explain_stage",
    "TeacherMemo",
    "TEXT_PAYLOAD",
    "text_payload",
    "save_text_explanations",
    "WORD_RE",
    "words",
    "token_to_word",
    "sum_into_words",
    "word_scores",
    "special_token_mask",
    "word_agreement",
]
