#!/usr/bin/env bash
# Backtest streamae and baselines on the shared labelled data (SMD per machine; NAB, all
# 58 series as keys of one run). Usage: bench/evaluate_datasets.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
data=${1:-../shared/data}
out=${2:-runs/datasets}
streamae=${STREAMAE:-streamae}
for m in machine-1-2 machine-2-1 machine-3-2; do
  $streamae backtest -q --train "$data/smd/${m}_train.csv.gz" --input "$data/smd/${m}_test.csv.gz" \
    --out "$out/smd/$m" --baselines pca,half-space-trees,rolling-zscore
done
# NAB: one shared model over all series, trained on each series' first 15% (NAB's
# probationary period); metrics on the remaining 85%.
$streamae backtest -q --train-head 0.15 --input $(find "$data/nab" -name '*.csv.gz' | sort) \
  --out "$out/nab" --baselines pca,half-space-trees,rolling-zscore --plots 8
