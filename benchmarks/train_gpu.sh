#!/usr/bin/env bash
# How the shipped photo embedder and sketch encoder were trained on the lent GPU machine (one call, two
# configurations side by side on one GPU). Needs a shrunk copy of the data set in .devdata/clothing-dataset:
#   python -m oscar_fashion_ai.ml.datasets shrink ../shared/datasets/clothing-dataset .devdata/clothing-dataset --max-side 200 --quality 75
# Writes runs/gpu/<config>/ and, when $OUT is set, a tarball of runs/gpu (split in 15 MB parts) there.
set -uo pipefail
SRC=${SRC:-.devdata/clothing-dataset}
INIT=${INIT:-oscar_fashion_ai/weights/lite0-fashion.safetensors}
COMMON="--source $SRC --variants 4 --workers 16 --pairs-cache runs/pairs"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
quiet() { tr '\r' '\n' | grep -v "it/s" || true; }

# the decoded photos and drawings, once, for both configurations
python3 -c "
import sys; from oscar_fashion_ai.ml import pairs; from oscar_fashion_ai.ml.training.splits import labelled_split
pairs.load(labelled_split('$SRC')[0], 160, 4, 0, 16, progress=False, cache_dir='runs/pairs')"

chain() {  # name, pair weight
    local dir=runs/gpu/$1
    mkdir -p "$dir"
    python3 -m oscar_fashion_ai.ml.train_embedder $COMMON --out "$dir/lite0-fashion.safetensors" --mode full \
        --sketch-tower --pair-weight "$2" --half --init-weights "$INIT" --epochs 45 --batch-size 256 --max-minutes 4.5 \
        2>&1 | quiet > "$dir/joint.log"
    python3 -m oscar_fashion_ai.ml.train_sketch_encoder $COMMON --photo-weights "$dir/lite0-fashion.safetensors" \
        --init-weights "$dir/lite0-fashion-sketch.safetensors" --out "$dir/refined/lite0-fashion-sketch.safetensors" \
        --epochs 30 --batch-size 256 --max-minutes 1.5 2>&1 | quiet > "$dir/refine.log"
}
chain pw1.0 1.0 & a=$!
chain pw0.5 0.5 & b=$!
wait $a || echo "pw1.0 failed"; wait $b || echo "pw0.5 failed"
tail -n 2 runs/gpu/*/*.log
if [ -n "${OUT:-}" ]; then
    tar czf - --exclude checkpoints -C runs gpu | split -b 15M - "$OUT/gpu.tgz.part-"
fi
