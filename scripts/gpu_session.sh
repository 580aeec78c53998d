#!/usr/bin/env bash
# A GPU machine's whole job in one command (build, test, benchmark), for machines lent for minutes:
#   OUT=results/ bash scripts/gpu_session.sh [build] [test] [bench]     (default: all three, in that order)
# Writes env.txt, build.log, tests.log, bench.log and the bench JSON + markdown into $OUT (default gpu_out/).
# Offline-safe: builds interir._C in place with the torch already installed (no downloads, no dependency changes).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
mkdir -p "$out"
stages=${*:-build test bench}
status=0

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  python -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  python -c 'import triton; print("triton", triton.__version__)' 2>&1
  command -v nvcc && nvcc --version | tail -1
  git rev-parse HEAD 2>/dev/null
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

if [[ " $stages " == *" build "* ]]; then
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  start=$(date +%s)
  if FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} python -m pip install --no-build-isolation --no-deps --no-index -e . \
      > "$out/build.log" 2>&1; then
    echo "build: interir._C built in $(( $(date +%s) - start )) s"
  else
    echo "build: FAILED after $(( $(date +%s) - start )) s (tail of build.log below)"; tail -25 "$out/build.log"; status=1
  fi
fi

if [[ " $stages " == *" test "* ]]; then
  python -c 'from interir import ops; print("backends:", ops.available_backends())'
  timeout "${TEST_TIMEOUT:-420}" python -m pytest -q -x -p no:cacheprovider \
      tests/test_backend_explainable_conv.py tests/test_backend_kron.py tests/test_backend_fft_loss.py \
      tests/test_backends.py tests/test_cuda_extension.py ${PYTEST_ARGS:-} > "$out/tests.log" 2>&1 || status=1
  tail -15 "$out/tests.log"
fi

if [[ " $stages " == *" bench "* ]]; then
  timeout "${BENCH_TIMEOUT:-540}" python -m bench --device cuda --out "$out" ${BENCH_ARGS:-} > "$out/bench.log" 2>&1 \
      || status=1
  tail -40 "$out/bench.log"
fi
exit $status
