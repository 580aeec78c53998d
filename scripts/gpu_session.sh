#!/usr/bin/env bash
# A lent GPU machine's whole job in one command of at most 9.5 minutes (docs/testing.md, "A GPU session"):
#
#   OUT=gpu_out bash scripts/gpu_session.sh        on the GPU machine (torch, Triton and pytest preinstalled)
#   bash scripts/gpu_session.sh --dry-run          the same stages on a CPU in under 3 minutes (CI runs it)
#
# Stages, each time-boxed against one deadline (SESSION_SECONDS, default 570; 170 for --dry-run) so that a
# stuck stage costs its own box and never the figures of the others:
#   env     python, torch, Triton, driver, GPU, commit                              -> summary.txt
#   build   interir._C: a carried prebuilt one when it imports with this torch, else built in place
#           (CUDA_HOME found from nvcc, CPATH set when the toolkit lacks headers torch includes, ptxas -v
#           figures in the log)                                                     -> build.log
#   check   interir check: every backend against the float64 reference, timed; rewritten after every row
#                                                                                   -> check.json
#   tests   the GPU and fused-kernel tests: no -x, a per-test limit, one line per test in session.log,
#           junit XML (also when the stage's limit interrupts it)                   -> tests.xml
#   bench   the op benchmarks, then the model suite (eager), each case appended as it finishes
#                                                                                   -> bench.jsonl, bench_*.json/.md
# A stage that reaches its limit gets SIGINT (Python's Ctrl-C: check, pytest and bench report what finished),
# and SIGKILL 15 s later.
# Every stage's terminal output goes to session.log; at most 8 files come back. Offline-safe: nothing is
# downloaded or installed, and a missing .git only means "unknown" in the commit field.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
if [ $# -gt 0 ]; then echo "usage: bash scripts/gpu_session.sh [--dry-run]" >&2; exit 2; fi
if [ $dry = 1 ]; then budget=${SESSION_SECONDS:-170}; else budget=${SESSION_SECONDS:-570}; fi
[[ $budget =~ ^[1-9][0-9]*$ ]] || { echo "gpu_session: SESSION_SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2; }
[[ ${TEST_WORKERS:-8} =~ ^[1-9][0-9]*$ ]] || { echo "gpu_session: TEST_WORKERS must be a whole number ≥ 1, got '$TEST_WORKERS'" >&2; exit 2; }
out=${OUT:-gpu_out}
mkdir -p "$out" || { echo "gpu_session: cannot create the output folder $out" >&2; exit 2; }
py=${PYTHON:-python}
start=$(date +%s)
deadline=$((start + budget))
summary=$out/summary.txt
log=$out/session.log
: > "$summary"
: > "$log"
status=0

say() { echo "$*" | tee -a "$summary"; }

# run_stage NAME CAP RESERVE CMD...: CMD under a limit of min(CAP, time left - RESERVE) seconds, its output
# appended to session.log (or to $STAGE_LOG); one line with its exit code and time goes to the summary.
run_stage() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local now allowed t0 rc dest=${STAGE_LOG:-$log}
  now=$(date +%s)
  allowed=$(( deadline - now - reserve ))
  (( allowed > cap )) && allowed=$cap
  if (( allowed < 10 )); then
    say "$name: not run (${allowed} s left for it)"
    status=1
    return 1
  fi
  echo "=== $name (limit ${allowed} s): $*" >> "$dest"
  t0=$(date +%s)
  timeout -s INT -k 15 "$allowed" "$@" >> "$dest" 2>&1
  rc=$?
  if (( rc == 124 || rc == 137 )); then
    say "$name: cut at its ${allowed} s limit (rc $rc)"
  else
    say "$name: rc $rc in $(( $(date +%s) - t0 )) s"
  fi
  (( rc == 0 )) || status=1
  return $rc
}

# ----------------------------------------------------------------------------------------------------- env
{
  echo "gpu_session $( ((dry)) && echo '--dry-run ')started $(date -u +%FT%TZ), budget ${budget} s"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | head -4
  else
    echo "nvidia-smi: not found"
  fi
  "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda, "| gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)' 2>&1
  "$py" -c 'import triton; print("triton", triton.__version__)' 2>&1
  command -v nvcc >/dev/null && nvcc --version | tail -1
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown) (the .git that travelled; it may lag the tree)"
  # What ran, independent of any .git: one hash of the sources (the same command here names the commit).
  echo "sources sha1 $(find interir kernels csrc scripts tests bench -type f \( -name '*.py' -o -name '*.cu*' -o \
    -name '*.h' -o -name '*.cpp' -o -name '*.sh' \) -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat | sha1sum | cut -c1-12)"
} >> "$summary" 2>&1
cat "$summary"

# Per stage: the most it may take (cap) and the time it leaves to the stages after it (reserve), in seconds of
# the nominal budget (170 s dry, 570 s on a GPU); a SESSION_SECONDS of another length scales them all.
if [ $dry = 1 ]; then
  export TRITON_INTERPRET=1 INTERIR_CUDA_EMULATE=1
  nominal=170
  build_cap=20 build_reserve=130 check_cap=60 check_reserve=90 tests_cap=60 tests_reserve=30 bench_cap=60
else
  nominal=570
  build_cap=240 build_reserve=300 check_cap=200 check_reserve=220 tests_cap=200 tests_reserve=90 bench_cap=400
fi
for v in build_cap build_reserve check_cap check_reserve tests_cap tests_reserve bench_cap; do
  printf -v "$v" %d $(( ${!v} * budget / nominal ))
done

