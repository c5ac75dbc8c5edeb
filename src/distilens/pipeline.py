"""One run, stage by stage: data → teacher → soft labels → student (+ baseline) → evaluate →
explain → report, written into a run folder (see DESIGN.md, "Run folder").

Example:
    >>> from distilens.config import load_config
    >>> result = run(load_config(None, ["distill.epochs=5"]), out="runs/quick")
    >>> result.metrics["student"]["accuracy"]
"""

from __future__ import annotations

import csv
import json
import importlib.util
import io
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from . import distributed as _dist
from .config import RunConfig, dump_config
from . import data
from .data import DataBundle, InputSpec
from .data.text_augment import with_transfer_copies
from .distill import SoftLabelCache, build_objectives, fit
from .distill.teacher_fit import fit_teacher, teacher_bundle
from .distill import check_text_objectives
from .distill.objectives import teacher_cache_options
from .distill.trainer import TrainingDiverged
from .errors import ConfigError, DistilensError
from .interrupt import check_interrupt, deferred_interrupts
from .io import atomic_write, atomic_write_json, atomic_write_text
from .models import HFTextClassifier, build_for_data, load_model, load_teacher, save_model
from .report.build import read_history, write_run_report
from .runfolder import RunFolder, held_run_folders
from .runtime import resolve_device, seed_everything
from .stages import environment, evaluate_models, explain_methods, explain_stage, save_predictions
from .text_pipeline import apply_text_defaults, save_tokenizers, teacher_tokenizer
from . import controls, fidelity, simple_models  # evidence (issue 15)
from .evaluate import prediction_metrics  # evidence (issue 15)

__all__ = ["run", "RunResult", "load_data", "explain_methods", "explain_stage"]


@dataclass
class RunResult:
    """The finished run: its folder and its metrics (the content of metrics.json)."""

    path: Path
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def run(
    cfg: RunConfig,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    console: Console | None = None,
    command: str | None = None,
) -> RunResult:
    """Run the whole job of ``cfg`` into ``out`` (default ``runs/<cfg.name>``).

    Everything the user could get wrong is checked before the first file is written. The
    run is written into a staging folder and moved into place at the end, so an existing
    run folder is untouched if this run fails.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the teacher and students are trained
    data-parallel (see :mod:`distilens.distributed`); rank 0 alone writes the run folder,
    builds the soft-label cache (the others read its file) and runs the evaluate, explain
    and report stages. The other ranks return after training, with empty ``metrics``.

    Raises:
        DistilensError: bad config, data, model or run folder (nothing is left behind).
        Interrupted: Ctrl-C; training stopped after an epoch's checkpoint, and the staging
            folder is kept for ``resume=True``.
    """
    device = resolve_device(cfg.runtime.device)
    # No collective runs before the staging folder is opened, so a bad input found by the
    # checks below fails every process alike, with no process left waiting for another.
    with _dist.session(device) as (_, device), held_run_folders():  # the run folder's lock, released however it ends
        return _run(cfg, device, out=out, overwrite=overwrite, resume=resume, console=console, command=command)


