#!/usr/bin/env bash
# streamae and every baseline on the shared labelled data: NAB (58 series, each trained on
# its first 15%, NAB's probationary period) and SMD (3 machines, trained on their train
# files). Usage: bench/evaluate_datasets.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
data=${1:-../shared/data}
out=${2:-runs/datasets}
streamae=${STREAMAE:-streamae}
baselines=rolling-zscore,pca,isolation-forest,half-space-trees
$streamae evaluate -q --dataset nab --path "$data/nab" --out "$out/nab" --baselines "$baselines" --plots 8
$streamae evaluate -q --dataset smd --path "$data/smd" --out "$out/smd" --baselines "$baselines" --plots 2
