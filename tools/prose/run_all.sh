#!/bin/bash
# Rewrite the book's measured sentences (notebook markdown, README, results/README) from the committed
# tables of results/tables/default, in order; each script is idempotent. Then regenerate the executed
# copies (fedshield reproduce --profile default --only NAME --no-build) of the chapters it touched.
set -e
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
for g in prose attack_prose ch235_table3 s6_readme s6_ch10; do
  echo "== $g"
  OMP_NUM_THREADS=1 FEDSHIELD_DATA=${FEDSHIELD_DATA:-../shared/data} $PY tools/prose/$g.py | tail -1
done
