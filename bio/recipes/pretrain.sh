#!/usr/bin/env bash
# Runs one BioALBERT pretraining recipe (a flagfile in this directory).
#
#   bio/recipes/pretrain.sh RECIPE INPUT_GLOB OUTPUT_DIR ALBERT_CHECKPOINT [FLAGS...]
#
# RECIPE is a file name here (e.g. bioalbert_1.0_base_pubmed.flags) or a path;
# INPUT_GLOB the pretraining TFRecords (comma-separated globs allowed);
# ALBERT_CHECKPOINT the released ALBERT checkpoint the paper starts from.
# Extra FLAGS are passed on and override the recipe (e.g. --use_tpu
# --tpu_name=my-tpu, --do_eval, --spm_model_file). The vocabulary stays
# ALBERT's: the 30k-clean.model beside ALBERT_CHECKPOINT is passed as
# --spm_model_file unless FLAGS give one. Set PYTHON for the interpreter.
set -euo pipefail

if [ "$#" -lt 4 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

recipe="$1"; input="$2"; output="$3"; init="$4"; shift 4
if [ ! -f "$recipe" ] && [ -f "$here/$recipe" ]; then
  recipe="$here/$recipe"
fi
if [ ! -f "$recipe" ]; then
  echo "pretrain.sh: recipe not found: $1" >&2
  exit 2
fi

# The script runs from the repository root (the recipes' config paths are
# relative to it), so local paths given here are made absolute first.
absolute() {
  case "$1" in
    /*|*://*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "$1" ;;
  esac
}
inputs=""
IFS=',' read -r -a patterns <<< "$input"
for p in "${patterns[@]}"; do
  inputs="${inputs:+$inputs,}$(absolute "$p")"
done
recipe="$(absolute "$recipe")"
output="$(absolute "$output")"
init="$(absolute "$init")"

spm=()
init_dir="$init"
[ -d "$init_dir" ] || init_dir="$(dirname "$init")"
case " $* " in
  *" --spm_model_file="*) ;;
  *) if [ -f "$init_dir/30k-clean.model" ]; then
       spm=(--spm_model_file="$init_dir/30k-clean.model")
     fi ;;
esac

cd "$root"
exec "${PYTHON:-python}" run_pretraining.py \
  --flagfile="$recipe" \
  --input_file="$inputs" \
  --output_dir="$output" \
  --init_checkpoint="$init" \
  ${spm[@]+"${spm[@]}"} \
  "$@"
