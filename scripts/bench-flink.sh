#!/usr/bin/env bash
# weir against Apache Flink SQL (../shared/peers/flink: PyFlink 2.3.0, a
# local mini-cluster) on the shop's queries that Flink SQL can express (the
# views of the peer's xcheck_weir.sh; not abandoned_checkouts, whose EMIT
# TIMEOUTS Flink lacks), on the very same events: `weir generate` writes
# EVENTS events (default 1,000,000) into a data directory and the peer's
# export_weir_topics.py writes weir's topics as NDJSON for Flink (both cached
# in /tmp/flinkbench-EVENTS, so a rerun skips this). Then per parallelism
# (PARALLELISM, default "1 2": Flink's -p, weir's --workers) and per view
# (scripts/bench_flink.py does this part):
#   Flink: run_query.py --sink blackhole --repeat REPEAT+1 in one JVM; the
#     cold first run is left out, events/s = the events it scans / the median
#     of the warm runs' job_net_s (Flink's net job runtime). Once per view,
#     run_query.py --sink result: Flink's final result.
#   weir: a `weir serve --workers P` on a copy of the data directory with no
#     jobs; a job of just the view (with the CREATE TABLEs and views it
#     reads, taken from examples/shop) is posted REPEAT times (dropped in
#     between) and timed from the POST until GET /v1/jobs/{name} says
#     `running` (caught up with the log); events/s = the records its tables
#     hold / the median time. Its view is then read (10 s later for
#     MATCH_RECOGNIZE views: the idle watermark) and compared with Flink's
#     result row for row by the peer's compare_rows.py.
# Prints one JSON line per (view, parallelism):
#   {"bench": "vs_flink", "view", "parallelism", "events",
#    "weir_events_per_s", "flink_events_per_s", "ratio", "results_equal",
#    "weir_method": "job_catch_up", "weir_s", "flink_warm_s", "flink_cold_s",
#    "flink_events", "rows", "weir_dead_letters"}
# and a summary line {"bench": "vs_flink_summary", "weir_rev" (git describe
# --dirty of the tree built), "all_equal", "min_ratio", "below_2x", ...}. Progress and both engines' logs: /tmp/flinkbench-work
# (WORK). Exit status 1 if a view differs. weir listens on 127.0.0.1:PORT+P-1
# (PORT default 18711). Needs java and about 1 GB for the Flink venv
# (FLINK_VENV, default ~/.cache/weir-flink-peer/venv; the peer's setup.sh
# installs it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-../shared/peers/flink}
REPEAT=${REPEAT:-3}
EVENTS=${EVENTS:-1000000}
PARALLELISM=${PARALLELISM:-1 2}
PORT=${PORT:-18711}
CACHE=${CACHE:-/tmp/flinkbench-$EVENTS}
WORK=${WORK:-/tmp/flinkbench-work}
export FLINK_VENV=${FLINK_VENV:-$HOME/.cache/weir-flink-peer/venv}
# run_query.py's folder: the split inputs (kept with the events), logs, changelogs.
export FLINK_PEER_WORK=${FLINK_PEER_WORK:-$CACHE/flinkpeer}
. scripts/peer-env.sh
PEER=$(cd "$PEER" && pwd)
# The views Flink can express: those the peer's cross-check compares.
VIEWS=${VIEWS:-$(sed -n 's/^VIEWS="\(.*\)"$/\1/p' "$PEER/xcheck_weir.sh")}
if [ -z "$VIEWS" ]; then
  echo "no VIEWS found in $PEER/xcheck_weir.sh (set VIEWS=)" >&2
  exit 1
fi
cargo build --release --bin weir >&2
# The binary measured, copied once: a rebuild in this tree during the run
# (another terminal) must not change it between the parallelisms.
WEIR_REV=${WEIR_REV:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
mkdir -p "$WORK"
cp target/release/weir "$WORK/weir"
WEIR=$WORK/weir
if [ ! -x "$FLINK_VENV/bin/python" ] || ! "$FLINK_VENV/bin/python" -c 'import pyflink' 2>/dev/null; then
  bash "$PEER/setup.sh" >&2
fi
if [ ! -f "$CACHE/ndjson/meta.json" ]; then
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  "$WEIR" generate --events "$EVENTS" --data-dir "$CACHE/data" >&2
  "$WEIR" serve --data-dir "$CACHE/data" --generate-rate 0 --snapshot-interval 0 \
    --listen "127.0.0.1:$PORT" >"$CACHE/export-weir.log" 2>&1 &
  wpid=$!
  trap 'kill $wpid 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/readyz")" = 200 ] && break
    sleep 0.2
  done
  python3 "$PEER/export_weir_topics.py" --url "http://127.0.0.1:$PORT" --out "$CACHE/ndjson.tmp" >&2
  kill -INT $wpid
  wait $wpid || true
  trap - EXIT
  mv "$CACHE/ndjson.tmp" "$CACHE/ndjson"
fi
rc=0
# shellcheck disable=SC2086
python3 scripts/bench_flink.py --weir "$WEIR" --shop examples/shop --peer "$PEER" \
  --flink-python "$FLINK_VENV/bin/python" --data "$CACHE/data" --ndjson "$CACHE/ndjson" \
  --work "$WORK" --views $VIEWS -p $PARALLELISM --repeat "$REPEAT" --port "$PORT" \
  --events-generated "$EVENTS" --weir-rev "$WEIR_REV" || rc=$?
rm -rf "$FLINK_PEER_WORK/changelog" "$WORK/weir"
exit $rc
