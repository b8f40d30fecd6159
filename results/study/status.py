"""What the study edition's committed records hold: one line per training run, from its records.

    python results/study/status.py

Each run: its status, epochs, its schedule, the note chapter 5 would print, clean and PGD-20 accuracy on the
test images with 95% Wilson intervals, and the compute it took (training and evaluation). Then chapter 5's
table as far as its records go (the runs on the profile's schedule, pooled over seeds, each activation
paired with ReLU), chapter 7's published models, and the compute of every record by the chapter that
first asks for it.
"""

import json
import textwrap
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from kafnotes import chapter, stats  # noqa: E402
from kafnotes.profiles import get_profile  # noqa: E402
from kafnotes.training import TrainConfig  # noqa: E402

RUNS = Path(__file__).resolve().parent / "runs"
# Seconds a run still training was stopped (SIGSTOP) while other work had the cores, by run folder and
# epoch: kept here until the run lands; a finished record's own `paused_seconds` takes precedence.
PAUSES = json.loads((RUNS.parent / "pauses.json").read_text()) if (RUNS.parent / "pauses.json").exists() else {}


def paused_seconds(run: Path, record: dict) -> float:
    """The record's own ``paused_seconds``, else its pauses.json entry when the epoch it names took at
    least that long (an epoch re-run from a checkpoint on another machine was not paused)."""
    if "paused_seconds" in record:
        return record["paused_seconds"]
    pause = PAUSES.get(run.name)
    epochs = record.get("seconds_per_epoch", [])
    if not pause or len(epochs) < pause["epoch"] or epochs[pause["epoch"] - 1] < pause["seconds"]:
        return 0
    return pause["seconds"]


def record_seconds(record: dict) -> float:
    """A record's compute, less the time its process was stopped (SIGSTOP) while another job had the cores."""
    return record.get("seconds", 0) - record.get("paused_seconds", 0)


def training_seconds(run: Path, record: dict) -> float:
    """A training run's epochs, less the time it was stopped."""
    return sum(record.get("seconds_per_epoch", [])) - paused_seconds(run, record)


def is_pgd20(attack: dict) -> bool:
    """Chapter 5's evaluation: PGD-20 with cross-entropy on the true labels, on the model itself."""
    return attack.get("steps") == 20 and not {"loss", "labels", "transfer_from", "attacks"} & set(attack)


def pgd20(run: Path):
    evals = [json.loads(e.read_text()) for e in sorted(run.glob("eval-*.json"))]
    return next((e for e in evals if is_pgd20(e.get("attack", {}))), None)


def main():
    hours = 0.0
    for run in sorted(p for p in RUNS.iterdir() if p.is_dir() and (p / "record.json").exists()):
        record = json.loads((run / "record.json").read_text())
        evals = [json.loads(e.read_text()) for e in sorted(run.glob("eval-*.json"))]
        pgd = pgd20(run)
        seconds = training_seconds(run, record) + sum(record_seconds(e) for e in evals)
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
    chapter5()
    chapter6()
    published()
    ledger()


def chapter5():
    """Chapter 5's table from the finished runs on the study profile's schedule: FGSM-RS per activation
    (seeds pooled) against ReLU, then N-FGSM against FGSM-RS where an activation has both."""
    P = get_profile("study")
    by_method = {}
    for run in sorted(p for p in RUNS.iterdir() if (p / "record.json").exists()):
        record, pgd = json.loads((run / "record.json").read_text()), pgd20(run)
        c = record["config"]
        if record["status"] == "finished" and pgd and c["epochs"] == P["adv_epochs"] and on_study_schedule(c):
            by_method.setdefault(c["method"], {}).setdefault(c["activation"], []).append((c["seed"], pgd))
    order = P["resnet_activations"] + sorted({a for acts in by_method.values() for a in acts} - set(P["resnet_activations"]))
    evals = {m: {a: [e for _, e in sorted(acts[a], key=lambda r: r[0])] for a in order if a in acts}
             for m, acts in by_method.items()}
    if "relu" in evals.get("fgsm_rs", {}):
        print("\nchapter 5 (FGSM-RS, PGD-20 on the true labels):")
        print(chapter.intervals(evals["fgsm_rs"]).to_string(index=False))
        print(textwrap.fill(chapter.seeds_sentence(evals["fgsm_rs"]), 110))
    for act, runs in evals.get("n_fgsm", {}).items():
        if act in evals.get("fgsm_rs", {}):
            test = stats.paired_seeds([e["robust_images"] for e in runs],
                                      [e["robust_images"] for e in evals["fgsm_rs"][act]])
            print(f"{act}: N-FGSM minus FGSM-RS {stats.format_diff(test)} points (McNemar p = {test.p_value:.2g})")


