#!/usr/bin/env bash
# Times `countersign sql classify --input jsonl` over the whole PostgreSQL regression corpus as a
# whole process (release build), side by side with PostgreSQL's own parser (libpg_query through
# pglast's parse_sql_json) over the same statements, in one run. Prints the median of 5 runs each.
# Needs: the corpus at ../shared/corpus, and pglast (`pip install pglast`; installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=../shared/corpus/pg_regress_labeled.jsonl
[ -f "$corpus" ] || { echo "corpus not found: $corpus" >&2; exit 1; }
python3 -c 'import pglast' 2>/dev/null || pip install --quiet pglast
cargo build --release --quiet -p countersign-cli
bin=target/release/countersign
runs=5

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=$(for _ in $(seq $runs); do
  /usr/bin/time -f '%e' "$bin" sql classify --dialect postgres --input jsonl < "$corpus" 2>&1 >/dev/null | tail -1
done | median)

ours_one_thread=$(for _ in $(seq $runs); do
  /usr/bin/time -f '%e' "$bin" sql classify --dialect postgres --input jsonl --jobs 1 < "$corpus" 2>&1 >/dev/null | tail -1
done | median)

pglast_process=$(for _ in $(seq $runs); do
  /usr/bin/time -f '%e' python3 - "$corpus" 2>&1 >/dev/null <<'PY' | tail -1
import json, sys
from pglast import parser
out = []
for line in open(sys.argv[1]):
    sql = json.loads(line)["sql"]
    try:
        out.append(parser.parse_sql_json(sql))
    except Exception as e:
        out.append(str(e))
print(len(out))
PY
done | median)

pglast_loop=$(python3 - "$corpus" <<'PY'
import json, sys, time
from pglast import parser
sqls = [json.loads(line)["sql"] for line in open(sys.argv[1])]
best = None
for _ in range(5):
    t = time.perf_counter()
    for sql in sqls:
        try:
            parser.parse_sql_json(sql)
        except Exception:
            pass
    d = time.perf_counter() - t
    best = d if best is None or d < best else best
print(f"{best:.3f}")
PY
)

n=$(wc -l < "$corpus")
echo "statements: $n"
echo "countersign sql classify --input jsonl (whole process, release, $(nproc) worker threads): ${ours} s"
echo "countersign sql classify --input jsonl --jobs 1 (one worker thread): ${ours_one_thread} s"
echo "pglast parse_sql_json (whole python process): ${pglast_process} s"
echo "pglast parse_sql_json (parse loop only, best of 5): ${pglast_loop} s"
awk -v a="$ours" -v b="$pglast_loop" 'BEGIN { printf "ratio countersign / pglast parse loop: %.2fx (target: at most 2x)\n", a / b }'
