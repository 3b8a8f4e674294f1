#!/usr/bin/env bash
# GPU evidence for the four GPU-sized recipes, in two short commands on a GPU machine that has nothing but
# this repository, the MNIST files carried along (gpu-data/) and its own preinstalled PyTorch.
# `tools/gpu_campaign.sh` with no argument prints the usage: what to pass to the device tool, exactly.
set -uo pipefail

usage() {
    cat <<'EOF'
tools/gpu_campaign.sh: GPU evidence for ultimate_mlp, fc_sigmoid_bn, fc_sigmoid, vgg_mnist in two device commands.

Here, on the CPU, once (nothing here needs a GPU):
  tools/gpu_campaign.sh prepare              gpu-data/MNIST/raw/*.gz: the four MNIST files gzipped (~11 MB,
                                             ignored by git), checked against MNIST's SHA-256
  tools/gpu_campaign.sh check --dry-run      what command 1 runs
  tools/gpu_campaign.sh campaign --dry-run   what command 2 runs, with each recipe's time estimate here

Device command 1, at most 5 minutes: the CUDA tests (tests/test_gpu.py -m gpu: every torch recipe one short
epoch with each step; check-determinism bitwise for mnist_99_4 and ultimate_mlp, graph and eager; a graph run
cut and resumed), the step for command 2, `bench speed` for ultimate_mlp and mnist_99_4 (eager vs graph step,
faithful vs fast, the floor), a search for CIFAR-10 copies on the machine:
  run(command="bash tools/gpu_campaign.sh check", carry=["gpu-data"], timeout_s=300)
  back (files_at): check.log, gpu-tests.xml, gpu-report.jsonl, step.txt, cifar.txt
  then, here:      cp <files_at>/step.txt gpu-data/step.txt      (command 2 then runs the step it names;
                   without it, command 2 probes the graph step itself for about 30 s)

Device command 2, at most 9 minutes: canonical seeds of ultimate_mlp, fc_sigmoid_bn, fc_sigmoid, vgg_mnist, in
that order, under one budget split 45/20/20/15 (time a recipe leaves goes to the next), several seeds at once
on the GPU (--jobs), then every new record packed into one archive:
  run(command="bash tools/gpu_campaign.sh campaign --minutes 8.5", carry=["gpu-data"], timeout_s=560)
  --minutes M must leave the tool room: timeout_s = 60*M + 50, and M <= (budget_left_s - 60)/60 from the
  device tool's status (subtract 120 s more when the machine is no longer warm: a fresh one takes minutes
  to start). E.g. 8.5 and 560 when 9.5+ minutes are left on a warm machine; 7 and 470 with 8.5 left.
  Options: --step eager|graph (else gpu-data/step.txt, else a probe), --jobs N (seeds at once, every
  recipe; default 3 for ultimate_mlp, 2 for fc_sigmoid_bn and fc_sigmoid, 1 for vgg_mnist).
  back (files_at): campaign.log, records.tar.gz (every results/**/*.json the command wrote, and the logs of
                   failed --jobs children), step.txt
  then, here:      tar xzf <files_at>/records.tar.gz && python -m bench report

Environment: PYTHON (default python3), BENCH_DATA_DIR (default gpu-data), OUT (the device tool sets it; else
gpu-out/, ignored by git). The GPU machine reaches no package index: the script needs only torch,
torchvision, numpy, pandas, scipy, tabulate, tqdm, matplotlib, threadpoolctl and pytest, all preinstalled.
EOF
}

cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
DATA=${BENCH_DATA_DIR:-gpu-data}
OUT=${OUT:-gpu-out}
export BENCH_DATA_DIR=$DATA PYTHONUNBUFFERED=1
MNIST_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
RECIPES=(ultimate_mlp fc_sigmoid_bn fc_sigmoid vgg_mnist)
SHARES=(45 20 20 15)
FIRST_WAVE=(3 2 2 1)
SEED_THREADS=4              # CPU threads per seed on the GPU machine (not part of a CUDA run's key)