def _run(
    cfg: RunConfig, device: torch.device, *, out: str | Path | None, overwrite: bool, resume: bool,
    console: Console | None, command: str | None,
) -> RunResult:
    world = _dist.world()
    console = console or Console(stderr=True, quiet=True)
    cfg = apply_text_defaults(cfg)
    controls.check_references(cfg)  # evidence (issue 15): before any training
    config_yaml = dump_config(cfg)
    folder = RunFolder.prepare(out or Path("runs") / cfg.name, overwrite=overwrite, resume=resume, config_yaml=config_yaml,
                               lock=world.main)
    if cfg.distill.cache_dir:
        _check_cache_dir(Path(cfg.distill.cache_dir))
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    with _timed(timings, "data"):
        bundle = load_data(cfg)
    objectives = build_objectives([  # an unset weight is the loss's own default (gradcam_align: 0.1)
        {"name": l.name, **({"weight": l.weight} if l.weight is not None else {}), **l.options()} for l in cfg.distill.losses
    ])
    check_text_objectives(objectives, bundle)
    # The student's training set: the texts, plus copies the teacher labels (text data only).
    transfer = with_transfer_copies(bundle, cfg.distill.transfer_copies, seed=cfg.seed)
    student = _build(cfg.student.arch, cfg.student.args, bundle, cfg.seed + 1, "student")
    if cfg.teacher.weights:  # checked against the data here, before any training
        teacher = load_teacher(
            cfg.teacher.weights, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=bundle.spec,
            trust_torchscript=cfg.teacher.trust_torchscript,
        )
    else:
        teacher = _build(cfg.teacher.arch, cfg.teacher.args, bundle, cfg.seed, "teacher")
    teacher_arch = _teacher_arch(cfg)
    methods, skipped = explain_methods(cfg, bundle, teacher, student)

    staging = _dist.on_main(lambda: folder.open(resume=resume)) or folder.staging  # the others wait for it
    try:
        if world.main:
            atomic_write_text(staging / "config.yaml", config_yaml)
        if bundle.preprocessing is not None and world.main:  # applied again at prediction time
            bundle.preprocessing.save(staging)  # preprocessing.json (text: + tokenizer.json)
        if world.main:
            save_tokenizers(bundle, staging)  # text: tokenizer.json (+ teacher_tokenizer.json)
        history: list[dict[str, Any]] = []
        fit_args = {"device": device, "precision": cfg.runtime.precision}
        # Printed once every input is checked: a bad input's error stays the only line.
        lazily = f"read lazily from the files by {bundle.loading().get('num_workers')} worker process(es)"
        console.print(f"data: {lazily if bundle.train.lazy else 'held in memory'}")
        if transfer is not bundle:
            console.print(f"transfer set: {len(bundle.train)} training texts + {len(transfer.train) - len(bundle.train)} "
                          "copies labelled by the teacher")
        # Ctrl-C while training: stop after the epoch's checkpoint (interrupt.py); --resume continues.
        with _progress(console) as bar, deferred_interrupts():
            with _timed(timings, "teacher"):
                teacher = _stage_teacher(cfg, bundle, teacher, teacher_arch, staging, history, bar, fit_args)
            with _timed(timings, "cache"):
                cache, hit = _shared_cache(cfg, transfer, teacher, objectives, staging, folder.final)
                if world.main:
                    console.print(f"soft labels: {'read from cache' if hit else 'computed'} ({cache.key[:12]})")
            with _timed(timings, "distill"):
                _train_student(cfg, transfer, student, "student", objectives, cache, staging, history, bar, fit_args)
            baseline = None
            if cfg.distill.baseline:
                with _timed(timings, "baseline"):
                    baseline = _build(cfg.student.arch, cfg.student.args, bundle, cfg.seed + 1, "student")
                    _train_student(cfg, bundle, baseline, "baseline", None, None, staging, history, bar, fit_args)
            # evidence (issue 15): what the explain stage compares the student with
            others = {"baseline": baseline} if baseline is not None else {}
            others.update(_evidence_models(cfg, bundle, transfer, cache, staging, history, bar, fit_args, timings))
        if not world.main:  # rank 0 alone evaluates, explains and writes the outputs
            return RunResult(folder.final, {}, timings)
        _write_history(staging / "history.csv", history)

        with _timed(timings, "evaluate"):
            metrics = evaluate_models(bundle, teacher, student, baseline)
            if transfer is not bundle:
                metrics["dataset"]["transfer_copies"] = len(transfer.train) - len(bundle.train)
            metrics["seed"] = cfg.seed
            save_predictions(staging, bundle, cache, {"teacher": teacher, "student": student, "baseline": baseline,
                                                      "plain_kd": others.get("plain_kd")})  # evidence: + plain_kd
            metrics.update(_evidence_metrics(cfg, bundle, staging))  # evidence (issue 15)
        with _timed(timings, "explain"):
            if methods:
                metrics["explanations"] = explain_stage(cfg, bundle, teacher, student, methods, staging, others)
                if skipped:
                    metrics["explanations"].setdefault("skipped", {}).update(skipped)
            elif skipped:
                metrics["explanations"] = {"methods": [], "skipped": skipped}
        metrics["environment"] = environment(device)
        with _timed(timings, "report"):
            # The page shows the stage times so far; metrics.json gets the final ones below.
            metrics["timing_s"] = {k: round(v, 3) for k, v in timings.items()}
            atomic_write_json(staging / "metrics.json", metrics)
            write_run_report(staging, command=command)
        timings["total"] = time.perf_counter() - t_start
        metrics["timing_s"] = {k: round(v, 3) for k, v in timings.items()}
        atomic_write_json(staging / "metrics.json", metrics)
    except TrainingDiverged:
        raise  # the staging folder keeps the last good checkpoint, for --resume
    except DistilensError:
        if world.main:
            folder.discard()
        raise
    path = folder.commit()
    return RunResult(path, metrics, timings)


