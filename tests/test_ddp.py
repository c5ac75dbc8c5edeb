"""Data-parallel training: 2 gloo processes on the CPU against one process with the same seed.

The reference values are one process's own run; DDP differs from it only in the order of
float additions (per-rank gradient means, all-reduce). Measured max |w_2 - w_1|: 3e-8 for
the spawned fit (3 epochs), 1.5e-8 … 6e-8 for teacher, student and baseline of the torchrun
run. The tolerance, 1e-5, leaves room for other CPUs and BLAS builds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from distilens import distributed
from distilens.data.augment import parse_augment
from distilens.data.bundle import count_batches, iterate_batches
from distilens.distill import CE, KD, Hint, SoftLabelCache, StepTensors, fit
from distilens.distill.objectives import Objective
from distilens.distill.trainer import TrainingDiverged
from distilens.models import build_model
from distilens.testing import tiny_bundle

WEIGHT_ATOL = 1e-5  # max |w_ddp - w_single| (measured: 3e-8 to 6e-8)
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(fn, world_size: int, *args: object) -> None:
    """Run ``fn(rank, world_size, port, *args)`` in ``world_size`` processes; fail after TIMEOUT_S."""
    ctx = mp.spawn(_entry, args=(fn, world_size, _free_port(), *args), nprocs=world_size, join=False)
    deadline = TIMEOUT_S
    step = 1.0
    while not ctx.join(timeout=step):
        deadline -= step
        if deadline <= 0:
            for p in ctx.processes:
                p.terminate()
            pytest.fail(f"the {world_size} processes did not finish within {TIMEOUT_S} s")


def _entry(rank: int, fn, world_size: int, port: int, *args: object) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    with distributed.session(torch.device("cpu")) as (world, _):
        assert world.size == world_size and world.rank == rank
        fn(rank, *args)
    if args and Path(str(args[0])).is_dir() and Path("/proc/self/task").is_dir():  # native threads left now
        names = [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
        (Path(str(args[0])) / f"threads-rank{rank}.txt").write_text("\n".join(names))


# ----------------------------------------------------------------- the jobs, one process or many


def _job(kind: str) -> dict:
    """A tiny fit whose last batch splits unevenly (61 = 3·16 + 13: shares of 7 and 6)."""
    bundle = tiny_bundle(n=61, shape=(12,), classes=3, seed=1)
    torch.manual_seed(0)
    if kind == "mlp":  # no BatchNorm, no dropout: DDP equals one process up to rounding
        teacher = build_model("mlp", bundle.spec, hidden=[16])
        cache = SoftLabelCache.build(teacher, bundle.train, features=["features.1"])
        student = build_model("mlp", bundle.spec, hidden=[8])
        objectives = [KD(temperature=2.0), CE(weight=0.5), Hint(weight=0.3, student_layer="features.1",
                                                                  teacher_layer="features.1")]
        return dict(model=student, bundle=bundle, objectives=objectives, teacher_cache=cache, grad_clip=1.0)
    if kind == "views":  # augmented images, soft labels of 2 stored views: a share sees its samples' views
        bundle = tiny_bundle(n=61, shape=(1, 6, 6), classes=3, seed=1)
        augment = parse_augment([{"name": "crop", "padding": 1}, {"name": "hflip"}, {"name": "erase"}])
        teacher = build_model("mlp", bundle.spec, hidden=[16])
        cache = SoftLabelCache.build(teacher, bundle.train, augment=augment, views=2)
        student = build_model("mlp", bundle.spec, hidden=[8])
        return dict(model=student, bundle=bundle, objectives=[KD(temperature=2.0), CE(weight=0.5)],
                    teacher_cache=cache, augment=augment)
    bundle = tiny_bundle(n=61, shape=(1, 6, 6), classes=3, seed=1)
    return dict(model=build_model("cnn", bundle.spec, width=4), bundle=bundle, objectives=None, teacher_cache=None)


def _fit(job: dict, **kw: object):
    args = {k: v for k, v in job.items() if k != "model"}
    return fit(job["model"], **args, epochs=3, batch_size=16, lr=1e-2, seed=7, device="cpu", warmup_epochs=0.5, **kw)


def _state(job: dict, result) -> dict:
    objectives = job["objectives"] or []
    extra = {f"obj{i}.{k}": v for i, o in enumerate(objectives) for k, v in o.state_dict().items()}
    return {"weights": {**job["model"].state_dict(), **extra}, "history": result.history,
            "best_epoch": result.best_epoch}


class _BlowUpOnRank1(Objective):
    """NaN on rank 1 only, from its 3rd step of epoch 2 on: every rank must stop alike."""

    name = "blowup"

    def forward(self, step: StepTensors) -> torch.Tensor:
        bad = distributed.world().rank == 1 and step.epoch == 2 and step.step is not None and step.step >= 4 + 2
        return step.student_logits.sum() * (float("nan") if bad else 0.0)


def _sync_case(rank: int) -> dict:
    """Gradients: a only on rank 0, b nowhere, c everywhere; a float and an integer buffer."""
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad = torch.tensor([4.0, 2.0]) if rank == 0 else None
    c.grad = torch.full((2,), float(rank + 1))
    running, count = torch.full((3,), float(rank)), torch.tensor(rank)
    distributed.sync_gradients([a, b, c], [running, count])
    # Every gradient present here (the usual step): averaged without reading anything back to the host.
    d = torch.nn.Parameter(torch.zeros(2))
    d.grad = torch.full((2,), float(rank))
    reads = []
    real = torch.Tensor.tolist
    torch.Tensor.tolist = lambda self: reads.append(1) or real(self)  # type: ignore[method-assign]
    try:
        distributed.sync_gradients([c, d], [])
    finally:
        del torch.Tensor.tolist  # the inherited method shows again
    return {"a": a.grad, "b_is_none": b.grad is None, "c": c.grad, "running": running, "count": count, "d": d.grad,
            "host_reads": len(reads)}


def _worker(rank: int, out: str) -> None:
    """All the 2-process jobs in one spawn (starting processes costs more than the jobs)."""
    torch.save(_sync_case(rank), Path(out) / f"sync-rank{rank}.pt")
    bundle = tiny_bundle()  # 60 samples, batch 16: 4 steps per epoch on every rank
    try:
        fit(build_model("cnn", bundle.spec, width=4), bundle, objectives=[CE(), _BlowUpOnRank1()], epochs=3,
            batch_size=16, device="cpu")
    except TrainingDiverged as exc:
        (Path(out) / f"nan-rank{rank}.txt").write_text(str(exc))
    for kind in ("mlp", "cnn", "views"):
        job = _job(kind)
        torch.save(_state(job, _fit(job)), Path(out) / f"{kind}-rank{rank}.pt")
    # Resume: checkpoint every epoch (rank 0 writes), keep epoch 2's, resume all ranks from it.
    ck, ck2 = Path(out) / "ck.pt", Path(out) / "ck-epoch2.pt"
    job = _job("mlp")
    full = _fit(job, checkpoint_path=ck, on_epoch=lambda row: row["epoch"] == 2 and shutil.copy(ck, ck2))
    distributed.barrier()  # rank 0 copied the file inside fit()
    again = _job("mlp")
    resumed = _fit(again, checkpoint_path=ck2, resume=True)
    assert resumed.resumed_from == 3
    torch.save({"full": _state(job, full), "resumed": _state(again, resumed)}, Path(out) / f"resume-rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    _spawn(_worker, 2, str(out))
    return out


def _timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


def _assert_close_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k != "time_s":
                assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), k


# --------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("n", [61, 64, 49, 33])
def test_shares_partition_every_global_batch(world_size: int, n: int) -> None:
    split = tiny_bundle(n=n, shape=(2,)).train
    single = [idx for _, _, idx in iterate_batches(split, 16, shuffle=True, generator=torch.Generator().manual_seed(3))]
    per_rank = [
        [idx for _, _, idx in iterate_batches(split, 16, shuffle=True, generator=torch.Generator().manual_seed(3),
                                              rank=r, world_size=world_size)]
        for r in range(world_size)
    ]
    steps = count_batches(n, 16, world_size)
    assert all(len(batches) == steps for batches in per_rank)
    # A last batch with fewer samples than processes (49 = 3·16 + 1) is dropped; else none is.
    assert steps == len(single) - (1 if 0 < n % 16 < world_size else 0)
    for i in range(steps):
        shares = [batches[i] for batches in per_rank]
        assert torch.equal(torch.cat(shares), single[i])
        assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_outside_torchrun_everything_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.World() and distributed.is_main()
    assert distributed.on_main(lambda: 5) == 5
    with distributed.session(torch.device("cpu")) as (world, device):
        assert world.size == 1 and device == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.env_world() == distributed.World(1, 2, 0) and not distributed.is_main()
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(distributed.DistilensError, match="cannot join the process group .*MASTER_ADDR"):
        with distributed.session(torch.device("cpu")):
            pass
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(distributed.DistilensError, match="RANK=2 does not fit WORLD_SIZE=2"):
        distributed.env_world()


@pytest.mark.parametrize("kind", ["mlp", "cnn", "views"])
def test_two_processes_match_one(kind: str, two_ranks: Path) -> None:
    ranks = [torch.load(two_ranks / f"{kind}-rank{r}.pt", weights_only=True) for r in range(2)]
    # Every rank ends with the same weights, bit for bit (the hint adapter's and BatchNorm's too).
    for k, v in ranks[0]["weights"].items():
        assert torch.equal(v, ranks[1]["weights"][k]), k
    assert _timeless(ranks[0]["history"]) == _timeless(ranks[1]["history"])
    job = _job(kind)
    single = _state(job, _fit(job))
    if kind == "cnn":
        # BatchNorm normalises each rank's share by its own statistics (as DDP does without
        # SyncBatchNorm), so the run differs from one process: only sanity-check it.
        assert ranks[0]["history"][-1]["train_accuracy"] > 0.5
        return
    assert ranks[0]["weights"].keys() == single["weights"].keys()
    diff = max(float((v - single["weights"][k]).abs().max()) for k, v in ranks[0]["weights"].items())
    print(f"max |w_ddp - w_single| = {diff:.3g}")
    assert diff < WEIGHT_ATOL
    _assert_close_history(ranks[0]["history"], single["history"])
    assert ranks[0]["best_epoch"] == single["best_epoch"]


def test_sync_gradients_averages_and_keeps_none_only_where_no_rank_has_a_gradient(two_ranks: Path) -> None:
    for r in range(2):
        got = torch.load(two_ranks / f"sync-rank{r}.pt", weights_only=True)
        assert torch.equal(got["a"], torch.tensor([2.0, 1.0]))  # (g + 0) / 2: rank 1 counts as zero
        assert got["b_is_none"]
        assert torch.equal(got["c"], torch.full((2,), 1.5))
        assert torch.equal(got["running"], torch.full((3,), 0.5))
        assert int(got["count"]) == r  # integer buffers are left alone
        assert torch.equal(got["d"], torch.full((2,), 0.5)) and got["host_reads"] == 0


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread names from /proc")
def test_the_process_group_is_gone_when_the_session_ends(two_ranks: Path) -> None:
    # fit builds an optimizer inside the group, which imports torch._dynamo; imported then,
    # torch modules that take group.WORLD as a default argument kept the group (gloo's
    # threads, rank 0's TCPStore server) alive until interpreter shutdown, where they
    # sometimes aborted the process ("terminate called without an active exception").
    for r in range(2):
        left = (two_ranks / f"threads-rank{r}.txt").read_text().split()
        assert not [t for t in left if "gloo" in t or "tcpstore" in t], (r, left)


def test_a_non_finite_loss_on_one_rank_stops_every_rank_with_the_same_message(two_ranks: Path) -> None:
    messages = [(two_ranks / f"nan-rank{r}.txt").read_text() for r in range(2)]
    assert messages[0] == messages[1]
    assert "epoch 2, step 3 of 4 (terms: loss, blowup)" in messages[0]


def test_resume_reads_rank_zeros_checkpoint_on_every_rank(two_ranks: Path) -> None:
    for r in range(2):
        out = torch.load(two_ranks / f"resume-rank{r}.pt", weights_only=True)
        for k, v in out["full"]["weights"].items():
            assert torch.equal(v, out["resumed"]["weights"][k]), (r, k)
        assert [row["loss"] for row in out["full"]["history"]] == [row["loss"] for row in out["resumed"]["history"]]


# ------------------------------------------------------------------ torchrun, end to end

TINY_MLP = """\
name: tiny-ddp
teacher:
  arch: mlp
  args: {hidden: [32]}
  train: {epochs: 2}
