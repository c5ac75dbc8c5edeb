"""Text (L,): token ids of a CSV/TSV/JSONL text column; explained per token, compared per word.

The run is the one of images and tables (same trainer, soft-label cache and evaluation, on
token ids); this module holds what text decides differently: default architectures, the
tokenizer a teacher brings (``bundle.teacher_view``), the saved tokenizers, example token
ids and word-level explanations.

Example:
    >>> cfg = TextModality().with_defaults(load_config(None, ["data.source=csv:reviews.csv", "data.text=review",
    ...                                                        "data.target=label"]))
    >>> cfg.teacher.arch, cfg.student.arch
    ('tiny_transformer', 'embedding_bag')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import DataConfig, RunConfig
from ..data import DataBundle, InputSpec
from ..data import Preprocessor
from ..data.text import TOKENIZER_FILE
from ..data.tokenize import TextTokenizer
from ..errors import DataError
from ..explain import ExplainInputs, attribute, word_scores
from ..models.hf import minilm_tokenizer_path
from ..models.text import TEXT_MODELS
from ..reference import tfidf_logreg
from .base import MODALITIES, Modality, read_data

__all__ = ["TextModality", "TEXT_TEACHER", "TEXT_STUDENT", "TEACHER_TOKENIZER", "teacher_tokenizer"]

#: The teacher trained from scratch on text when the config names none (BENCHMARKS.md, "Text"):
#: d=256 with 4 layers costs 5.7x the CPU time per step of d=128 with 2 (2.2 s vs 0.38 s per
#: batch of 64 texts of 63 tokens, one thread): over an hour for 15 epochs of 9k texts.
TEXT_TEACHER: dict[str, Any] = {"arch": "tiny_transformer", "args": {"dim": 128, "layers": 2, "heads": 4}}
#: The student on text when the config names none (BENCHMARKS.md, "Text").
TEXT_STUDENT: dict[str, Any] = {"arch": "embedding_bag", "args": {"dim": 64}}
#: The teacher's tokenizer in a run folder, where it tokenises differently from the student.
TEACHER_TOKENIZER = "teacher_tokenizer.json"


class TextModality(Modality):
    """Texts as right-padded token ids; a teacher may read its own ids (``bundle.teacher_view``)."""

    kind = "text"
    align = "words"

    def claims(self, data: DataConfig) -> bool:
        return data.text is not None

    def with_defaults(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with text defaults where the user left the image defaults in place.

        A teacher or student whose ``arch`` was not set becomes :data:`TEXT_TEACHER` /
        :data:`TEXT_STUDENT`; a text architecture named without ``args`` gets its own
        defaults instead of the image ``width``. Anything set explicitly is kept.
        """
        if not self.claims(cfg.data):
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

    def load(self, cfg: RunConfig) -> DataBundle:
        return read_data(cfg, teacher_tokenizer=teacher_tokenizer(cfg))

    # -- preprocessing -----------------------------------------------------------------

    def save_preprocessing(self, bundle: DataBundle, folder: Path) -> None:
        """preprocessing.json and tokenizer.json; teacher_tokenizer.json where the teacher's differs."""
        super().save_preprocessing(bundle, folder)
        if bundle.teacher_view is not None:
            bundle.teacher_view.tokenizer.save(folder / TEACHER_TOKENIZER)

    def same_preprocessing(self, saved: Preprocessor, fitted: Preprocessor) -> bool:
        """The same column and length, and the same vocabulary (tokenizer.json)."""
        return super().same_preprocessing(saved, fitted) and saved.tokenizer.fingerprint() == fitted.tokenizer.fingerprint()

    # -- evaluation --------------------------------------------------------------------

    def reference(self, bundle: DataBundle, *, seed: int = 0) -> dict[str, Any] | None:
        """TF-IDF (word 1–2 grams) + logistic regression on the raw texts of the same split
        (:func:`distilens.reference.tfidf_logreg`): seconds of work, the floor a text student
        must clear to be worth distilling."""
        texts = bundle.texts
        if texts is None or not all(texts.get(s) for s in ("train", "val", "test")):
            return None
        return tfidf_logreg(texts["train"], bundle.train.targets, texts["val"], bundle.val.targets,
                            texts["test"], bundle.test.targets, seed=seed)

    # -- models ------------------------------------------------------------------------

    def example_inputs(
        self, spec: InputSpec, batch: int = 1, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> Tensor:
        """Texts of the full length L: one non-pad token id everywhere, or seeded random ids."""
        if generator is not None:
            return torch.randint(0, max(spec.vocab_size, 1), (batch, *spec.shape), generator=generator).to(device)
        return torch.full((batch, *spec.shape), (spec.pad_id + 1) % max(spec.vocab_size, 2), dtype=torch.long, device=device)

    # -- explanations ------------------------------------------------------------------

    def explain_inputs(self, bundle: DataBundle) -> ExplainInputs:
        """The test texts as teacher and student read them (each through its own tokenizer), meeting on words.

        Each model gets its own token ids of the same texts (the teacher's tokenizer where
        it has one), special tokens kept in place; their scores are compared word by word of
        the raw texts (:class:`~distilens.explain.WordAligner`).
        """
        texts = bundle.texts["test"]
        seen_by_teacher = bundle.for_teacher()
        student_enc = bundle.tokenizer.encode(texts, bundle.spec.shape[0], pad_to_max=True)
        teacher_enc = seen_by_teacher.tokenizer.encode(texts, seen_by_teacher.spec.shape[0], pad_to_max=True)
        return ExplainInputs.from_texts(texts, bundle.test.targets, teacher_enc, student_enc, class_names=bundle.spec.class_names)

    # -- prediction --------------------------------------------------------------------

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        """Per text, ``[(word, score), ...]``: token scores summed per word, in text order.

        ``inputs`` are the :class:`~distilens.data.text.TextInputs` the batch was read from:
        the batch's own encoding gives the offsets (no second tokenisation).
        """
        texts = inputs.texts[start : start + len(x)]
        enc = inputs.encoded(start, start + len(x))
        scores = attribute(model, x, target, method or "integrated_gradients").cpu()
        out = []
        for text, off, row in zip(texts, enc.offsets, scores):
            spans, values = word_scores(text, off, row[: len(off)])
            out.append([(text[a:b], float(v)) for (a, b), v in zip(spans, values)])
        return out


def teacher_tokenizer(cfg: RunConfig) -> TextTokenizer | None:
    """The tokenizer a loaded teacher brings, or ``None`` (zoo teachers use the data's).

    ``teacher.weights: hf:PATH`` reads ``PATH/tokenizer.json`` (a Hugging Face model folder);
    ``teacher.arch: minilm`` brings the packaged MiniLM's WordPiece tokenizer.
    """
    weights = cfg.teacher.weights or ""
    if not weights and cfg.teacher.arch == "minilm":
        return TextTokenizer.from_file(minilm_tokenizer_path())
    if not weights.startswith("hf:"):
        return None
    path = Path(weights[3:]) / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(f"teacher.weights '{weights}': '{path}' not found; a Hugging Face model folder holds tokenizer.json")
    return TextTokenizer.from_file(path)


MODALITIES.register("text")(TextModality())
