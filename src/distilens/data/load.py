"""Where data comes from: ``data.source`` to a loaded bundle, a run folder to its preprocessing.

Sources (``builtin:NAME``, ``imagefolder:PATH``, ``csv:PATH``, and ``csv:PATH`` with
``data.text`` for text) each live in their own module; this one reads a typed
:class:`~distilens.config.DataConfig` and calls the right one.

Example:
    >>> bundle = load_data(DataConfig(source="builtin:wine"), seed=0)
    >>> pre = load_preprocessing("runs/wine", bundle.spec)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from ..config import DataConfig
from ..errors import ConfigError, DataError
from ..registry import Registry
from .augment import parse_augment
from .builtin import load_builtin
from .bundle import DataBundle, InputSpec
from .image_io import ImagePreprocessor
from .imagefolder import load_imagefolder
from .preprocessing import PREPROCESSING_FILE, Preprocessor, read_preprocessing
from .table import TablePreprocessor, load_csv
from .text import TextPreprocessor, load_text
from .tokenize import TextTokenizer

__all__ = ["load_data", "load_dataset", "load_preprocessing", "preprocessing_for", "PREPROCESSORS", "SOURCES"]

#: The preprocessor class of each input kind (:attr:`InputSpec.kind`).
PREPROCESSORS: Registry[type[Any]] = Registry("preprocessing kind")
PREPROCESSORS.register("image")(ImagePreprocessor)
PREPROCESSORS.register("table")(TablePreprocessor)
PREPROCESSORS.register("text")(TextPreprocessor)

_Source = Callable[[str, DataConfig, int, "TextTokenizer | None"], DataBundle]
#: ``data.source`` kinds: ``KIND:LOCATION`` → ``load(location, cfg, seed, teacher_tokenizer)``.
SOURCES: Registry[_Source] = Registry("data source")


@SOURCES.register("builtin")
def _builtin(name: str, cfg: DataConfig, seed: int, teacher_tokenizer: TextTokenizer | None) -> DataBundle:
    return load_builtin(name, seed=seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, root=cfg.root)


@SOURCES.register("imagefolder")
def _imagefolder(root: str, cfg: DataConfig, seed: int, teacher_tokenizer: TextTokenizer | None) -> DataBundle:
    return load_imagefolder(
        root, seed=seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, image_size=cfg.image_size,
        channels=cfg.channels, skip_bad_files=cfg.skip_bad_files, lazy=cfg.lazy, num_workers=cfg.num_workers,
        max_bytes=cfg.max_memory_bytes,
    )


@SOURCES.register("csv")
def _csv(path: str, cfg: DataConfig, seed: int, teacher_tokenizer: TextTokenizer | None) -> DataBundle:
    """A table, or with ``data.text`` set a text data set (.csv, .tsv or .jsonl)."""
    if cfg.text is not None:
        return load_text(
            path, text=cfg.text, target=cfg.target, seed=seed, val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction, max_length=cfg.max_length, tokenizer=cfg.tokenizer,
            max_vocab=cfg.max_vocab, min_freq=cfg.min_freq, teacher_tokenizer=teacher_tokenizer,
            split_column=cfg.split_column, test_source=_test_file(cfg),
        )
    if path.lower().endswith(".jsonl"):
        raise DataError(f"data.source 'csv:{path}': .jsonl files are read as text data; set data.text to the text field")
    return load_csv(path, target=cfg.target, seed=seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                    split_column=cfg.split_column, test_source=_test_file(cfg))


def _test_file(cfg: DataConfig) -> str | None:
    """The path of ``data.test_source`` (``csv:PATH``), or ``None``."""
    return cfg.test_source.removeprefix("csv:") if cfg.test_source is not None else None


def load_data(cfg: DataConfig, *, seed: int, teacher_tokenizer: TextTokenizer | None = None) -> DataBundle:
    """Load ``cfg.source`` into seeded, stratified train/val/test splits with fitted preprocessing.

    Every source splits by sample indices first (:mod:`distilens.data.split`), then fits its
    preprocessing on the training split only: normalisation per channel (images) or per
    feature (tables) (:mod:`distilens.data.normalise`), imputation and one-hot columns
    (CSV tables), the vocabulary (text). ``bundle.split_info`` says how the splits were made.
    ``data.augment`` is checked here (its ops and options, and that the data are images);
    the trainer applies it (:func:`distilens.distill.fit`).

    Args:
        cfg: The ``data`` section of the run config.
        seed: Seeds the split (and procedurally drawn built-in sets), unless
            ``cfg.split_seed`` is set (seeds that share one teacher keep its split).
        teacher_tokenizer: Text only: the tokenizer a loaded teacher brings, so that the
            teacher reads its own token ids (``bundle.teacher_view``).

    Returns:
        A :class:`DataBundle`; ``bundle.preprocessing`` is the fitted :class:`Preprocessor`.

    Raises:
        DataError: an unknown source kind, or data that cannot be read or split.
        ConfigError: ``data.augment`` names an unknown op or option, or the data are not images.

    Example:
        >>> load_data(DataConfig(source="builtin:digits"), seed=0).spec.shape
        (1, 8, 8)
    """
    scheme, _, location = cfg.source.partition(":")
    if not location:
        scheme, location = "builtin", scheme
    if scheme not in SOURCES:
        raise DataError(
            f"data.source '{cfg.source}': unknown source kind '{scheme}'; use builtin:NAME, imagefolder:PATH or csv:PATH"
        )
    if cfg.root is not None and scheme != "builtin":
        raise ConfigError(f"data.root applies to built-in data sets read from files (builtin:fashion_mnist), not to {cfg.source}")
    augment = parse_augment(cfg.augment)  # checked before the data is read
    split_seed = seed if cfg.split_seed is None else cfg.split_seed  # run --seeds --same-teacher keeps the teacher's split
    bundle = SOURCES.get(scheme)(location, cfg, split_seed, teacher_tokenizer)
    if augment.ops and bundle.spec.kind != "image":
        raise ConfigError(f"data.augment works on images; {cfg.source} is {bundle.spec.kind} data (remove data.augment)")
    return bundle


def load_dataset(source: str = "builtin:digits", *, seed: int = 0, **options: Any) -> DataBundle:
    """Load a data set from Python: :func:`load_data` with the ``data`` config keys as keywords.

    Args:
        source: ``builtin:NAME`` (``distilens list datasets``; a bare name means builtin),
            ``imagefolder:PATH`` or ``csv:PATH``.
        seed: Seeds the split.
        **options: Any key of the ``data`` config section (``val_fraction``,
            ``test_fraction``, ``target``, ``image_size``, ``channels``, ``lazy``, ``text``,
            ``max_length``, ...; README, "Configuration"); ``max_bytes`` is accepted for
            ``max_memory_bytes``, and ``teacher_tokenizer`` is passed to :func:`load_data`.

    Raises:
        ConfigError: an unknown option or a value the config would refuse.

    Example:
        >>> bundle = load_dataset("builtin:digits")
        >>> bundle.spec.shape, bundle.spec.num_classes
        ((1, 8, 8), 10)
    """
    teacher_tokenizer = options.pop("teacher_tokenizer", None)
    if "max_bytes" in options:  # the image-folder loader's name for it
        options["max_memory_bytes"] = options.pop("max_bytes")
    try:
        cfg = DataConfig(source=source, **options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"load_dataset: data.{where}: {err['msg'].removeprefix('Value error, ')}") from None
    return load_data(cfg, seed=seed, teacher_tokenizer=teacher_tokenizer)


def preprocessing_for(spec: InputSpec, folder: str | Path | None = None, *, text_column: str | None = None) -> Preprocessor:
    """The preprocessing a model's spec describes, where no ``preprocessing.json`` exists.

    Images: the spec's (C, H, W) and mean/std. Text: the folder's tokenizer.json on
    ``text_column``. Tables: a DataError (the fitted columns are not in the spec).
    """
    return PREPROCESSORS.get(spec.kind).from_spec(spec, folder, text_column=text_column)


def load_preprocessing(
    folder: str | Path, spec: InputSpec | None = None, *, text_column: str | None = None
) -> Preprocessor:
    """The preprocessing saved in a run folder (``preprocessing.json``), of whichever kind.

    Run folders from before every kind wrote ``preprocessing.json`` still load: images from
    the model's ``spec``, text from ``tokenizer.json`` and ``text_column`` (``data.text``).

    Args:
        folder: The run folder.
        spec: The model's input spec; checked against the file's kind, and the fallback.
        text_column: The fallback text column for text runs without ``preprocessing.json``.

    Raises:
        DataError: a missing, damaged or foreign file, or one for another kind of input.

    Example:
        >>> pre = load_preprocessing("runs/pets", spec)
        >>> pre.read("new_photos/").names[:1]
        ['a.png']
    """
    folder = Path(folder)
    path = folder / PREPROCESSING_FILE
    if not path.is_file() and spec is not None:
        return preprocessing_for(spec, folder, text_column=text_column)
    d = read_preprocessing(folder)
    fmt = str(d.get("format", ""))
    kind = fmt.removeprefix("distilens-").partition("-preprocessing/")[0]
    if kind not in PREPROCESSORS:
        raise DataError(f"'{path}' is not a distilens preprocessing description (format {d.get('format')!r})")
    pre = PREPROCESSORS.get(kind).load(folder)
    if spec is not None and pre.kind != spec.kind:
        raise DataError(f"'{path}' describes {pre.kind} inputs but the model takes {spec.kind} inputs; train the run again")
    return pre
