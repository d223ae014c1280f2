#!/usr/bin/env python3
"""The measuring half of scripts/bench-flink.sh (which builds weir, installs
the Flink peer and makes the events): for each parallelism P and each shop
view Flink SQL can express, Flink's rate on it (the peer's run_query.py,
blackhole sink, warm runs in one JVM) and weir's (a job of just that view
and the tables it reads, posted to a running `weir serve --workers P`, timed
until its status says it has caught up), then weir's view compared with
Flink's final result (`--sink result`) by the peer's compare_rows.py.

Prints one JSON line per (view, parallelism) on stdout, then a summary line;
progress goes to stderr. Standard library only.

weir's rate: the engine is started once per P on a copy of the data
directory with no jobs; a job holding the view's CREATE TABLEs and its
CREATE MATERIALIZED VIEW (and those of the views it reads) is posted to
POST /v1/jobs, and GET /v1/jobs/{name} is polled (every --poll-ms) until
`status` is `running` (weir's caught_up: every worker's sources have read
the whole log and the job's views are complete through the last record
read). events/s = the records the job's tables hold (`tables[].held.records`)
/ the seconds from the POST to that status: planning, installing and
building the dataflow included, the process start not (as Flink's job_net_s
includes deployment and excludes the JVM and mini-cluster start). Each of
the --repeat runs is a fresh job (the previous one dropped); the median.

Flink's rate: run_query.py --sink blackhole -p P --repeat (repeat + 1): run
1 is the JVM's cold run and is left out, the median of the others' job_net_s
(Flink's own net runtime of the job). Its events are the lines of the files
the plan scans: the same records as weir's tables hold.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def split_statements(text):
    """SQL text into statements on top-level semicolons, without comments."""
    out, cur, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            cur.append(" ")
            continue
        if c in "'\"":
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c == ";":
            s = "".join(cur).strip()
            if s:
                out.append(s)
            cur = []
        else:
            cur.append(c)
        i += 1
    s = "".join(cur).strip()
    if s:
        out.append(s)
    return out


CREATE_RE = re.compile(r"^CREATE\s+(TABLE|(?:MATERIALIZED\s+)?VIEW)\s+(\w+)", re.I)
READS_RE = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)", re.I)


def shop_objects(shop_dir):
    """name -> (kind, statement, names it reads), in file order."""
    objs = {}
    for f in sorted(os.listdir(shop_dir)):
        if not f.endswith(".sql"):
            continue
        with open(os.path.join(shop_dir, f)) as fh:
            for s in split_statements(fh.read()):
                m = CREATE_RE.match(s)
                if not m:
                    continue
                kind = "table" if m.group(1).upper() == "TABLE" else "view"
                objs[m.group(2)] = (kind, s, set(READS_RE.findall(s)))
    return objs


def job_sql(objs, view):
    """The view's statement after those of every table and view it reads."""
    need, todo = set(), [view]
    while todo:
        n = todo.pop()
        if n in need or n not in objs:
            continue
        need.add(n)
        todo.extend(objs[n][2])
    order = [n for n, o in objs.items() if o[0] == "table" and n in need] + \
            [n for n, o in objs.items() if o[0] == "view" and n in need]
    return "\n\n".join(objs[n][1] + ";" for n in order), order


