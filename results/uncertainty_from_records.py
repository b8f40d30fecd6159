"""Chapters 5 and 6 at `cpu`, rebuilt from the committed records with 95% intervals and paired tests.

Run from the repository root: `.venv/bin/python results/uncertainty_from_records.py`
"""
import glob, json, re, itertools
import pandas as pd
from kafnotes import chapter, evaluation, stats
pd.set_option("display.width", 250)
order = ["relu", "elu", "kaf", "kaf_relu", "kaf_elu", "swish", "kaf_swish", "kaf_free"]
pgd, cw, apgd = {}, {}, {}
for f in sorted(glob.glob("results/cpu/runs05/resnet20-*.eval-*.json")):
    rec = json.load(open(f)); act = re.match(r".*resnet20-(.+?)-fgsm_rs", f).group(1); a = rec["attack"]
    if "apgd_steps" in a: apgd[act] = rec
    elif a.get("loss") == "cw": cw[act] = rec
    elif "labels" not in a: pgd[act] = rec
print("Chapter 5 (cpu): PGD-20, 500 images")
print(chapter.intervals({k: pgd[k] for k in order}).to_string(index=False))
worst = {k: {**pgd[k], "robust_images": evaluation.worst_mask(pgd[k], cw[k], apgd[k])} for k in order}
print("\nChapter 6 (cpu): worst case per image over PGD-20 (CE, CW) and APGD-CE/DLR-20")
print(chapter.intervals(worst, label="worst").to_string(index=False))
lead = ["elu", "kaf_elu", "kaf_relu", "kaf_swish"]
print("\nPairwise among the four said to lead (worst case), Holm over the 6 pairs:")
pairs = list(itertools.combinations(lead, 2))
tests = [stats.paired(stats.as_mask(worst[a]["robust_images"]), stats.as_mask(worst[b]["robust_images"])) for a, b in pairs]
for (a, b), t, ph in zip(pairs, tests, stats.holm([t.p_value for t in tests])):
    print(f"  {a:9s} - {b:9s} {stats.format_diff(t)}  p={t.p_value:.3f}  Holm p={ph:.3f}")
kaf_vs_elu = [(k, stats.paired(stats.as_mask(pgd[k]["robust_images"]), stats.as_mask(pgd["elu"]["robust_images"]))) for k in order if k.startswith("kaf")]
print("\nPGD-20, each KAF against ELU (Holm over 5):")
for (k, t), ph in zip(kaf_vs_elu, stats.holm([t.p_value for _, t in kaf_vs_elu])):
    print(f"  {k:9s} - elu {stats.format_diff(t)}  p={t.p_value:.3f}  Holm p={ph:.3f}")