def chapter6():
    """Chapter 6's headline from the records in: standard AutoAttack on each activation's first FGSM-RS
    run (chapter 5's seed 0), against ReLU."""
    P = get_profile("study")
    standard = {}
    for run in sorted(p for p in RUNS.iterdir() if (p / "record.json").exists()):
        c = json.loads((run / "record.json").read_text())["config"]
        if c["method"] != "fgsm_rs" or c["seed"] != 0 or not on_study_schedule(c):
            continue
        for e in sorted(run.glob("eval-*.json")):
            record = json.loads(e.read_text())
            if record.get("attack", {}).get("attacks", "").startswith("autoattack"):
                standard[c["activation"]] = record
    if "relu" in standard:
        evals = {a: standard[a] for a in P["resnet_activations"] if a in standard}
        print(f"\nchapter 6 (standard AutoAttack, seed 0, first {len(standard['relu']['robust_images'])} images; "
              f"{len(evals)} of {len(P['resnet_activations'])} activations in):")
        print(chapter.intervals(evals, label="AutoAttack").to_string(index=False))
        print(textwrap.fill(chapter.separation_sentence(evals, what="AutoAttack accuracy"), 110))


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
        entry["seconds"][kind] = entry["seconds"].get(kind, 0) + record_seconds(record)
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


def on_study_schedule(config: dict) -> bool:
    P = get_profile("study")
    return (config["lr"], config["lr_min"], config["momentum"]) == (P["adv_lr_max"], P["adv_lr_min"], P["adv_momentum"])


def chapter_of(record: dict, run: dict | None = None) -> str:
    """The chapter that first asks for a record (chapters 6 and 8 reuse chapter 5's runs, chapter 8
    chapter 7's records); ``run`` is the training record an evaluation sits beside."""
    if run is None:
        c = record["config"]
        if c["arch"] == "light_cnn":
            return "1, 2, 6: light CNNs"
        if c["arch"] == "vgg":
            return "3: VGG"
        if c["method"] == "standard":
            return "4: clean ResNets"
        return "5: ResNet20 training" if on_study_schedule(c) else "not in the edition: the thesis' schedule"
    kind = chapter_of(run)
    if kind.startswith("5"):  # chapter 5 asks for PGD-20 on the labels; the other attacks are chapter 6's
        return "5: PGD-20" if is_pgd20(record["attack"]) else "6: stronger attacks"
    return kind


def ledger():
    """Compute by chapter: training epochs (less the time a run was stopped) and each record's seconds."""
    hours = {}
    for path in sorted(RUNS.glob("*.json")):  # chapter 3's range finder, chapter 4's traces
        record = json.loads(path.read_text())
        kind = "4: clean ResNets" if path.name.startswith("normtrace-") else "3: VGG"
        hours[kind] = hours.get(kind, 0) + record_seconds(record) / 3600
    for run in sorted(p for p in RUNS.iterdir() if (p / "record.json").exists()):
        record = json.loads((run / "record.json").read_text())
        kind = chapter_of(record)
        hours[kind] = hours.get(kind, 0) + training_seconds(run, record) / 3600
        for e in sorted(run.glob("eval-*.json")):
            evaluation = json.loads(e.read_text())
            k = chapter_of(evaluation, record)
            hours[k] = hours.get(k, 0) + record_seconds(evaluation) / 3600
    for path in (RUNS / "published").glob("*.json"):
        hours["7: published models"] = hours.get("7: published models", 0) + record_seconds(
            json.loads(path.read_text())) / 3600
    print("\ncompute by chapter (hours on 2 cores, as measured: runs that shared the cores count their shared time):")
    for kind in sorted(hours):
        print(f"  {kind:45s} {hours[kind]:5.1f}")
    edition = sum(h for k, h in hours.items() if not k.startswith("not"))
    print(f"  {'the edition':45s} {edition:5.1f}")


if __name__ == "__main__":
    main()
