"""What a run does differently on text data: defaults, the teacher's tokenizer, saved tokenizers.

The pipeline stays the one of images and tables (same trainer, soft-label cache and
evaluation, on token ids); this module holds the few text-only decisions so that
``pipeline.py`` calls one function for each.

Example:
    >>> cfg = apply_text_defaults(load_config(None, ["data.source=csv:reviews.csv", "data.text=review",
    ...                                               "data.target=label"]))
    >>> cfg.teacher.arch, cfg.student.arch
    ('tiny_transformer', 'embedding_bag')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .data.bundle import DataBundle
from .data.tokenize import TextTokenizer
from .errors import DataError
from .models.hf import minilm_tokenizer_path
from .models.text import TEXT_MODELS

if TYPE_CHECKING:
    from .explain import ExplainInputs

__all__ = [
    "TEXT_TEACHER",
    "TEXT_STUDENT",
    "apply_text_defaults",
    "is_text",
    "teacher_tokenizer",
    "save_tokenizers",
    "load_run_tokenizer",
    "text_explain_inputs",
]

#: The teacher trained from scratch on text when the config names none (BENCHMARKS.md, "Text"):
#: d=256 with 4 layers costs 5.7x the CPU time per step of d=128 with 2 (2.2 s vs 0.38 s per
#: batch of 64 texts of 63 tokens, one thread): over an hour for 15 epochs of 9k texts.
TEXT_TEACHER: dict[str, Any] = {"arch": "tiny_transformer", "args": {"dim": 128, "layers": 2, "heads": 4}}
#: The student on text when the config names none (BENCHMARKS.md, "Text").
TEXT_STUDENT: dict[str, Any] = {"arch": "embedding_bag", "args": {"dim": 64}}


def is_text(cfg: RunConfig) -> bool:
    """Whether ``cfg`` describes a text data set (``data.text`` is set)."""
    return cfg.data.text is not None


def apply_text_defaults(cfg: RunConfig) -> RunConfig:
    """``cfg`` with text defaults where the user left the image defaults in place.

    On text data, a teacher or student whose ``arch`` was not set becomes
    :data:`TEXT_TEACHER` / :data:`TEXT_STUDENT`; a text architecture named without ``args``
    gets its own defaults instead of the image ``width``. Anything set explicitly is kept.
    Other configs are returned unchanged.
    """
    if not is_text(cfg):
        return cfg
    update: dict[str, Any] = {}
    for role, default in (("teacher", TEXT_TEACHER), ("student", TEXT_STUDENT)):
        section = getattr(cfg, role)
        given = section.model_fields_set
        if cfg.teacher.weights and role == "teacher":
            continue  # a loaded teacher brings its own architecture
        if "arch" not in given:
            changes = {"arch": default["arch"]}
            if "args" not in given:
                changes["args"] = dict(default["args"])
        elif "args" not in given and section.arch in (*TEXT_MODELS, "minilm"):
            changes = {"args": {}}  # its own defaults, not the image default width
        else:
            continue
        new = section.model_copy(update=changes)
        new.__pydantic_fields_set__ = set(given)  # still "not set by the user" on the next call
        update[role] = new
    return cfg.model_copy(update=update) if update else cfg


def teacher_tokenizer(cfg: RunConfig) -> TextTokenizer | None:
    """The tokenizer a loaded teacher brings, or ``None`` (zoo teachers use the data's).

    ``teacher.weights: hf:PATH`` reads ``PATH/tokenizer.json`` (a Hugging Face model folder);
    ``teacher.arch: minilm`` brings the packaged MiniLM's WordPiece tokenizer.
    """
    weights = cfg.teacher.weights or ""
    if is_text(cfg) and not weights and cfg.teacher.arch == "minilm":
        return TextTokenizer.from_file(minilm_tokenizer_path())
    if not is_text(cfg) or not weights.startswith("hf:"):
        return None
    folder = Path(weights[3:])
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"teacher.weights '{weights}': '{path}' not found; a Hugging Face model folder holds tokenizer.json")
    return TextTokenizer.from_file(path)


def save_tokenizers(bundle: DataBundle, folder: Path) -> None:
    """tokenizer.json (the models' tokenizer) and, when the teacher's differs, teacher_tokenizer.json."""
    if bundle.tokenizer is not None:
        bundle.tokenizer.save(folder / "tokenizer.json")
    if bundle.teacher_tokenizer is not None:
        bundle.teacher_tokenizer.save(folder / "teacher_tokenizer.json")


def load_run_tokenizer(run_dir: Path, name: str = "tokenizer.json") -> TextTokenizer:
    """A tokenizer saved in a run folder by :func:`save_tokenizers`."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise DataError(f"'{path}' not found; the run folder of a text model holds the tokenizer it was trained with")
    return TextTokenizer.from_file(path)


def text_explain_inputs(bundle: DataBundle) -> "ExplainInputs":
    """The test texts as teacher and student read them (each through its own tokenizer), meeting on words.

    Each model gets its own token ids of the same texts (the teacher's tokenizer where it
    has one), special tokens kept in place; their scores are compared word by word of the
    raw texts (:class:`~distilens.explain.WordAligner`).
    """
    from .explain import ExplainInputs

    texts = bundle.texts["test"]
    tok = bundle.tokenizer
    teacher_tok = bundle.teacher_tokenizer or tok
    student_enc = tok.encode(texts, bundle.spec.shape[0], pad_to_max=True)
    teacher_enc = teacher_tok.encode(texts, (bundle.teacher_spec or bundle.spec).shape[0], pad_to_max=True)
    return ExplainInputs.from_texts(
        texts, bundle.test.targets, teacher_enc, student_enc, class_names=bundle.spec.class_names
    )