student:
  arch: mlp
  args: {hidden: [8]}
distill:
  epochs: 2
explain:
  methods: [saliency]
  n_samples: 16
  sanity: false
runtime:
  threads: 1
"""


def _cli(prefix: list[str], *args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *prefix, "-m", "distilens", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=TIMEOUT_S * 3)


def _torchrun(n: int) -> list[str]:
    return ["-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}"]


@pytest.mark.slow
def test_torchrun_matches_one_process_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_MLP)
    one = _cli([], "run", "tiny.yaml", "--quiet", "--out", "runs/one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = _cli(_torchrun(2), "run", "tiny.yaml", "--quiet", "--out", "runs/two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("report:") == 1  # only rank 0 prints the summary
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one", "two"]  # no staging left
    a, b = (tmp_path / "runs" / "one"), (tmp_path / "runs" / "two")
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("teacher", "student", "baseline"):
        wa, wb = load_file(a / f"{name}.safetensors"), load_file(b / f"{name}.safetensors")
        diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
        print(f"{name}: max |w_torchrun - w_single| = {diff:.3g}")
        assert diff < WEIGHT_ATOL, (name, diff)
    # Rank 0 built the soft labels once and wrote one file. (The teachers differ in rounding,
    # so the two runs' cache keys differ.)
    assert len(list((b / "cache").glob("softlabels-*"))) == 1
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    for role in ("teacher", "student", "baseline"):
        assert ma[role]["accuracy"] == mb[role]["accuracy"]
    assert mb["environment"]["processes"] == "2"
    assert "× 2 processes" in (b / "report.html").read_text() and "processes (torchrun)" not in (a / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("bad", [["--set", "distill.epochs=many"], ["--set", "data.source=csv:missing.csv"]])
def test_torchrun_bad_input_fails_every_rank_without_hanging(tmp_path: Path, bad: list[str]) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_MLP)
    proc = _cli(_torchrun(2), "run", "tiny.yaml", "--quiet", *bad, cwd=tmp_path)
    assert proc.returncode != 0
    assert "error: " in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
