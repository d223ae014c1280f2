#!/usr/bin/env python3
"""An independent GraphQL client for weir's /graphql, run by tests/graphql.rs.

It shares no code with weir: HTTP through urllib, the schema checked with
graphql-core (built from the served introspection, every query of this
script validated against it), subscriptions over `graphql-transport-ws`
with the `websockets` library, and the expected views computed here from
the events this script ingests (a naive recomputation).

Usage: graphql_client.py BASE_URL JOB_NAME SEED
The engine runs the job of tests/graphql.rs; this script is its only writer.
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import websockets
from graphql import build_client_schema, get_introspection_query, parse, validate

BASE, JOB, SEED = sys.argv[1], sys.argv[2], int(sys.argv[3])
WS = BASE.replace("http://", "ws://") + "/graphql"
rng = random.Random(SEED)
accounts = {}  # id -> (owner, balance, note): the reference model
schema = None


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def http(method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def gql(query, variables=None, check=True):
    if check and schema is not None:
        errors = validate(schema, parse(query))
        if errors:
            fail(f"graphql-core finds the query invalid against the served schema: {errors}\n{query}")
    status, body = http("POST", "/graphql", {"query": query, "variables": variables or {}})
    if status != 200:
        fail(f"POST /graphql answered {status}: {body}")
    return body


def data_of(body):
    if body.get("errors"):
        fail(f"unexpected errors: {body['errors']}")
    return body["data"]


def ingest(n=10):
    """Random upserts and deletes into `accounts`; returns the write token."""
    lines = []
    for _ in range(n):
        i = rng.randrange(25)
        if i in accounts and rng.random() < 0.3:
            del accounts[i]
            lines.append(json.dumps({"id": i, "__op": "delete"}))
        else:
            row = (rng.randrange(5), rng.randrange(-50, 300), rng.choice(["a", "b", None]))
            accounts[i] = row
            lines.append(json.dumps({"id": i, "owner": row[0], "balance": row[1], "note": row[2]}))
    status, body = http("POST", "/v1/topics/accounts/events", "\n".join(lines).encode())
    if status != 200:
        fail(f"ingest answered {status}: {body}")
    return body["token"]


def expected_by_owner():
    groups = {}
    for owner, balance, _ in accounts.values():
        n, total = groups.get(owner, (0, 0))
        groups[owner] = (n + 1, total + balance)
    return Counter(json.dumps({"owner": o, "n": n, "total": t}, sort_keys=True) for o, (n, t) in groups.items())


def expected_acct(owner=None):
    return Counter(json.dumps({"id": i, "owner": o, "balance": b}, sort_keys=True)
                   for i, (o, b, _) in accounts.items() if owner is None or o == owner)


def bag(rows):
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


def check_schema():
    global schema
    intro = data_of(gql(get_introspection_query(), check=False))
    schema = build_client_schema(intro)
    q = schema.query_type.fields
    for name in ["by_owner", "acct", "_views"]:
        if name not in q:
            fail(f"Query has no field {name}: {sorted(q)}")
    # Every column of every view, as the REST API lists them, is a field
    # of the view's type with the type its SQL type maps to.
    mapping = {"BIGINT": "BigInt", "INT": "Int", "SMALLINT": "Int", "TEXT": "String",
               "BOOLEAN": "Boolean", "DOUBLE": "Float", "REAL": "Float", "TIMESTAMP": "Timestamp"}
    status, views = http("GET", "/v1/views")
    for v in views:
        ty = schema.get_type(v["name"])
        if ty is None:
            fail(f"no GraphQL type for view {v['name']}")
        for c in v["columns"]:
            f = ty.fields.get(c["name"])
            if f is None:
                fail(f"type {v['name']} has no field {c['name']}")
            want = mapping.get(c["type"].split("(")[0].upper(), "Decimal")
            got = str(f.type)
            if got != (want if c["nullable"] else want + "!"):
                fail(f"{v['name']}.{c['name']} ({c['type']}, nullable={c['nullable']}) is {got}")
    args = q["acct"].args
    for a in ["id", "owner", "balance", "limit", "asOf", "after", "timeoutMs"]:
        if a not in args:
            fail(f"acct has no argument {a}: {sorted(args)}")
    sub = schema.subscription_type
    if sub is None or "by_owner" not in sub.fields:
        fail("no subscription field by_owner")
    print("schema: ok,", len(q), "query fields")


def check_queries(rounds):
    for r in range(rounds):
        token = ingest()
        owner = rng.randrange(5)
        query = """query Read($t: [String], $o: BigInt) {
          all: by_owner(after: $t) { asOf lagMs rows { owner n total } }
          mine: acct(owner: $o, after: $t) { asOf rows { id owner balance } }
          few: acct(limit: 2, after: $t) { asOf rows { id owner balance } }
        }"""
        d = data_of(gql(query, {"t": [token], "o": owner}))
        times = {d["all"]["asOf"], d["mine"]["asOf"], d["few"]["asOf"]}
        if len(times) != 1:
            fail(f"the fields of one operation were read at different times: {times}")
        if bag(d["all"]["rows"]) != expected_by_owner():
            fail(f"round {r}: by_owner {d['all']['rows']} != reference {expected_by_owner()}")
        if bag(d["mine"]["rows"]) != expected_acct(owner):
            fail(f"round {r}: acct(owner: {owner}) {d['mine']['rows']} != reference")
        few = bag(d["few"]["rows"])
        if len(d["few"]["rows"]) > 2 or few - expected_acct():
            fail(f"round {r}: acct(limit: 2) {d['few']['rows']} is not 2 of the view's rows")
        # Exactly as of that time again, one field: the same rows.
        at = d["all"]["asOf"]
        again = data_of(gql("query($a: BigInt) { by_owner(asOf: $a) { asOf rows { owner n total } } }", {"a": at}))
        if again["by_owner"]["asOf"] != at or bag(again["by_owner"]["rows"]) != bag(d["all"]["rows"]):
            fail(f"by_owner(asOf: {at}) differs from the first read at that time")
        # A key lookup through GraphQL equals the REST API's.
        if accounts:
            i = rng.choice(sorted(accounts))
            g = data_of(gql("query($i: BigInt!, $a: BigInt) { acct(id: $i, asOf: $a) { rows { id owner balance } } }",
                            {"i": i, "a": at}))
            _, rest = http("GET", f"/v1/views/acct?id={i}&as_of={at}")
            if bag(g["acct"]["rows"]) != bag([{k: row[k] for k in ("id", "owner", "balance")} for row in rest["rows"]]):
                fail(f"acct(id: {i}) differs between GraphQL and REST at {at}")
    print("queries: ok,", rounds, "rounds")


def check_errors():
    cases = [
        ("{ by_owner(limit: 1) { rows { owner } ", "syntax"),
        ("{ by_owner { rows { nope } } }", "unknown field"),
        ("{ by_owner(owner: \"x\") { asOf } }", "bad argument"),
        ("{ nosuchview { asOf } }", "unknown view"),
    ]
    for q, what in cases:
        body = gql(q, check=False)
        errs = body.get("errors") or []
        if not errs or not all(e.get("locations") for e in errs):
            fail(f"{what}: expected errors with locations, got {body}")
        loc = errs[0]["locations"][0]
        if loc["line"] < 1 or loc["column"] < 1:
            fail(f"{what}: bad location {loc}")
    # An error from the engine, located at its field, with its code; the
    # other field is still answered.
    body = gql('{ acct(after: ["nope"]) { asOf } by_owner(limit: 1) { asOf } }', check=False)
    errs = body.get("errors") or []
    if len(errs) != 1 or errs[0].get("extensions", {}).get("code") != "bad_token" or not errs[0].get("locations"):
        fail(f"a bad token: expected one located error with code bad_token, got {body}")
    if not (body.get("data") or {}).get("by_owner"):
        fail(f"a bad token in one field failed the other: {body}")
    # Thousands of aliased reads in one operation are refused before any runs.
    many = "{ " + " ".join(f"a{i}: by_owner {{ asOf }}" for i in range(6000)) + " }"
    body = gql(many, check=False)
    if not body.get("errors") or body.get("data"):
        fail(f"an operation of 12,000 fields: expected a refusal, got {str(body)[:300]}")
    # A batch larger than the limit is refused; a small one is answered.
    status, body = http("POST", "/graphql", [{"query": "{ _views }"}] * 101)
    if status != 400:
        fail(f"a batch of 101: expected 400, got {status} {str(body)[:300]}")
    status, body = http("POST", "/graphql", [{"query": "{ _views }"}] * 2)
    if status != 200 or len(body) != 2 or not all(b["data"]["_views"] for b in body):
        fail(f"a batch of 2: got {status} {body}")
    status, body = http("POST", "/graphql", b"not json")
    if status != 400 or not body.get("errors"):
        fail(f"a body that is not JSON: expected 400 with errors, got {status} {body}")
    print("errors: ok")


class Subscriber:
    """One graphql-transport-ws connection with subscriptions by id."""

    def __init__(self, ws):
        self.ws = ws
        self.completed = set()  # ids this client completed

    async def complete(self, id_):
        self.completed.add(id_)
        await self.ws.send(json.dumps({"id": id_, "type": "complete"}))

    @classmethod
    async def connect(cls):
        ws = await websockets.connect(WS, subprotocols=["graphql-transport-ws"], max_size=None)
        if ws.subprotocol != "graphql-transport-ws":
            fail(f"the server chose subprotocol {ws.subprotocol}")
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if ack["type"] != "connection_ack":
            fail(f"expected connection_ack, got {ack}")
        return cls(ws)

    async def subscribe(self, id_, query, variables=None):
        if schema is not None:
            errors = validate(schema, parse(query))
            if errors:
                fail(f"subscription invalid against the served schema: {errors}")
        await self.ws.send(json.dumps({"id": id_, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables or {}}}))

    async def next(self):
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if m["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return m


CHANGE = "{ kind asOf last reason updates { row { %s } diff } }"


def apply(state, updates):
    for u in updates:
        k = json.dumps(u["row"], sort_keys=True)
        state[k] += u["diff"]
        if state[k] == 0:
            del state[k]


def view_at(field, cols, at, args=""):
    d = data_of(gql("query($a: BigInt) { v: %s(asOf: $a%s) { asOf rows { %s } } }" % (field, args, cols), {"a": at}))
    if d["v"]["asOf"] != at:
        fail(f"{field}(asOf: {at}) answered as of {d['v']['asOf']}")
    return bag(d["v"]["rows"])


class Follow:
    """A subscription's state: its snapshot plus the changes applied."""

    def __init__(self, field, cols, args=""):
        self.field, self.cols, self.args = field, cols, args
        self.state = Counter()
        self.in_snapshot = False
        self.last = None
        self.checked = 0
        self.kinds = []

    def take(self, payload):
        """Applies one event; checks the state against the view at its time."""
        if payload.get("errors"):
            return payload["errors"]
        ev = payload["data"][self.field]
        self.kinds.append(ev["kind"])
        if ev["kind"] == "SNAPSHOT":
            if not self.in_snapshot:
                self.state = Counter()
            apply(self.state, ev["updates"])
            self.in_snapshot = not ev["last"]
            if self.in_snapshot:
                return None
        elif ev["kind"] == "CHANGES":
            apply(self.state, ev["updates"])
        elif ev["kind"] == "RESET":
            if not ev["reason"]:
                fail("a reset without a reason")
            return None
        at = ev["asOf"]
        want = view_at(self.field, self.cols, at, self.args)
        if self.state != want:
            fail(f"{self.field}{self.args}: subscription state at {at} {dict(self.state)} != view {dict(want)}")
        self.last = at
        self.checked += 1
        return None