now() { date +%s; }
say() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() { echo "error: $*" >&2; exit 2; }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
have_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# A dry run here must not unpack the carried .gz files in gpu-data (55 MB more to carry, over the 64 MiB a
# device call takes): it reads data/ when that holds MNIST, else a temporary copy of the .gz files.
dry_data() {
    local f here=data
    for f in "${MNIST_FILES[@]}"; do
        [ -e "data/MNIST/raw/$f" ] || [ -e "data/MNIST/raw/$f.gz" ] || here=""
    done
    if [ -n "$here" ]; then
        DATA=data
    else
        need_data
        DRY_TMP=$(mktemp -d); mkdir -p "$DRY_TMP/MNIST/raw"; cp "$DATA"/MNIST/raw/*.gz "$DRY_TMP/MNIST/raw/"
        trap 'rm -rf "$DRY_TMP"' EXIT
        DATA=$DRY_TMP
    fi
    export BENCH_DATA_DIR=$DATA
}

carried_size_check() {      # gpu-data must stay small: the gzipped files only
    local extra
    extra=$(find gpu-data -type f ! -name '*.gz' ! -name step.txt 2>/dev/null | head -3)
    [ -z "$extra" ] || echo "warning: gpu-data holds more than the .gz files ($extra ...): delete them, or the" \
        "device call carries too much (run tools/gpu_campaign.sh prepare again)"
}

need_data() {
    local f
    for f in "${MNIST_FILES[@]}"; do
        [ -e "$DATA/MNIST/raw/$f.gz" ] || [ -e "$DATA/MNIST/raw/$f" ] ||
            die "$DATA/MNIST/raw/$f.gz is missing: run tools/gpu_campaign.sh prepare here, and carry gpu-data"
    done
}

machine() {
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
}

# ---------------------------------------------------------------- prepare (here)

cmd_prepare() {
    local src=${1:-data}/MNIST/raw f
    mkdir -p gpu-data/MNIST/raw
    for f in "${MNIST_FILES[@]}"; do
        if [ -e "$src/$f" ]; then
            gzip -9 -n -c "$src/$f" >"gpu-data/MNIST/raw/$f.gz.tmp" && mv "gpu-data/MNIST/raw/$f.gz.tmp" "gpu-data/MNIST/raw/$f.gz"
        elif [ -e "$src/$f.gz" ]; then
            cp "$src/$f.gz" "gpu-data/MNIST/raw/$f.gz"
        else
            die "$src/$f is missing: python -m bench data fetch mnist first (or give the data folder: prepare DIR)"
        fi
    done
    "$PY" - <<'PYEOF' || die "gpu-data/MNIST/raw: a file fails MNIST's checksum; delete gpu-data and rerun prepare"
import gzip, hashlib, sys
from bench.training.data import MNIST_RAW
for spec in MNIST_RAW:
    with gzip.open(f"gpu-data/MNIST/raw/{spec.name}.gz", "rb") as f:
        ok = hashlib.sha256(f.read()).hexdigest() == spec.sha256
    print(f"  {spec.name}.gz {'verified' if ok else 'CHECKSUM MISMATCH'}")
    if not ok:
        sys.exit(1)
PYEOF
    find gpu-data/MNIST/raw -type f ! -name '*.gz' -delete       # only the .gz files travel
    git check-ignore -q gpu-data || echo "warning: gpu-data/ is not ignored by git: add /gpu-data/ to .gitignore"
    echo "gpu-data: $(du -sh gpu-data | cut -f1) (carry it: carry=[\"gpu-data\"])"
}

# ---------------------------------------------------------------- command 1: check

choose_step() {     # the step for command 2, from the CUDA tests' results: graph only if every graph test passed
    "$PY" - "$OUT/gpu-tests.xml" "$OUT/gpu-report.jsonl" <<'PYEOF'
import json, os, sys
import xml.etree.ElementTree as ET
junit, report = sys.argv[1:3]
rows = [json.loads(line) for line in open(report)] if os.path.exists(report) else []
cases = []
if os.path.exists(junit):
    for tc in ET.parse(junit).iter("testcase"):
        state = ("failed" if tc.find("failure") is not None or tc.find("error") is not None
                 else "skipped" if tc.find("skipped") is not None else "passed")
        cases.append((tc.get("name", ""), state))
graph = [(n, s) for n, s in cases if "graph" in n]
bad = [n for n, s in graph if s == "failed"] + [f"{r['recipe']} determinism" for r in rows
                                                 if r["step"] == "graph" and not r["ok"]]
passed = [n for n, s in graph if s == "passed"]
rows_ok = [r for r in rows if r["step"] == "graph" and r["ok"]]
if bad:
    step, why = "eager", "graph-step tests failed: " + ", ".join(bad[:8])
elif passed:
    step, why = "graph", f"{len(passed)} graph-step tests passed, none failed"
elif not cases and len(rows_ok) >= 2:
    step, why = "graph", "no junit file (pytest cut short?), but the graph determinism checks that ran passed"
else:
    step, why = "eager", "no graph-step test passed (none ran: no CUDA, or pytest stopped early)"
eager_bad = [n for n, s in cases if "eager" in n and s == "failed"]
print(step)
print(f"why: {why}")
if eager_bad:
    print("EAGER TESTS FAILED TOO: " + ", ".join(eager_bad[:8]))
sha = {}
for r in rows:
    sha.setdefault(r["recipe"], {})[r["step"]] = r.get("sha")
for recipe, s in sha.items():
    if "graph" in s and "eager" in s and s["graph"] and s["eager"]:
        print(f"{recipe}: graph and eager steps give {'the same' if s['graph'] == s['eager'] else 'different'} "
              f"final weights ({s['graph']} vs {s['eager']})")
PYEOF
}

cmd_check() {
    local dry=0 budget=${CHECK_SECONDS:-285}
    while [ $# -gt 0 ]; do
        case $1 in --dry-run) dry=1 ;; *) die "check: unknown option $1" ;; esac; shift
    done
    if [ $dry = 1 ]; then
        carried_size_check
        echo "command 1 would run, within $budget s (OUT=$OUT, BENCH_DATA_DIR=$DATA):"
        echo "  $PY -m pytest tests/test_gpu.py -m gpu -q --junitxml=\$OUT/gpu-tests.xml   (BENCH_GPU_REPORT=\$OUT/gpu-report.jsonl)"
        echo "  the step for command 2 -> \$OUT/step.txt (graph only if every graph-step test passed)"
        echo "  $PY -m bench speed --recipe ultimate_mlp --epochs 2 --device cuda"
        echo "  $PY -m bench speed --recipe mnist_99_4 --epochs 2 --device cuda"
        echo "  find / -name cifar-10-batches-py -o -name cifar-10-python.tar.gz (25 s at most) -> \$OUT/cifar.txt"
        echo "CUDA tests collected (skipped here without a GPU):"
        "$PY" -m pytest tests/test_gpu.py -m gpu -q --co -p no:cacheprovider 2>&1 | tail -3
        have_cuda || echo "note: torch sees no CUDA device here: on this machine every gpu test is skipped"
        return 0
    fi
    need_data
    mkdir -p "$OUT" gpu-out
    check_body "$budget" 2>&1 | tee -a "$OUT/check.log"
    return "${PIPESTATUS[0]}"
}

check_body() {
    local budget=$1 start deadline left t recipe
    start=$(now); deadline=$((start + budget))
    say "command 1: check (budget $budget s)"; machine
    rm -f "$OUT/gpu-report.jsonl" "$OUT/gpu-tests.xml"
    left=$((deadline - $(now)))
    say "CUDA tests (at most $(min 170 $((left - 110))) s)"
    BENCH_GPU_REPORT="$OUT/gpu-report.jsonl" timeout -k 10 "$(min 170 $((left - 110)))" \
        "$PY" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml"
    say "pytest exit status $?"
    choose_step | tee "$OUT/step.txt"
    cp "$OUT/step.txt" gpu-out/step.txt
    for recipe in ultimate_mlp mnist_99_4; do        # the time left, shared by the two (and 30 s for the search)
        left=$((deadline - $(now)))
        if [ "$recipe" = ultimate_mlp ]; then t=$(( (left - 30) / 2 )); else t=$((left - 30)); fi
        if [ "$t" -lt 20 ]; then say "no time left for bench speed --recipe $recipe"; continue; fi
        say "bench speed --recipe $recipe (at most $t s)"
        timeout -k 10 "$t" "$PY" -m bench speed --recipe "$recipe" --epochs 2 --device cuda
        say "speed exit status $? (124: cut at $t s; the repetitions above are what it measured)"
    done
    left=$((deadline - $(now)))
    say "CIFAR-10 copies on this machine ($(min 25 $((left > 6 ? left - 5 : 1))) s at most):"
    timeout -k 2 "$(min 25 $((left > 6 ? left - 5 : 1)))" find / \( -path /proc -o -path /sys -o -path /dev \) -prune \
        -o \( -name cifar-10-batches-py -o -name cifar-10-python.tar.gz \) -print 2>/dev/null | tee "$OUT/cifar.txt"
    [ -s "$OUT/cifar.txt" ] || echo "none found" | tee "$OUT/cifar.txt"
    say "command 1 done in $(( $(now) - start )) s; step for command 2: $(head -1 "$OUT/step.txt")"
}

# ---------------------------------------------------------------- command 2: campaign

probe_step() {      # no step file: ask the GPU itself (about 30 s)
    if timeout -k 5 90 "$PY" -m bench check-determinism --recipe ultimate_mlp --device cuda --step graph \
        --epochs 1 --train-limit 4096 --eval-limit 1000 --no-progress >&2; then
        echo graph
    else
        echo eager
    fi
}

records_of() { find "results/$1" -maxdepth 1 -name '*.json' -newer "$STAMP" 2>/dev/null | wc -l; }

# one recipe: waves of J seeds at once, each wave a `bench run` under the recipe's budget; the next wave is
# sized by the last one's wall time (a wave that would not fit shrinks to one seed, which bench run itself
# declines when its own estimate does not fit)
run_recipe() {
    local recipe=$1 budget=$2 jobs=$3 dry=$4 rdeadline seed=0 left t0 wave rc got before
    rdeadline=$(( $(now) + budget ))
    if [ "$dry" = 1 ]; then
        say "$recipe: budget $budget s, first wave $jobs seed(s) at once; plan and estimate:"
        "$PY" -m bench run --recipe "$recipe" --device "$DEV" --seeds "$jobs" --jobs "$jobs" --budget "${budget}s" \
            --step "$STEP" --threads "$SEED_THREADS" --no-progress --dry-run
        return
    fi
    while :; do
        left=$(( rdeadline - $(now) ))
        if [ "$left" -lt 40 ]; then say "$recipe: $left s left of its budget: done"; break; fi
        before=$(records_of "$recipe")
        say "$recipe: seeds $seed..$((seed + jobs - 1)), $jobs at once, budget ${left} s"
        t0=$(now)
        timeout -k 30 $((left + 60)) "$PY" -m bench run --recipe "$recipe" --device cuda --seeds "$jobs" \
            --seed-start "$seed" --jobs "$jobs" --budget "${left}s" --step "$STEP" --threads "$SEED_THREADS" \
            --no-progress 2>&1 | tee "$WAVE_LOG"
        rc=${PIPESTATUS[0]}
        wave=$(( $(now) - t0 ))
        got=$(( $(records_of "$recipe") - before ))
        say "$recipe: wave of $jobs took $wave s, exit $rc, $got new record(s)"
        seed=$((seed + jobs))
        if [ "$rc" -ne 0 ] || [ "$got" -lt "$jobs" ] || grep -q "budget spent" "$WAVE_LOG"; then break; fi
        left=$(( rdeadline - $(now) ))
        if [ $((left * 100)) -lt $((wave * 115)) ]; then jobs=1; fi
    done
}

pack() {
    local list
    list=$(mktemp)
    find results \( -name '*.json' -not -path '*/partial/*' -o -path '*/partial/*.log' \) -newer "$STAMP" -print \
        2>/dev/null | sort >"$list"
    if [ -s "$list" ]; then
        tar czf "$OUT/records.tar.gz" -T "$list"
        say "packed $(grep -c '\.json$' "$list") record(s) into \$OUT/records.tar.gz ($(du -h "$OUT/records.tar.gz" | cut -f1))"
    else
        say "no new record to pack"
    fi
    "$PY" - "$list" <<'PYEOF'
import json, sys
paths = [p.strip() for p in open(sys.argv[1]) if p.strip().endswith(".json")]
for p in paths:
    r = json.load(open(p))
    m = r.get("metrics", {})
    print(f"  {r['recipe']:14} seed {r['seed']:2} {r['status']:9} step {r.get('step')}: test acc "
          f"{m.get('test_acc_selected')} ({r['hparams'].get('selection')}), {r.get('wall_time_s', 0):.0f} s, "
          f"{r.get('env', {}).get('gpu')}")
PYEOF
    rm -f "$list"
}

cmd_campaign() {
    local dry=0 minutes=8.5 jobs_all=""
    STEP=""
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) dry=1 ;;
            --minutes) minutes=$2; shift ;;
            --step) STEP=$2; shift ;;
            --jobs) jobs_all=$2; shift ;;
            *) die "campaign: unknown option $1" ;;
        esac
        shift
    done
    [ -z "$STEP" ] || [ "$STEP" = graph ] || [ "$STEP" = eager ] || die "--step: graph or eager"
    local total
    total=$("$PY" -c "import sys; m = float(sys.argv[1]); assert 0 < m <= 9; print(int(m * 60))" "$minutes") ||
        die "--minutes: a number of minutes in (0, 9]"
    [ $dry = 1 ] || need_data
    mkdir -p "$OUT" gpu-out
    DEV=cuda
    if [ $dry = 1 ]; then
        carried_size_check
        dry_data
        echo "note: the dry run reads MNIST from $DATA (never unpacking the carried gpu-data)"
        have_cuda || { DEV=cpu; echo "note: no CUDA device here: estimates below are for this CPU, and the step is eager"; }
        campaign_body "$dry" "$total" "$minutes" "$jobs_all"
        return
    fi
    have_cuda || die "torch sees no CUDA device: the campaign runs on the GPU machine (see usage)"
    campaign_body "$dry" "$total" "$minutes" "$jobs_all" 2>&1 | tee -a "$OUT/campaign.log"
    return "${PIPESTATUS[0]}"
}

campaign_body() {
    local dry=$1 total=$2 minutes=$3 jobs_all=$4 i j f start deadline left share_left budget source=""
    start=$(now); deadline=$((start + total - 25))            # 25 s to pack the records
    if [ $dry = 0 ]; then STAMP=gpu-out/.campaign-start; touch "$STAMP"; sleep 1; WAVE_LOG=$(mktemp); fi
    say "command 2: campaign, $total s in all (${minutes} min)"; [ $dry = 1 ] || machine
    if [ -z "$STEP" ]; then
        for f in "$DATA/step.txt" gpu-out/step.txt; do
            if [ -s "$f" ]; then STEP=$(head -1 "$f"); source="$f"; say "step $STEP, from $f"; break; fi
        done
    fi
    if [ -z "$STEP" ]; then
        if [ $dry = 1 ]; then STEP=graph; say "no step file: the campaign would probe the graph step (~30 s)"
        else say "no step file: probing the graph step"; STEP=$(probe_step); source=probe; say "probe: step $STEP"; fi
    fi
    [ "$STEP" = graph ] || [ "$STEP" = eager ] || die "step file names '$STEP', not graph or eager"
    local csv_pid=""
    if [ $dry = 0 ] && [ ! -e "$DATA/MNIST/csv/mnist_test.csv" ]; then       # fc_sigmoid*'s CSV, made meanwhile
        "$PY" -c "from pathlib import Path; from bench import data; data.load('mnist_csv', Path('$DATA'))" \
            >gpu-out/csv.log 2>&1 &
        csv_pid=$!
    fi
    for i in "${!RECIPES[@]}"; do
        share_left=0
        for j in $(seq "$i" $((${#RECIPES[@]} - 1))); do share_left=$((share_left + SHARES[j])); done
        left=$((deadline - $(now)))
        [ $dry = 0 ] || left=$(( (deadline - start) * share_left / 100 ))   # a dry run's estimates take no GPU time
        budget=$((left * SHARES[i] / share_left))
        if [ "${RECIPES[$i]}" != ultimate_mlp ] && [ -n "$csv_pid" ]; then wait "$csv_pid"; csv_pid=""; fi
        if [ "$budget" -lt 40 ] && [ $dry = 0 ]; then say "${RECIPES[$i]}: no time left"; continue; fi
        run_recipe "${RECIPES[$i]}" "$budget" "${jobs_all:-${FIRST_WAVE[$i]}}" "$dry"
    done
    if [ $dry = 1 ]; then say "dry run: nothing trained or written"; return 0; fi
    rm -f "$WAVE_LOG"
    printf '%s\nsource: %s\n' "$STEP" "${source:---step}" >"$OUT/step.txt"
    pack
    say "command 2 done in $(( $(now) - start )) s"
}

case ${1:-} in
    prepare) shift; cmd_prepare "$@" ;;
    check) shift; cmd_check "$@" ;;
    campaign) shift; cmd_campaign "$@" ;;
    ""|-h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