class Weir:
    def __init__(self, binary, data_dir, port, workers, log_path):
        self.url = "http://127.0.0.1:%d" % port
        self.logf = open(log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:%d" % port,
             "--workers", str(workers), "--generate-rate", "0", "--snapshot-interval", "0"],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                sys.exit("weir serve exited (%s); see %s" % (self.proc.returncode, log_path))
            try:
                if self.req("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                sys.exit("weir serve not ready after 120 s; see %s" % log_path)
            time.sleep(0.1)

    def req(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        r = urllib.request.Request(self.url + path, data=data, method=method,
                                   headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=600) as f:
                return f.status, f.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()

    def time_job(self, name, sql, poll_s, timeout_s):
        """POSTs the job, polls its status until `running`; (seconds, status)."""
        t0 = time.perf_counter()
        code, body = self.req("POST", "/v1/jobs", {"name": name, "sql": sql})
        if code != 201:
            raise RuntimeError("POST /v1/jobs %s: %s %s" % (name, code, body[:500]))
        st = json.loads(body)
        while st.get("status") != "running":
            if time.perf_counter() - t0 > timeout_s:
                raise RuntimeError("job %s not caught up after %d s: %s" % (name, timeout_s, st.get("status")))
            time.sleep(poll_s)
            code, body = self.req("GET", "/v1/jobs/" + name)
            if code != 200:
                raise RuntimeError("GET /v1/jobs/%s: %s %s" % (name, code, body[:500]))
            st = json.loads(body)
        return time.perf_counter() - t0, st

    def drop(self, name):
        code, body = self.req("DELETE", "/v1/jobs/" + name)
        if code not in (200, 204):
            raise RuntimeError("DELETE /v1/jobs/%s: %s %s" % (name, code, body[:500]))


def run_flink(args, view, p, sink, repeat, out=None):
    cmd = [args.flink_python, os.path.join(args.peer, "run_query.py"),
           os.path.join(args.peer, "shop", "sources.sql"), os.path.join(args.peer, "shop", view + ".sql"),
           "--data", args.ndjson, "--sink", sink, "-p", str(p), "--repeat", str(repeat)]
    if out:
        cmd += ["--out", out]
    logp = os.path.join(args.work, "flink-%s-%s-p%d.log" % (view, sink, p))
    with open(logp, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    with open(logp) as fh:
        lines = fh.read().strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError("Flink failed on %s (p %d, %s): see %s" % (view, p, sink, logp))
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weir", required=True, help="the weir binary")
    ap.add_argument("--shop", required=True, help="weir's examples/shop")
    ap.add_argument("--peer", required=True, help="the Flink peer's folder")
    ap.add_argument("--flink-python", required=True)
    ap.add_argument("--data", required=True, help="weir data directory with the events (copied per run)")
    ap.add_argument("--ndjson", required=True, help="the same events as NDJSON (export_weir_topics.py)")
    ap.add_argument("--work", required=True, help="scratch folder (weir's data copies, logs, views)")
    ap.add_argument("--views", nargs="+", required=True)
    ap.add_argument("-p", "--parallelism", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port", type=int, default=18711)
    ap.add_argument("--poll-ms", type=float, default=20)
    ap.add_argument("--pattern-wait", type=float, default=10,
                    help="seconds to wait after catch-up before reading a MATCH_RECOGNIZE view")
    ap.add_argument("--flink-result-p", type=int, default=1, help="Flink's parallelism for --sink result")
    ap.add_argument("--events-generated", type=int)
    ap.add_argument("--weir-rev", help="the revision of the weir measured (for the summary)")
    args = ap.parse_args()

    t_start = time.time()
    objs = shop_objects(args.shop)
    missing = [v for v in args.views if objs.get(v, ("",))[0] != "view"]
    if missing:
        sys.exit("not views of %s: %s" % (args.shop, ", ".join(missing)))
    os.makedirs(os.path.join(args.work, "views"), exist_ok=True)
    os.makedirs(os.path.join(args.work, "flink"), exist_ok=True)
    flink_result = {}
    lines = []
    for p in args.parallelism:
        data = os.path.join(args.work, "weir-data-p%d" % p)
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(args.data, data)
        port = args.port + p - 1
        log("weir serve --workers %d on %s (port %d)" % (p, data, port))
        weir = Weir(args.weir, data, port, p, os.path.join(args.work, "weir-p%d.log" % p))
        try:
            for view in args.views:
                # Flink's final result once per view (the cross-check's reference).
                if view not in flink_result:
                    out = os.path.join(args.work, "flink", view + ".ndjson")
                    s = run_flink(args, view, args.flink_result_p, "result", 1, out)
                    flink_result[view] = (out, s)
                    log("flink %s: result %d rows (p %d)" % (view, s.get("rows", -1), args.flink_result_p))
                # Flink's rate: warm runs (run 1 left out).
                s = run_flink(args, view, p, "blackhole", args.repeat + 1)
                flink_events = s["events"]
                warm = [r["job_net_s"] for r in s["runs"][1:]]
                flink_s = statistics.median(warm)
                flink_rate = flink_events / flink_s
                log("flink %s p %d: %d events, cold %.2f s, warm %s s -> %.0f events/s"
                    % (view, p, flink_events, s["runs"][0]["job_net_s"], warm, flink_rate))
                # weir's rate: a fresh job of just this view, REPEAT times.
                sql, order = job_sql(objs, view)
                pattern = "MATCH_RECOGNIZE" in sql.upper()
                times, st = [], None
                for i in range(args.repeat):
                    name = "bench_%s_p%d_%d" % (view, p, i)
                    secs, st = weir.time_job(name, sql, args.poll_ms / 1000, 1800)
                    times.append(secs)
                    if i < args.repeat - 1:
                        weir.drop(name)
                        time.sleep(0.5)
                records = sum(t["held"]["records"] for t in st["tables"])
                weir_s = statistics.median(times)
                weir_rate = records / weir_s
                log("weir %s p %d: %d records (%s), %s s -> %.0f events/s"
                    % (view, p, records, ", ".join(order), [round(t, 3) for t in times], weir_rate))
                # weir's view, after the idle watermark has passed the last
                # event for pattern rules (as xcheck_weir.sh waits).
                if pattern:
                    time.sleep(args.pattern_wait)
                code, body = weir.req("GET", "/v1/views/%s?limit=100000000" % view)
                wpath = os.path.join(args.work, "views", "%s-p%d.json" % (view, p))
                with open(wpath, "wb") as fh:
                    fh.write(body)
                code2, body2 = weir.req("GET", "/v1/jobs/" + name)
                dead = json.loads(body2).get("dead_letters", {}) if code2 == 200 else None
                weir.drop(name)
                cmp = subprocess.run([sys.executable, os.path.join(args.peer, "compare_rows.py"), wpath,
                                      flink_result[view][0]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
                equal = code == 200 and cmp.returncode == 0
                with open(os.path.join(args.work, "views", "%s-p%d.diff" % (view, p)), "w") as fh:
                    fh.write(cmp.stdout)
                if not equal:
                    log("DIFFERENT: %s p %d (GET %s)\n%s" % (view, p, code, "\n".join(cmp.stdout.splitlines()[:12])))
                m = re.search(r": (\d+) rows; .*: (\d+) rows;", cmp.stdout)
                line = {"bench": "vs_flink", "view": view, "parallelism": p, "events": records,
                        "weir_events_per_s": round(weir_rate), "flink_events_per_s": round(flink_rate),
                        "ratio": round(weir_rate / flink_rate, 2), "results_equal": equal,
                        "weir_method": "job_catch_up", "weir_s": [round(t, 3) for t in times],
                        "flink_warm_s": warm, "flink_cold_s": s["runs"][0]["job_net_s"],
                        "flink_events": flink_events,
                        "rows": {"weir": int(m.group(1)), "flink": int(m.group(2))} if m else None,
                        "weir_dead_letters": dead}
                lines.append(line)
                print(json.dumps(line), flush=True)
        finally:
            weir.stop()
            shutil.rmtree(data, ignore_errors=True)
    ratios = [l["ratio"] for l in lines]
    print(json.dumps({
        "bench": "vs_flink_summary", "weir_rev": args.weir_rev, "events_generated": args.events_generated, "repeat": args.repeat,
        "views": len(args.views), "parallelism": args.parallelism, "lines": len(lines),
        "all_equal": all(l["results_equal"] for l in lines),
        "not_equal": ["%s@p%d" % (l["view"], l["parallelism"]) for l in lines if not l["results_equal"]],
        "min_ratio": min(ratios) if ratios else None,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "at_least_2x": sum(r >= 2 for r in ratios),
        "below_2x": ["%s@p%d" % (l["view"], l["parallelism"]) for l in lines if l["ratio"] < 2],
        "elapsed_s": round(time.time() - t_start), "loadavg_end": [round(x, 2) for x in os.getloadavg()]}),
        flush=True)
    return 0 if lines and all(l["results_equal"] for l in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
