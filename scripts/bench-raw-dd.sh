#!/usr/bin/env bash
# weir's shop read models against the hand-written differential-dataflow
# program of ../shared/peers/raw-dd (issue 13), on the same events in the
# same run: builds the peer outside shared/ (/tmp/rawdd-target), generates
# the events and dumps them for it (the peer's prepare.sh), times both
# replays with the peer's bench.py (which also checks weir's views against
# the peer's, row for row), and prints one JSON line per worker count:
#   {"bench": "vs_raw_dd", "workers", "weir_events_per_s",
#    "raw_dd_events_per_s", "ratio", "weir_peak_rss_mb",
#    "raw_dd_peak_rss_mb", "rss_ratio", "views_equal"}
# Medians of REPEAT runs (default 3) of EVENTS events (default 1,000,000).
# The peer's views are the shop's without the pattern rules (05_rules.sql).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-../shared/peers/raw-dd}
REPEAT=${REPEAT:-3}
EVENTS=${EVENTS:-1000000}
OUT=${OUT:-/tmp/rawdd-out}
. scripts/peer-env.sh
cargo build --release --bin weir
CARGO_TARGET_DIR=/tmp/rawdd-target cargo build --release --locked --manifest-path "$PEER/Cargo.toml"
if [ ! -f /tmp/rawdd-input/meta.json ]; then
  EVENTS="$EVENTS" bash "$PEER/scripts/prepare.sh" >&2
fi
python3 "$PEER/scripts/bench.py" --repeat "$REPEAT" --compare --views rows --out "$OUT" >&2
python3 - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
rs = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
try:
    compare = json.load(open(os.path.join(out, "compare.json")))
except OSError:
    compare = {}
# compare.py's last line per dump: {"all_equal", "views"}.
equal = next((l.get("all_equal") for l in reversed(compare.get("compare_rows", [])) if "all_equal" in l), None)
for w in sorted({r["workers"] for r in rs}):
    def med(engine, key):
        v = [r[key] for r in rs if r["engine"] == engine and r["workers"] == w and r.get(key)]
        return statistics.median(v) if v else None
    weir, dd = med("weir", "events_per_s"), med("raw-dd", "events_per_s")
    wr, dr = med("weir", "peak_rss_mb"), med("raw-dd", "peak_rss_mb")
    print(json.dumps({"bench": "vs_raw_dd", "workers": w,
                      "weir_events_per_s": weir, "raw_dd_events_per_s": dd,
                      "ratio": weir / dd if weir and dd else None,
                      "weir_peak_rss_mb": wr, "raw_dd_peak_rss_mb": dr,
                      "rss_ratio": wr / dr if wr and dr else None,
                      "views_equal": equal}))
EOF
