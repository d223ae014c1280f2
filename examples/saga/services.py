#!/usr/bin/env python3
"""Stand-in services for the saga example: inventory, payments, shipping and
notifications over real HTTP, on one port, with a settable failure rate and
latency. Each endpoint de-duplicates by Idempotency-Key, as a real payment
gateway does: a request seen before gets the answer it got then, and its
effect happens once. GET /state shows stock levels, charges, refunds,
shipments and notifications, for checking the saga's outcome.

    python3 examples/saga/services.py [--port 9900] [--fail 0.1] [--latency-ms 20]
                                      [--slow 0.05 --slow-ms 40000]

--fail is the chance that a call fails: a transient 503 (retried by weir)
for every service, and for payments also a permanent 402 (card declined),
which makes the saga compensate. --slow makes that share of payment calls
take --slow-ms longer: past the saga's 30 s payment time-out, the order is
compensated (and refunded if the charge went through after all).
"""

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {
    "stock": {},          # product -> units available
    "reservations": {},   # order_id -> {"product", "quantity"}
    "charges": {},        # order_id -> amount
    "refunds": {},        # order_id -> amount
    "shipments": {},      # order_id -> product
    "notifications": {},  # order_id -> email
    "calls": 0,
    # "service/action" -> order_id -> how often it took effect (a retry
    # the Idempotency-Key caught does not count): more than 1 is a bug.
    "effects": {},
}
SEEN = {}  # Idempotency-Key -> (status, body)
ARGS = None
INITIAL_STOCK = 1_000_000


def effect(service, action, order_id, row):
    """Applies one call's effect; returns (status, body)."""
    s = STATE
    if service == "inventory" and action == "reserve":
        product, qty = row.get("product"), int(row.get("quantity") or 0)
        have = s["stock"].setdefault(product, INITIAL_STOCK)
        if order_id in s["reservations"]:
            return 200, {"reserved": True}
        if have < qty:
            return 409, {"error": "out of stock"}
        s["stock"][product] = have - qty
        s["reservations"][order_id] = {"product": product, "quantity": qty}
        return 200, {"reserved": True}
    if service == "inventory" and action == "release":
        r = s["reservations"].pop(order_id, None)
        if r:
            s["stock"][r["product"]] += r["quantity"]
        return 200, {"released": bool(r)}
    if service == "payments" and action == "charge":
        if ARGS.fail and random.random() < ARGS.fail / 2:
            return 402, {"error": "card declined"}
        s["charges"][order_id] = row.get("amount")
        return 200, {"charge_id": f"ch_{order_id}"}
    if service == "payments" and action == "refund":
        if order_id in s["charges"]:
            s["refunds"][order_id] = s["charges"][order_id]
        return 200, {"refunded": order_id in s["refunds"]}
    if service == "shipping" and action == "ship":
        s["shipments"][order_id] = row.get("product")
        return 200, {"tracking": f"trk_{order_id}"}
    if service == "notify" and action == "email":
        s["notifications"][order_id] = row.get("email")
        return 200, {"sent": True}
    return 404, {"error": "no such endpoint"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/state":
            with LOCK:
                self.reply(200, STATE)
        else:
            self.reply(404, {"error": "no such endpoint"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            row = json.loads(raw or b"{}")
        except ValueError:
            return self.reply(400, {"error": "body is not JSON"})
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or not parts[2].isdigit():
            return self.reply(404, {"error": "no such endpoint"})
        service, action, order_id = parts[0], parts[1], int(parts[2])
        if ARGS.latency_ms:
            time.sleep(random.uniform(0.5, 1.5) * ARGS.latency_ms / 1000)
        if ARGS.slow and service == "payments" and random.random() < ARGS.slow:
            time.sleep(ARGS.slow_ms / 1000)
        key = self.headers.get("Idempotency-Key") or f"{self.path}:{raw!r}"
        with LOCK:
            STATE["calls"] += 1
            if key in SEEN:
                return self.reply(*SEEN[key])
            if ARGS.fail and random.random() < ARGS.fail:
                return self.reply(503, {"error": "try again"})
            status, body = effect(service, action, order_id, row)
            if status < 500:
                SEEN[key] = (status, body)
            if status < 300:
                done = STATE["effects"].setdefault(f"{service}/{action}", {})
                done[str(order_id)] = done.get(str(order_id), 0) + 1
        self.reply(status, body)


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=9900)
    p.add_argument("--fail", type=float, default=0.1, help="chance a call fails (0 to 1)")
    p.add_argument("--latency-ms", type=float, default=20)
    p.add_argument("--slow", type=float, default=0, help="chance a payment call takes --slow-ms more")
    p.add_argument("--slow-ms", type=float, default=3000)
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print(f"saga services on http://127.0.0.1:{ARGS.port} (fail {ARGS.fail}, latency {ARGS.latency_ms} ms)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