# --------------------------------------------------------------------------- stages


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    bar = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=console.quiet or not _dist.is_main(),
    )
    with bar:
        yield bar


def _epoch_callback(bar: Progress, label: str, epochs: int) -> Callable[[dict[str, float]], None]:
    task = bar.add_task(label, total=epochs, status="")

    def on_epoch(row: dict[str, float]) -> None:
        bar.update(task, advance=1, status=f"loss {row['loss']:.3f}  val acc {100 * row['val_accuracy']:.1f}%")
        check_interrupt(label, int(row["epoch"]), epochs)  # fit() calls this after the checkpoint is written

    return on_epoch


def _check_cache_dir(path: Path) -> None:
    """``distill.cache_dir`` must be a writable folder, or creatable: checked before any training."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"distill.cache_dir '{path}': '{probe}' is a file; give a folder (it is created if missing)")
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"distill.cache_dir '{path}': cannot write in '{probe}'; give a writable folder")


def _build(arch: str, args: dict[str, Any], bundle: DataBundle, seed: int, role: str) -> nn.Module:
    seed_everything(seed)  # weights are a function of the seed alone
    # Args that cannot build or allocate, and an image_size too small for the model, fail here (one forward on zeros).
    return build_for_data(arch, bundle.spec, args, role)


def load_data(cfg: RunConfig) -> DataBundle:
    """The run's data (:func:`distilens.data.load_data`), with the tokenizer a loaded teacher brings."""
    return data.load_data(cfg.data, seed=cfg.seed, teacher_tokenizer=teacher_tokenizer(cfg))


def _teacher_arch(cfg: RunConfig) -> dict[str, Any]:
    """The teacher's architecture: the config's, or that of a distilens .json beside its weights."""
    if cfg.teacher.weights:
        meta_path = Path(cfg.teacher.weights).with_suffix(".json")
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if isinstance(meta, dict) and meta.get("format") == "distilens-model/1":
                return {"arch": meta["arch"], "args": meta.get("args", {})}
    return {"arch": cfg.teacher.arch, "args": cfg.teacher.args}


def _save_teacher(teacher: nn.Module, folder: Path, arch: dict[str, Any], spec: InputSpec) -> None:
    """teacher.safetensors + teacher.json; a TorchScript teacher also keeps its archive."""
    if isinstance(teacher, torch.jit.ScriptModule):
        atomic_write(folder / "teacher.torchscript", lambda tmp: torch.jit.save(teacher, tmp))
        arch = {"arch": "torchscript", "args": {}}
    elif isinstance(teacher, HFTextClassifier):  # rebuilt from its config.json: the run needs no hf:PATH
        arch = {"arch": "hf", "args": teacher.arch_args}
    save_model(teacher, folder / "teacher.safetensors", arch=arch["arch"], args=arch["args"], spec=spec)


