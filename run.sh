#!/usr/bin/env bash
# The main job on embedded defaults: set up .venv if needed, then tune the bundled example
# (a PyTorch MLP on scikit-learn's digits) into the SQLite study studies/mlp-digits.db.
# It warm-starts from the prior in studies/mlp.prior.safetensors, meta-learned from the past
# studies in studies/past/ (regenerate both with examples/make_past_studies.py).
# Extra arguments go to `mttune run` (e.g. ./run.sh --n-trials 40). Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/mttune run examples/mlp_sklearn.py \
  --space search_spaces/mlp.yaml \
  --study mlp-digits \
  --n-trials 20 \
  --seed 0 \
  --prior studies/mlp.prior.safetensors \
  "$@"
