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

# Chapter 5, one seed: ReLU (trained on Wong et al.'s schedule) and KAF decide the question.
step 05 -p "activations=['relu', 'kaf']" -p "n_fgsm=[]"
# Chapter 7 needs no training: the published models the conclusions turn on first (the sound and the
# overfit ReLU, the KAF of Table 7.2's row; the last two also get the step and eps curves), then the rest.
step 07 -p "published=['resnet20_kaf_ocrob_lrfinder', 'resnet20_relu_ocrob_lrf', 'resnet20_relu_ocrob']"
step 05 -p "activations=['elu', 'swish']" -p "n_fgsm=[]"
step 07
step 05 -p "activations=['relu', 'swish', 'kaf']" -p "n_fgsm=['relu', 'swish', 'kaf']"
step 05 -p "activations=['kaf_relu', 'kaf_elu', 'kaf_swish', 'kaf_free']" -p "n_fgsm=[]"
# A second seed for the activations the conclusion turns on.
step 05 -p "activations=['relu', 'kaf']" -p "n_fgsm=[]" -p seeds=2
# The whole of chapters 5 and 6 as the edition builds them (the profile's seeds), reusing the runs above,
# and the closing chapter.
step 05
step 06
step 08