def _stage_teacher(
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, arch: dict[str, Any], staging: Path,
    history: list, bar: Progress, fit_args: dict,
) -> nn.Module:
    path = staging / "teacher.safetensors"
    if cfg.teacher.weights:
        if _dist.is_main():
            _save_teacher(teacher, staging, arch, bundle.teacher_spec or bundle.spec)
        return teacher.to(fit_args["device"])
    if path.is_file() and not (staging / "checkpoints" / "teacher.pt").is_file():  # a finished teacher, no checkpoint
        history.extend(_previous_history(staging, "teacher"))
        return load_model(path)[0].to(fit_args["device"])
    tc = cfg.teacher.train
    # The teacher reads its own token ids; a frozen-encoder teacher (minilm) fits its head on features computed once.
    result = fit_teacher(
        teacher, teacher_bundle(bundle), epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
        warmup_epochs=tc.warmup_epochs, seed=cfg.seed, on_epoch=_epoch_callback(bar, "teacher", tc.epochs),
        **_run_state(staging, "teacher"), **fit_args,
    )
    history.extend({"model": "teacher", **row} for row in result.history)
    if _dist.is_main():
        save_model(teacher, path, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=bundle.teacher_spec or bundle.spec)
    return teacher


def _shared_cache(
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, objectives: list, staging: Path, final: Path
) -> tuple[SoftLabelCache, bool]:
    """The teacher's soft labels: rank 0 reads or builds them and saves the file; the others read it."""
    options = {"dtype": cfg.distill.cache.dtype, "top_k": cfg.distill.cache.top_k, **teacher_cache_options(objectives)}

    def build() -> tuple[SoftLabelCache, bool]:
        dirs = [staging / "cache", final / "cache"] + ([Path(cfg.distill.cache_dir)] if cfg.distill.cache_dir else [])
        cache, hit = SoftLabelCache.load_or_build(teacher, bundle.teacher_split("train"), directories=dirs, save_to=staging / "cache", **options)
        if cfg.distill.cache_dir:
            cache.save(cfg.distill.cache_dir)
        return cache, hit

    made = _dist.on_main(build)
    key, hit = _dist.broadcast_object((made[0].key, made[1]) if made is not None else None)  # type: ignore[misc]
    if made is not None:
        return made
    path = staging / "cache" / SoftLabelCache.filename(key)
    return SoftLabelCache.load(path, key=key, num_samples=len(bundle.train)), hit


def _run_state(staging: Path, role: str) -> dict[str, Any]:
    """Where fit() keeps a model's checkpoint (resumable every epoch) and TensorBoard events."""
    # TensorBoard events only where the optional `tensorboard` extra is installed.
    tb = staging / "tb" / role if importlib.util.find_spec("tensorboard") else None
    return {"checkpoint_path": staging / "checkpoints" / f"{role}.pt", "resume": True, "tensorboard_dir": tb}


def _previous_history(staging: Path, role: str) -> list[dict[str, Any]]:
    """History rows of ``role`` from an earlier (resumed) run."""
    return [r for r in read_history(staging / "history.csv") if r.get("model") == role]


def _train_student(
    cfg: RunConfig, bundle: DataBundle, model: nn.Module, role: str, objectives: list | None,
    cache: SoftLabelCache | None, staging: Path, history: list, bar: Progress, fit_args: dict,
) -> None:
    path = staging / f"{role}.safetensors"
    if path.is_file() and not (staging / "checkpoints" / f"{role}.pt").is_file():  # finished, no checkpoint
        model.load_state_dict(load_model(path)[0].state_dict())
        model.to(fit_args["device"]).eval()
        history.extend(_previous_history(staging, role))
        return
    d = cfg.distill
    opt = d.optimizer
    result = fit(
        model, bundle, objectives=objectives, teacher_cache=cache, epochs=d.epochs, batch_size=d.batch_size,
        optimizer=opt.name, lr=opt.lr, weight_decay=opt.weight_decay, momentum=opt.momentum,
        warmup_epochs=opt.warmup_epochs, seed=cfg.seed + 1, on_epoch=_epoch_callback(bar, role, d.epochs),
        early_stopping=d.early_stopping, monitor=d.monitor, **_run_state(staging, role), **fit_args,
    )
    history.extend({"model": role, **row} for row in result.history)
    if _dist.is_main():
        save_model(model, path, arch=cfg.student.arch, args=cfg.student.args, spec=bundle.spec)