async def follow_until(sub, follows, done, what):
    """Takes events (for ids in `follows`) until done() holds."""
    for _ in range(10_000):
        if done():
            return
        m = await sub.next()
        if m["type"] == "next":
            errs = follows[m["id"]].take(m["payload"])
            if errs:
                fail(f"{what}: unexpected errors {errs}")
        elif m["type"] == "complete" and m["id"] in sub.completed:
            continue
        elif m["type"] in ("complete", "error"):
            fail(f"{what}: subscription {m['id']} ended: {m}")
    fail(f"{what}: never done")


async def check_subscriptions(rounds):
    sub = await Subscriber.connect()
    owner = 2
    f_all = Follow("by_owner", "owner n total")
    f_mine = Follow("acct", "id owner balance", ", owner: %d" % owner)
    follows = {"all": f_all, "mine": f_mine}
    await sub.subscribe("all", "subscription { by_owner %s }" % (CHANGE % f_all.cols))
    await sub.subscribe("mine", "subscription($o: BigInt) { acct(owner: $o) %s }" % (CHANGE % f_mine.cols),
                        {"o": owner})
    await follow_until(sub, follows, lambda: f_all.last is not None and f_mine.last is not None, "snapshots")
    for r in range(rounds):
        ingest()
        want_all, want_mine = expected_by_owner(), expected_acct(owner)
        await follow_until(sub, follows, lambda: f_all.state == want_all and f_mine.state == want_mine
                           and not f_all.in_snapshot and not f_mine.in_snapshot, f"round {r}")
    print("subscriptions: ok,", f_all.checked + f_mine.checked, "states checked")

    # Resume after the last time seen: no snapshot, the changes go on.
    await sub.complete("all")
    resumed = Follow("by_owner", "owner n total")
    resumed.state, resumed.last = Counter(f_all.state), f_all.last
    follows["again"] = resumed
    await sub.subscribe("again", "subscription($f: BigInt) { by_owner(fromAsOf: $f) %s }" % (CHANGE % resumed.cols),
                        {"f": f_all.last})
    ingest()
    want = expected_by_owner()
    await follow_until(sub, follows, lambda: resumed.state == want and resumed.checked > 0, "resume")
    if "SNAPSHOT" in resumed.kinds or "RESET" in resumed.kinds:
        fail(f"a resume within the kept window started over: {resumed.kinds}")
    print("resume: ok")

    # The job is replaced with one more view: the subscription resets to a
    # snapshot of the new version, and the schema has the new view's field
    # without a restart.
    status, body = http("GET", f"/v1/jobs/{JOB}")
    sql = body["sql"] + "\nCREATE MATERIALIZED VIEW owners AS SELECT DISTINCT owner FROM accounts;"
    status, body = http("PUT", f"/v1/jobs/{JOB}", {"sql": sql})
    if status not in (200, 202):
        fail(f"replace answered {status}: {body}")
    # Waits for the swap before taking any event, so that changes of the old
    # version still queued here are checked against reads made after it:
    # those times come before the new version was installed, so they are
    # answered exactly, not from its replay of them.
    for _ in range(500):
        if http("GET", f"/v1/jobs/{JOB}")[1].get("status") != "replacing":
            break
        time.sleep(0.01)
    else:
        fail("the replacement never swapped in")
    resumed.kinds.clear()
    await follow_until(sub, follows, lambda: "RESET" in resumed.kinds and resumed.last is not None
                       and "SNAPSHOT" in resumed.kinds and not resumed.in_snapshot, "replace")
    token = ingest()
    d = data_of(gql("query($t: [String]) { owners(after: $t) { rows { owner } } _views }", {"t": [token]},
                    check=False))
    if "owners" not in d["_views"]:
        fail(f"_views lacks the new view: {d['_views']}")
    want = Counter(json.dumps({"owner": o}) for o in {o for o, _, _ in accounts.values()})
    if bag(d["owners"]["rows"]) != want:
        fail(f"owners {d['owners']['rows']} != reference {want}")
    print("replace: ok")

    # The job is dropped: the subscription gets a final error and completes.
    status, body = http("DELETE", f"/v1/jobs/{JOB}")
    if status not in (200, 204):
        fail(f"drop answered {status}: {body}")
    for _ in range(1000):
        m = await sub.next()
        if m["type"] == "next" and m["payload"].get("errors"):
            codes = [e.get("extensions", {}).get("code") for e in m["payload"]["errors"]]
            if "view_gone" not in codes:
                fail(f"expected view_gone, got {m}")
            break
    else:
        fail("no final error after the drop")
    ids = set()
    while ids != {"again", "mine"}:
        m = await sub.next()
        if m["type"] == "complete":
            ids.add(m["id"])
    print("drop: ok")
    await sub.ws.close()


def main():
    check_schema()
    check_queries(12)
    check_errors()
    asyncio.run(check_subscriptions(12))
    print("all ok")


main()
