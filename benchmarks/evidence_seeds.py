"""Does distillation move the student's explanations towards the teacher's? The table over seeds (issue 15).

Each dataset is one ``run --seeds`` (every seed a whole run: teacher, KD student, label-only
baseline, second teacher, untrained student), e.g.::

    distilens run --seeds 0-4 --jobs 1 --quiet --set data.source=builtin:shapes \\
        --set teacher.train.epochs=5 --set distill.epochs=8 --set explain.n_samples=64 --set explain.sanity=false \\
        --set "explain.methods=[gradcam, integrated_gradients]" --set "explain.references=[teacher_reseed, init]" \\
        --out runs/evidence/shapes

then::

    PYTHONPATH=src python benchmarks/evidence_seeds.py runs/evidence/digits runs/evidence/shapes ...

prints Markdown from each RUN/summary.json: accuracy and fidelity (mean ± sd over seeds), and per
explanation method the Spearman agreement with the teacher's maps of the KD student, the
label-only baseline, the second teacher (ceiling) and the untrained student (floor), the paired
difference KD − label-only over seeds (mean, 95% t-interval, bootstrap interval, wins/ties/losses)
and the share of the label-only → teacher-vs-teacher gap that distillation closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCORE = "spearman"


def _ms(block: dict[str, Any] | None, scale: float = 1.0, digits: int = 1) -> str:
    if not block or block.get("mean") is None:
        return "–"
    sd = block.get("sd")
    return f"{scale * block['mean']:.{digits}f} ± {scale * sd:.{digits}f}" if sd is not None else f"{scale * block['mean']:.{digits}f}"


def _pd(pd: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not pd or pd.get("mean") is None:
        return "–"
    f = f"{{:+.{digits}f}}"
    t = f"[{f.format(scale * pd['t_ci_low'])}, {f.format(scale * pd['t_ci_high'])}]" if pd.get("t_ci_low") is not None else ""
    b = f"[{f.format(scale * pd['ci_low'])}, {f.format(scale * pd['ci_high'])}]"
    return f"{f.format(scale * pd['mean'])} t{t} boot{b} {pd['wins']}/{pd['ties']}/{pd['losses']}"


def render(folder: Path) -> str:
    s = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    models, paired = s["models"], s["paired"].get("student_minus_baseline", {})
    name = s.get("dataset", {}).get("name", folder.name) if isinstance(s.get("dataset"), dict) else folder.name
    lines = [f"**{name}** — {len(s['seeds'])} seeds {s['seeds']}; runs {s['timing_s']['runs_total']:.0f} s, "
             f"the command {s['timing_s']['wall']:.0f} s", ""]
    lines += ["| | teacher | KD student | label-only | KD − label-only (t 95% CI, bootstrap 95% CI, W/T/L) |",
              "|---|---:|---:|---:|---|"]
    for key, label, scale, digits in (("accuracy", "accuracy %", 100, 1), ("agreement", "top-1 agreement with teacher %", 100, 1),
                                      ("predictive_kl", "KL(teacher ‖ model), nats", 1, 3)):
        lines.append(f"| {label} | {_ms(models['teacher'].get(key), scale, digits)} | {_ms(models['student'].get(key), scale, digits)} "
                     f"| {_ms(models.get('baseline', {}).get(key), scale, digits)} | {_pd(paired.get(key), scale, digits)} |")
    lines += ["", f"| method ({SCORE}) | KD student | label-only | second teacher | untrained | KD − label-only (t 95% CI, bootstrap 95% CI, W/T/L) | gap closed |",
              "|---|---:|---:|---:|---:|---|---:|"]
    for method, block in s.get("explanations", {}).items():
        spread = block.get("spread", {})
        cells = [_ms(spread.get(role, {}).get(SCORE), 1, 2) for role in ("student", "baseline", "teacher_reseed", "init")]
        pd = block.get("paired", {}).get("student_minus_baseline", {}).get(SCORE)
        gap = block.get("scale", {}).get(SCORE, {}).get("gap_closed")
        lines.append(f"| {method} | {' | '.join(cells)} | {_pd(pd)} | {'–' if gap is None else f'{100 * gap:+.0f}%'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("\n".join(render(Path(p)) for p in sys.argv[1:]))
