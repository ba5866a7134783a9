#!/usr/bin/env bash
# Fail fast, with the numbers, when a folder's file system has too little free space for what
# is about to be installed there.
#
#   scripts/require_free_space.sh DIR GIB WHAT
#
# Why: the two environments `make test` builds take 7.1 GB (.venv) and 6.5 GB (the vLLM venv),
# most of it CUDA libraries that torch's wheels pull in. A build that runs out of disk dies
# minutes in with pip's bare "[Errno 28] No space left on device" and a half-installed venv;
# this check says before the first download how much is needed, where, and how much is free.
# DFER_SKIP_SPACE_CHECK=1 skips it (a file system whose free space df misreports).
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 DIR GIB WHAT" >&2
    exit 2
fi
dir=$1 need_gib=$2 what=$3
[[ "${DFER_SKIP_SPACE_CHECK:-}" == 1 ]] && exit 0

# The folder may not exist yet: measure the nearest ancestor that does.
probe=$dir
while [[ ! -d "$probe" ]]; do
    probe=$(dirname "$probe")
done
free_kib=$(df -Pk "$probe" | awk 'NR == 2 {print $4}')
need_kib=$((need_gib * 1024 * 1024))
if ((free_kib < need_kib)); then
    free_gib=$(awk -v k="$free_kib" 'BEGIN {printf "%.1f", k / 1048576}')
    echo "$what needs about $need_gib GiB free in $dir; its file system has $free_gib GiB." >&2
    echo "  Free some space there (or point DFER_VLLM_VENV elsewhere for the vLLM venv);" \
         "DFER_SKIP_SPACE_CHECK=1 skips this check." >&2
    exit 1
fi
