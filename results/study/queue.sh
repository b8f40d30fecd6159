#!/usr/bin/env bash
# The study edition's runs, in the order the book's question needs them (chapters 5-7 first, then seeds).
# Each step executes a chapter at the study profile; its training and evaluation records land in
# results/study/runs (profiles.COMMITTED_RECORDS), a finished run is reused and an interrupted one resumes
# from its last epoch's checkpoint. So the script can be stopped and started again at any point:
#
#     bash results/study/queue.sh            # from the repository root, after the README's install
#
# Commit each record as it lands (results/study/status.py lists the training runs; results/study/README.md
# says how an unfinished run's checkpoint is carried to the next session).
set -euo pipefail
cd "$(dirname "$0")/../.."
export KAFNOTES_CIFAR10="${KAFNOTES_CIFAR10:-$(realpath ../shared/data/cifar10-jpeg75-50k.npz)}"  # absolute: kernels run elsewhere
kafnotes=.venv/bin/kafnotes
step() { echo "== $(date -u +%FT%TZ) kafnotes run $*"; "$kafnotes" run "$@" --profile study --jobs 1 --out outputs/study-queue; }

# (Chapter 5's first seed of ReLU, ELU, Swish and KAF is in: results/study/status.py.)
# Chapter 7 needs no training: the published models the conclusions turn on first (the sound and the
# overfit ReLU, the KAF of Table 7.2's row; the last two also get the step and eps curves), then the rest.
# (Their audits re-run once with the checklist on 500 images, checklist_n; the other records are reused.)
step 07 -p "published=['resnet20_kaf_ocrob_lrfinder', 'resnet20_relu_ocrob_lrf', 'resnet20_relu_ocrob']"
# The rest of chapter 5 as the edition builds it: the profile's four activations, a second seed for
# ReLU and KAF (seeds_for), N-FGSM for ReLU, Swish and KAF (Swish overfits with FGSM-RS here).
step 05
# Every published model; chapter 6 on chapter 5's models; chapters 1-4; the closing chapter.
step 07
step 06
step 01
step 02
step 03
step 04
step 08