# --------------------------------------------------------------------------------------------------- build
build_extension() {
  # A carried prebuilt interir/_C*.so is used when it imports with this torch.
  # (torch first: the extension links against the libraries `import torch` loads)
  if ls interir/_C*.so >/dev/null 2>&1; then
    if "$py" -c 'import torch, interir._C' 2>&1 | tail -1; then
      echo "build: the carried interir._C imports with this torch; not rebuilt"
      return 0
    fi
    echo "build: the carried interir._C does not import here (above); building it"
  fi
  [ "$dry" = 1 ] || rm -f interir/_C*.so  # one that does not import (another torch) is replaced
  if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit of the nvcc on PATH (it may be a wrapper), else a usual place
    local nvcc candidate
    nvcc=$(command -v nvcc || true)
    for candidate in ${nvcc:+"$(dirname "$(dirname "$(readlink -f "$nvcc")")")"} /usr/local/cuda /usr/local/cuda-*; do
      if [ -x "$candidate/bin/nvcc" ] && [ -f "$candidate/include/cuda_runtime.h" ]; then
        CUDA_HOME=$candidate
        break
      fi
    done
    [ -n "${CUDA_HOME:-}" ] || { echo "build: no CUDA toolkit (nvcc) found; the cuda backend stays unavailable"; return 1; }
  fi
  export CUDA_HOME
  if [ ! -f "$CUDA_HOME/include/cusparse.h" ]; then  # headers torch includes, from the CUDA wheels beside torch
    local site extra
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    extra=$(dirname "$(find "$site/nvidia" -name cusparse.h -print -quit 2>/dev/null || echo /nonexistent/x)")
    [ -d "$extra" ] && export CPATH="${extra}${CPATH:+:$CPATH}"
  fi
  echo "build: CUDA_HOME=$CUDA_HOME CPATH=${CPATH:-}"
  if [ $dry = 1 ]; then
    echo "build: dry run: would run FORCE_CUDA=1 INTERIR_PTXAS_VERBOSE=1 $py setup.py build_ext --inplace"
    return 0
  fi
  FORCE_CUDA=1 INTERIR_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-16} "$py" setup.py -q build_ext --inplace
}
export -f build_extension
export py dry
: > "$out/build.log"
STAGE_LOG=$out/build.log run_stage build $build_cap $build_reserve bash -c build_extension
grep "^build:" "$out/build.log" >> "$log"
if [ $dry = 0 ]; then  # the ptxas -v gate of the extension as built here (no spill, no stack in block reductions)
  "$py" -m interir.check.cuda_report "$out/build.log" 2>&1 | grep -E "^(gate:|[0-9]+ CUDA kernels)" | tee -a "$summary"
fi
"$py" -c 'from interir import ops; print("backends:", ops.available_backends())' 2>&1 | tee -a "$summary"

# --------------------------------------------------------------------------------------------------- check
if [ $dry = 1 ]; then
  run_stage check $check_cap $check_reserve "$py" -m interir check --device cpu --emulate --quick --json "$out/check.json"
else
  run_stage check $check_cap $check_reserve "$py" -m interir check --device cuda --json "$out/check.json"
fi

# --------------------------------------------------------------------------------------------------- tests
export INTERIR_TEST_TIMEOUT=${INTERIR_TEST_TIMEOUT:-60}
if [ $dry = 1 ]; then
  tests=${TESTS:-tests/test_auto.py tests/test_cuda_extension.py}
else
  tests=${TESTS:-tests}
fi
# pytest-xdist, where installed, runs the tests in parallel processes: a worker that crashes (a segfault in an
# extension) is reported as that test's failure and replaced, instead of ending the stage.
parallel=""
if [ $dry = 0 ] && "$py" -c 'import xdist' 2>/dev/null; then parallel="-n ${TEST_WORKERS:-8}"; fi
# shellcheck disable=SC2086
run_stage tests $tests_cap $tests_reserve "$py" -m pytest -p no:cacheprovider -m "gpu or kernels" -v -rfE --durations=15 $parallel \
  --junitxml "$out/tests.xml" $tests
grep -E "^(FAILED|ERROR) |^=+ .*(passed|failed|error).* =+$" "$log" | tail -12 | tee -a "$summary" >/dev/null
# A test that crashed its worker (a segfault in an extension) is run again alone under cuda-gdb, when there is
# one, for the native backtrace (into session.log).
if [ -f "$out/tests.xml" ] && command -v cuda-gdb >/dev/null; then
  grep -o "crashed while running '[^']*'" "$out/tests.xml" | sed "s/.*running '//; s/'$//" | sort -u | head -2 |
  while read -r nodeid; do
    STAGE_LOG=$log run_stage "backtrace of $nodeid" 60 60 cuda-gdb -batch -ex run -ex bt \
      --args "$py" -m pytest -p no:cacheprovider -q "$nodeid"
  done
fi

# --------------------------------------------------------------------------------------------------- bench
if [ $dry = 1 ]; then
  run_stage bench $bench_cap 0 "$py" -m bench --device cpu --suite ops --smoke --out "$out" --jsonl "$out/bench.jsonl"
else
  run_stage bench $bench_cap 0 "$py" -m bench --device cuda --suite all --compile off --out "$out" \
    --jsonl "$out/bench.jsonl"
fi
for f in "$out"/*.json "$out"/*.md; do
  case $(basename "$f") in check.json) ;; *) [ -f "$f" ] && mv -f "$f" "$out/bench_$(basename "$f")" ;; esac
done

say "gpu_session: finished in $(( $(date +%s) - start )) s of ${budget} s, status $status"
exit $status
