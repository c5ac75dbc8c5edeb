"""The extra models a run trains so that its explanations can be judged: the plain-KD control and the reference points.

* ``plain_kd`` — in a run whose losses include an explanation-guided one (an objective that
  reads the teacher's maps: ``gradcam_align``, ``input_gradient_align``), the same student
  distilled with the same losses minus those, so the report can say what the extra loss
  bought beyond plain KD.
* ``teacher_reseed`` — asked for with ``explain.references: [teacher_reseed]``: a second
  teacher of the same architecture and training, from another seed (:func:`reseed`). Two
  teachers do not agree perfectly either: their agreement is the ceiling of the scale. Only
  when the run trains its teacher (else ``explain.reference_teacher`` names its weights).
* ``init`` — ``explain.references: [init]``: the student at its initial weights, the floor.

The pipeline trains them with its own helpers; this module decides what they are.

Example:
    >>> check_references(cfg)                       # before any training: one-line ConfigError
    >>> plain = plain_kd_specs(loss_specs(cfg))     # None when no loss is explanation-guided
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .distill import build_objectives
from .errors import ConfigError

__all__ = ["RESEED_OFFSET", "reseed", "loss_specs", "is_guided", "plain_kd_specs", "check_references"]

#: The second teacher's seed is the run's plus this (far from the run's other seeds: seed + 1 is the student's).
RESEED_OFFSET = 1000
#: What an objective reads when it aligns the student's explanations with the teacher's.
_GUIDED_NEED = "teacher_maps"


def reseed(seed: int) -> int:
    """The seed of the second teacher (``teacher_reseed``) of a run with ``seed``."""
    return seed + RESEED_OFFSET


def loss_specs(cfg: RunConfig) -> list[dict[str, Any]]:
    """``distill.losses`` as the ``[{name, weight, **options}]`` list that ``build_objectives`` takes (an unset weight is left out)."""
    return [{"name": l.name, **({"weight": l.weight} if l.weight is not None else {}), **l.options()} for l in cfg.distill.losses]


def is_guided(spec: dict[str, Any]) -> bool:
    """Whether the loss ``spec`` aligns explanations (its objective reads the teacher's maps)."""
    return _GUIDED_NEED in build_objectives([spec])[0].needs


def plain_kd_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The losses without the explanation-guided ones, or ``None`` when there are none (or nothing would be left).

    Example:
        >>> plain_kd_specs([{"name": "kd"}, {"name": "gradcam_align", "weight": 0.1}])
        [{'name': 'kd'}]
    """
    plain = [s for s in specs if not is_guided(s)]
    return plain if plain and len(plain) < len(specs) else None


def check_references(cfg: RunConfig) -> None:
    """Refuse, before any training, a ``teacher_reseed`` that cannot be made.

    Raises:
        ConfigError: ``teacher_reseed`` with a teacher loaded from ``teacher.weights`` (its
            training is not known here) and no ``explain.reference_teacher``; or
            ``explain.reference_teacher`` without ``teacher_reseed`` in the references; or a
            second teacher that would not be one (a frozen encoder's head, fitted to the same
            optimum whatever the seed) or could not be compared (its own tokens against a
            word-level student).
    """
    refs, given = cfg.explain.references, cfg.explain.reference_teacher
    if "teacher_reseed" in refs and cfg.teacher.weights and not given:
        raise ConfigError(
            "explain.references: teacher_reseed trains a second teacher as this run trains its own, but the teacher is "
            "loaded from teacher.weights; give the second teacher's weights as explain.reference_teacher, or drop teacher_reseed"
        )
    if given and "teacher_reseed" not in refs:
        raise ConfigError("explain.reference_teacher is set but explain.references lacks teacher_reseed; add it or unset the weights")
    if "teacher_reseed" not in refs or given:
        return
    own_tokens = cfg.teacher.arch == "minilm" or str(cfg.teacher.weights or "").startswith("hf:")
    if cfg.teacher.arch == "minilm" and cfg.teacher.args.get("finetune", "head") == "head":
        raise ConfigError(
            "explain.references: teacher_reseed with a frozen-encoder teacher (minilm, finetune: head) would fit the same "
            "convex head on the same features: the same teacher again, not a second one; use finetune: last_k or all, "
            "or drop teacher_reseed"
        )
    if cfg.data.text is not None and own_tokens and cfg.data.tokenizer == "word":
        raise ConfigError(
            "explain.references: teacher_reseed reads the teacher's tokens while the student reads words "
            "(data.tokenizer: word), and the second teacher's scores cannot be matched to words yet; "
            "set data.tokenizer: teacher, or drop teacher_reseed"
        )
