//! The shop's synthetic event stream: orders, payments, inventory and
//! customers, with the life cycle of real orders (placed → paid → shipped,
//! failed payments and retries, cancellations with stock released, refunds).
//! Seeded, so a run can be reproduced.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const PRODUCTS: [(&str, &str); 12] = [
    ("sku-kettle", "19.99"),
    ("sku-mug", "7.50"),
    ("sku-grinder", "64.00"),
    ("sku-beans-1kg", "24.90"),
    ("sku-filter", "4.25"),
    ("sku-scale", "39.00"),
    ("sku-press", "29.95"),
    ("sku-espresso", "449.00"),
    ("sku-tamper", "18.40"),
    ("sku-milk-jug", "12.00"),
    ("sku-thermos", "22.75"),
    ("sku-gift-card", "50.00"),
];
const FIRST_ORDER: i64 = 1000;
/// Orders in flight the stream settles at.
const IN_FLIGHT: usize = 1000;
const METHODS: [&str; 4] = ["card", "paypal", "bank_transfer", "gift_card"];
const TIERS: [&str; 3] = ["standard", "silver", "gold"];

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Placed,
    Paid,
    Shipped,
}

struct OpenOrder {
    id: i64,
    customer: i64,
    amount_cents: i64,
    product: usize,
    quantity: i64,
    stage: Stage,
    failed_payments: u32,
}

