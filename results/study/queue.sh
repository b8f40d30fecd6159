#!/usr/bin/env bash
# The study edition's runs, in the order the book's question needs them (chapters 5-7 first, then seeds).
# Each step executes a chapter at the study profile; its training and evaluation records land in
# results/study/runs (profiles.COMMITTED_RECORDS), a finished run is reused and an interrupted one resumes
# from its last epoch's checkpoint. So the script can be stopped and started again at any point:
#
#     bash results/study/queue.sh            # from the repository root, after the README's install
#
# Commit each run folder once its record.json says "finished" (results/study/status.py lists them).
set -euo pipefail
cd "$(dirname "$0")/../.."
export KAFNOTES_CIFAR10="${KAFNOTES_CIFAR10:-$(realpath ../shared/data/cifar10-jpeg75-50k.npz)}"  # absolute: kernels run elsewhere
kafnotes=.venv/bin/kafnotes
step() { echo "== $(date -u +%FT%TZ) kafnotes run $*"; "$kafnotes" run "$@" --profile study --jobs 1; }

# Chapter 5, one seed: ReLU (trained on Wong et al.'s schedule, evaluated here) and KAF decide the question.
step 05 -p "activations=['relu', 'kaf']" -p "n_fgsm=[]"
step 05 -p "activations=['elu', 'swish']" -p "n_fgsm=[]"
step 05 -p "activations=['relu', 'swish', 'kaf']" -p "n_fgsm=['relu', 'swish', 'kaf']"
step 05 -p "activations=['kaf_relu', 'kaf_elu', 'kaf_swish', 'kaf_free']" -p "n_fgsm=[]"
# A second seed for the activations the conclusion turns on.
step 05 -p "activations=['relu', 'kaf']" -p "n_fgsm=[]" -p seeds=2
# Chapter 7 needs no training: every published model on every test image.
step 07
# The whole chapter 5 and 6 at study, reusing the runs above.
step 05 -p seeds=2 -p "activations=['relu', 'kaf', 'elu', 'kaf_relu', 'kaf_elu', 'swish', 'kaf_swish', 'kaf_free']"
step 06