# --------------------------------------------------------------------------- evidence (issue 15)


def _evidence_models(
    cfg: RunConfig, bundle: DataBundle, transfer: DataBundle, cache: SoftLabelCache, staging: Path, history: list,
    bar: Progress, fit_args: dict, timings: dict[str, float],
) -> dict[str, nn.Module]:
    """The plain-KD control of an explanation-guided run, and the reference points asked for (:mod:`distilens.controls`)."""
    out: dict[str, nn.Module] = {}
    plain = controls.plain_kd_specs(controls.loss_specs(cfg))
    if plain is not None:
        with _timed(timings, "plain_kd"):
            out["plain_kd"] = _build(cfg.student.arch, cfg.student.args, bundle, cfg.seed + 1, "student")
            _train_student(cfg, transfer, out["plain_kd"], "plain_kd", build_objectives(plain), cache, staging, history, bar, fit_args)
    if "teacher_reseed" in cfg.explain.references:
        with _timed(timings, "teacher_reseed"):
            out["teacher_reseed"] = _reference_teacher(cfg, bundle, staging, history, bar, fit_args)
    if "init" in cfg.explain.references:  # the student's own initial weights (built with the student's seed)
        out["init"] = _build(cfg.student.arch, cfg.student.args, bundle, cfg.seed + 1, "student").to(fit_args["device"])
        if _dist.is_main():
            save_model(out["init"], staging / "init.safetensors", arch=cfg.student.arch, args=cfg.student.args, spec=bundle.spec)
    return out


def _reference_teacher(cfg: RunConfig, bundle: DataBundle, staging: Path, history: list, bar: Progress, fit_args: dict) -> nn.Module:
    """A second teacher: loaded from ``explain.reference_teacher``, or trained like the teacher from another seed."""
    spec = bundle.teacher_spec or bundle.spec
    path = staging / "teacher_reseed.safetensors"
    if cfg.explain.reference_teacher:
        model = load_teacher(cfg.explain.reference_teacher, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=spec,
                             trust_torchscript=cfg.teacher.trust_torchscript).to(fit_args["device"])
    elif path.is_file() and not (staging / "checkpoints" / "teacher_reseed.pt").is_file():  # finished earlier
        history.extend(_previous_history(staging, "teacher_reseed"))
        return load_model(path)[0].to(fit_args["device"])
    else:
        seed, tc = controls.reseed(cfg.seed), cfg.teacher.train
        model = _build(cfg.teacher.arch, cfg.teacher.args, bundle, seed, "teacher")
        result = fit_teacher(
            model, teacher_bundle(bundle), epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr, weight_decay=tc.weight_decay,
            warmup_epochs=tc.warmup_epochs, seed=seed, on_epoch=_epoch_callback(bar, "teacher_reseed", tc.epochs),
            **_run_state(staging, "teacher_reseed"), **fit_args,
        )
        history.extend({"model": "teacher_reseed", **row} for row in result.history)
    if _dist.is_main():
        save_model(model, path, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=spec)
    return model


def _evidence_metrics(cfg: RunConfig, bundle: DataBundle, staging: Path) -> dict[str, Any]:
    """``simple_models`` (what the teacher must beat) and ``fidelity`` (student − controls per test sample)."""
    from safetensors.torch import load_file

    targets, logits = fidelity.logits_from_tensors(load_file(str(staging / "predictions.safetensors")))
    out: dict[str, Any] = {"simple_models": simple_models.simple_models(bundle)}
    out["fidelity"] = fidelity.fidelity_block(logits["teacher"], targets, logits, seed=cfg.seed)
    if "plain_kd" in logits:
        out["plain_kd"] = prediction_metrics(logits["plain_kd"], targets, logits["teacher"])
    return out


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())
