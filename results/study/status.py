"""What the study edition's committed records hold: one line per training run, from its records.

    python results/study/status.py

Each run: its status, epochs, its schedule, the note chapter 5 would print, clean and PGD-20 accuracy on the
test images with 95% Wilson intervals, and the compute it took (training and evaluation).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from kafnotes import chapter, stats  # noqa: E402
from kafnotes.training import TrainConfig  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"


def main():
    hours = 0.0
    for run in sorted(p for p in RUNS.iterdir() if p.is_dir() and (p / "record.json").exists()):
        record = json.loads((run / "record.json").read_text())
        evals = [json.loads(e.read_text()) for e in sorted(run.glob("eval-*.json"))]
        pgd = next((e for e in evals if e.get("attack", {}).get("steps") == 20 and "loss" not in e["attack"]), None)
        seconds = sum(record.get("seconds_per_epoch", [])) + sum(e.get("seconds", 0) for e in evals)
        hours += seconds / 3600
        c = record["config"]
        step = TrainConfig(**c).step_size / c["eps"]  # the config's own default when fgsm_alpha is None
        schedule = f"lr {c['lr_min']:g}->{c['lr']:g}, momentum {c['momentum']:g}, step {step:g} eps"
        line = (f"{run.name:45s} {record['status']:9s} {len(record['history'])} epochs  {seconds / 60:4.0f} min"
                f"  {schedule:38s}")
        if pgd:
            line += (f"  clean {stats.wilson(pgd['clean_images'])}  PGD-20 {stats.wilson(pgd['robust_images'])}"
                     f" on {len(pgd['robust_images'])}")
        note = chapter.training_note(record) if record["status"] == "finished" else ""
        print(line + (f"  [{note}]" if note else ""))
    print(f"compute in these training runs: {hours:.1f} h on 2 cores")
    published()


def published():
    """Chapter 7's records: per published model, PGD-20 (true labels) on its audit's images, standard
    AutoAttack, and the compute each kind of record took."""
    folder = RUNS / "published"
    if not folder.is_dir():
        return
    models = {}
    for path in sorted(folder.glob("*.json")):
        name, kind = path.stem.rsplit("-", 1)[0].split("-", 1)  # <model>-<kind>-<key>
        record = json.loads(path.read_text())
        entry = models.setdefault(name, {"seconds": {}, "line": []})
        entry["seconds"][kind] = entry["seconds"].get(kind, 0) + record.get("seconds", 0)
        if kind == "audit":
            r = record["result"]
            entry["line"].append(f"PGD-20 {stats.wilson(r['pgd_images'])} on {len(r['pgd_images'])}")
        elif kind == "autoattack":
            entry["line"].append(f"AutoAttack {stats.wilson(record['robust_images'])} on {len(record['robust_images'])}")
    total = 0.0
    for name, entry in models.items():
        seconds = sum(entry["seconds"].values())
        total += seconds / 3600
        parts = ", ".join(f"{k} {v / 60:.0f}" for k, v in sorted(entry["seconds"].items()))
        print(f"{name:40s} {seconds / 60:4.0f} min ({parts})  " + "  ".join(sorted(entry["line"], reverse=True)))
    print(f"compute in chapter 7's records: {total:.1f} h on 2 cores ({len(models)} of 13 published models)")


if __name__ == "__main__":
    main()