/// Produces (topic, event) pairs; event time advances `step_ms` per event.
pub struct ShopGenerator {
    rng: StdRng,
    next_order: i64,
    /// Order ids are reused after this many (`None`: always new ones).
    order_ids: Option<i64>,
    next_payment: i64,
    customers: i64,
    open: Vec<OpenOrder>,
    clock_ms: i64,
    step_ms: i64,
    registered: i64,
    /// Events that follow the last one (stock movements of an order).
    pending: std::collections::VecDeque<(&'static str, Value)>,
}

impl ShopGenerator {
    pub fn new(seed: u64, start_ms: i64, events_per_second: u64) -> Self {
        ShopGenerator {
            rng: StdRng::seed_from_u64(seed),
            next_order: FIRST_ORDER,
            order_ids: None,
            next_payment: 1,
            customers: 500,
            open: Vec::new(),
            clock_ms: start_ms,
            step_ms: (1000 / events_per_second.max(1)).max(1) as i64,
            registered: 0,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Draws order ids from a fixed set of `n`, reusing the id of a
    /// finished order: a stream that goes on while its keys stay the same,
    /// to show that state grows with keys, not events (DESIGN.md §4).
    pub fn with_order_ids(mut self, n: i64) -> Self {
        self.order_ids = Some(n.max(1));
        self
    }

    fn ts(&self) -> String {
        weir_operators::repr::format_timestamp(self.clock_ms)
    }

    pub fn next_event(&mut self) -> (&'static str, Value) {
        if let Some(e) = self.pending.pop_front() {
            return e;
        }
        self.clock_ms += self.step_ms;
        // Customers register first, and now and then change tier.
        if self.registered < self.customers || self.rng.random_bool(0.01) {
            let id = if self.registered < self.customers {
                self.registered += 1;
                self.registered
            } else {
                self.rng.random_range(1..=self.customers)
            };
            let tier = TIERS[self.rng.random_range(0..TIERS.len())];
            return (
                "customers",
                json!({"type": "CustomerRegistered", "customer_id": id, "name": format!("customer-{id}"), "tier": tier, "ts": self.ts()}),
            );
        }
        // New orders come in while fewer than ~1,000 are in flight; beyond
        // that, orders mostly move on (an order takes about three more
        // events to finish), so the number in flight stays level.
        let place = if self.open.len() < IN_FLIGHT { 0.35 } else { 0.15 };
        if self.open.len() < 50 || self.rng.random_bool(place) {
            return self.place_order();
        }
        let i = self.rng.random_range(0..self.open.len());
        let stage = self.open[i].stage;
        match stage {
            Stage::Placed => {
                if self.rng.random_bool(0.08) {
                    let o = self.open.swap_remove(i);
                    return self.cancel(o);
                }
                // Now and then a customer walks away from the checkout: the
                // order is never paid nor cancelled (05_rules.sql times it
                // out).
                if self.rng.random_bool(0.01) {
                    self.open.swap_remove(i);
                    return self.next_event();
                }
                self.pay(i)
            }
            Stage::Paid => {
                let ts = self.ts();
                let o = &mut self.open[i];
                o.stage = Stage::Shipped;
                (
                    "orders",
                    json!({"type": "OrderShipped", "order_id": o.id, "customer_id": o.customer, "ts": ts}),
                )
            }
            Stage::Shipped => {
                let o = self.open.swap_remove(i);
                if self.rng.random_bool(0.05) {
                    let id = self.next_payment;
                    self.next_payment += 1;
                    return (
                        "payments",
                        json!({"type": "PaymentRefunded", "payment_id": id, "order_id": o.id, "customer_id": o.customer,
                               "amount": cents(o.amount_cents), "method": METHODS[(o.id % 4) as usize], "ts": self.ts()}),
                    );
                }
                self.next_event()
            }
        }
    }

    fn place_order(&mut self) -> (&'static str, Value) {
        let id = loop {
            let id = self.next_order;
            self.next_order += 1;
            if let Some(n) = self.order_ids {
                if self.next_order >= FIRST_ORDER + n {
                    self.next_order = FIRST_ORDER;
                }
                // An open order keeps its id until it is finished.
                if self.open.iter().any(|o| o.id == id) && self.open.len() < n as usize {
                    continue;
                }
            }
            break id;
        };
        let customer = self.rng.random_range(1..=self.customers);
        let product = self.rng.random_range(0..PRODUCTS.len());
        let quantity = self.rng.random_range(1..=4);
        let price_cents: i64 = PRODUCTS[product].1.replace('.', "").parse().unwrap_or(100);
        self.pending.push_back((
            "inventory",
            json!({"type": "StockReserved", "product": PRODUCTS[product].0, "quantity": quantity, "order_id": id, "ts": self.ts()}),
        ));
        if self.rng.random_bool(0.02) {
            self.pending.push_back((
                "inventory",
                json!({"type": "StockReceived", "product": PRODUCTS[product].0, "quantity": 50, "order_id": null, "ts": self.ts()}),
            ));
        }
        self.open.push(OpenOrder {
            id,
            customer,
            amount_cents: price_cents * quantity,
            product,
            quantity,
            stage: Stage::Placed,
            failed_payments: 0,
        });
        (
            "orders",
            json!({"type": "OrderPlaced", "order_id": id, "customer_id": customer, "product": PRODUCTS[product].0,
                   "quantity": quantity, "price": PRODUCTS[product].1, "ts": self.ts()}),
        )
    }

    fn pay(&mut self, i: usize) -> (&'static str, Value) {
        let ts = self.ts();
        let pid = self.next_payment;
        self.next_payment += 1;
        let fail = self.rng.random_bool(0.12) && self.open[i].failed_payments < 4;
        let method = METHODS[self.rng.random_range(0..METHODS.len())];
        let o = &mut self.open[i];
        if fail {
            o.failed_payments += 1;
            return (
                "payments",
                json!({"type": "PaymentFailed", "payment_id": pid, "order_id": o.id, "customer_id": o.customer,
                       "amount": cents(o.amount_cents), "method": method, "ts": ts}),
            );
        }
        o.stage = Stage::Paid;
        let (id, customer, amount) = (o.id, o.customer, o.amount_cents);
        // The order records the payment too, as an order aggregate would.
        self.pending.push_back((
            "orders",
            json!({"type": "OrderPaid", "order_id": id, "customer_id": customer, "ts": ts}),
        ));
        (
            "payments",
            json!({"type": "PaymentAuthorized", "payment_id": pid, "order_id": id, "customer_id": customer,
                   "amount": cents(amount), "method": method, "ts": ts}),
        )
    }

    fn cancel(&mut self, o: OpenOrder) -> (&'static str, Value) {
        let ts = self.ts();
        self.pending.push_back((
            "inventory",
            json!({"type": "StockReleased", "product": PRODUCTS[o.product].0, "quantity": o.quantity, "order_id": o.id, "ts": ts}),
        ));
        (
            "orders",
            json!({"type": "OrderCancelled", "order_id": o.id, "customer_id": o.customer, "product": PRODUCTS[o.product].0,
                   "quantity": o.quantity, "ts": ts}),
        )
    }
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}
