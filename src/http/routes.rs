//! The route table: every route the server answers, as data.
//!
//! `server::routes` builds the actix router from `ENDPOINTS` and nothing
//! else, and `openapi::spec` describes exactly the same list, so the
//! OpenAPI description cannot miss a route or list one that does not exist.
//! A new route is one more entry here (with its summary and schemas, which
//! `openapi_components.json` must define; a test checks that). Its `{id}`'s
//! shape, its filters' schemas, its error answers and its links follow from
//! the entry; a limit its body schema has is set in `openapi::constrain` from
//! the constant the handler checks (a test fails on a limit only the JSON has).

use actix_web::http::Method;
use actix_web::{web, Route};

use super::{
    admin, api_keys, events, health, lots, members, metrics, openapi, payments, program, redemptions, refunds, reports,
    rewards, testing, transactions, webhooks,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// What a route answers with 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One JSON object of this component schema.
    Object(&'static str),
    /// `{"object":"list","data":[...],"has_more":bool}` of this schema, with
    /// the common list parameters (`limit`, `starting_after`,
    /// `ending_before`, `created[...]`).
    List(&'static str),
    /// Prometheus text.
    Text,
    /// `text/csv`.
    Csv,
}

pub struct Endpoint {
    pub verb: Verb,
    /// The full path, with `{id}` for path parameters. Paths under `/v1/`
    /// need the Bearer key.
    pub path: &'static str,
    pub summary: &'static str,
    /// Component schema of the JSON body, for routes that take one.
    pub body: Option<&'static str>,
    pub answer: Answer,
    /// The route's own query filters (beyond the common list parameters).
    pub filters: &'static [&'static str],
    /// Attaches the handler to a route of this method.
    pub handler: fn(Route) -> Route,
}

pub const V1: &str = "/v1";

/// A test hook: routes that answer only when the server was started with
/// its env var (`http/testing.rs`), and are described only then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestHook {
    /// `LEDGER_TEST_CLOCK`: `/v1/test/clock`.
    Clock,
    /// `LEDGER_FAULTS=1`: `/v1/test/faults`.
    Faults,
}

impl Endpoint {
    pub fn is_v1(&self) -> bool {
        self.path.starts_with("/v1/")
    }

    /// The test hook this route belongs to, if it is one.
    pub fn test_hook(&self) -> Option<TestHook> {
        match self.path {
            "/v1/test/clock" => Some(TestHook::Clock),
            "/v1/test/faults" => Some(TestHook::Faults),
            _ => None,
        }
    }
}

use Answer::{Csv, List, Object, Text};
use Verb::{Delete, Get, Post};

pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        verb: Get,
        path: "/healthz",
        summary: "The process answers",
        body: None,
        answer: Object("Status"),
        filters: &[],
        handler: |r| r.to(health::healthz),
    },
    Endpoint {
        verb: Get,
        path: "/readyz",
        summary: "Replay is done (503 until then)",
        body: None,
        answer: Object("Status"),
        filters: &[],
        handler: |r| r.to(health::readyz),
    },
    Endpoint {
        verb: Get,
        path: "/metrics",
        summary: "Prometheus metrics: requests, latencies, WAL, accounts, actors, replay, snapshots",
        body: None,
        answer: Text,
        filters: &[],
        handler: |r| r.to(metrics::metrics),
    },
    Endpoint {
        verb: Get,
        path: "/v1/openapi.json",
        summary: "This OpenAPI description",
        body: None,
        answer: Object("OpenApi"),
        filters: &[],
        handler: |r| r.to(openapi::serve),
    },
    Endpoint {
        verb: Post,
        path: "/v1/customers",
        summary: "Create a customer",
        body: Some("CreateCustomer"),
        answer: Object("Customer"),
        filters: &[],
        handler: |r| r.to(members::create_customer),
    },
    Endpoint {
        verb: Get,
        path: "/v1/customers",
        summary: "List customers, newest first, optionally by exact email",
        body: None,
        answer: List("Customer"),
        filters: &["email"],
        handler: |r| r.to(members::list_customers),
    },
    Endpoint {
        verb: Get,
        path: "/v1/customers/{id}",
        summary: "Retrieve a customer",
        body: None,
        answer: Object("Customer"),
        filters: &[],
        handler: |r| r.to(members::get_customer),
    },
    Endpoint {
        verb: Post,
        path: "/v1/customers/{id}",
        summary: "Update a customer: email, name, metadata (merged; a key set to \"\" is removed)",
        body: Some("UpdateCustomer"),
        answer: Object("Customer"),
        filters: &[],
        handler: |r| r.to(members::update_customer),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/accounts",
        summary: "Create a loyalty account, linked to a customer if given",
        body: Some("AccountParams"),
        answer: Object("LoyaltyAccount"),
        filters: &[],
        handler: |r| r.to(members::create_account),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/accounts",
        summary: "List loyalty accounts, newest first",
        body: None,
        answer: List("LoyaltyAccount"),
        filters: &["customer"],
        handler: |r| r.to(members::list_accounts),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/accounts/{id}",
        summary: "Retrieve a loyalty account with its balance",
        body: None,
        answer: Object("LoyaltyAccount"),
        filters: &[],
        handler: |r| r.to(members::get_account),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/accounts/{id}",
        summary: "Link a customer to a loyalty account, or update its metadata",
        body: Some("AccountParams"),
        answer: Object("LoyaltyAccount"),
        filters: &[],
        handler: |r| r.to(members::update_account),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/program",
        summary: "Retrieve the loyalty program settings",
        body: None,
        answer: Object("LoyaltyProgram"),
        filters: &[],
        handler: |r| r.to(program::get_program),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/program",
        summary: "Update the loyalty program settings",
        body: Some("UpdateProgram"),
        answer: Object("LoyaltyProgram"),
        filters: &[],
        handler: |r| r.to(program::update_program),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/earning_rules",
        summary: "Create an earning rule",
        body: Some("CreateEarningRule"),
        answer: Object("EarningRule"),
        filters: &[],
        handler: |r| r.to(program::create_rule),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/earning_rules",
        summary: "List earning rules, newest first",
        body: None,
        answer: List("EarningRule"),
        filters: &["currency", "active"],
        handler: |r| r.to(program::list_rules),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/earning_rules/{id}",
        summary: "Retrieve an earning rule",
        body: None,
        answer: Object("EarningRule"),
        filters: &[],
        handler: |r| r.to(program::get_rule),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/earning_rules/{id}",
        summary: "Update an earning rule",
        body: Some("UpdateEarningRule"),
        answer: Object("EarningRule"),
        filters: &[],
        handler: |r| r.to(program::update_rule),
    },
    Endpoint {
        verb: Post,
        path: "/v1/payments",
        summary: "Create a payment (confirm:true completes it and earns points)",
        body: Some("CreatePayment"),
        answer: Object("Payment"),
        filters: &[],
        handler: |r| r.to(payments::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/payments",
        summary: "List payments, newest first",
        body: None,
        answer: List("Payment"),
        filters: &["customer", "status"],
        handler: |r| r.to(payments::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/payments/{id}",
        summary: "Retrieve a payment",
        body: None,
        answer: Object("Payment"),
        filters: &[],
        handler: |r| r.to(payments::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/payments/{id}/complete",
        summary: "Complete a pending payment: consumes its redemptions and earns points",
        body: Some("NoParams"),
        answer: Object("Payment"),
        filters: &[],
        handler: |r| r.to(payments::complete_route),
    },
    Endpoint {
        verb: Post,
        path: "/v1/payments/{id}/fail",
        summary: "Fail a pending payment: its redemptions are canceled and their points return",
        body: Some("NoParams"),
        answer: Object("Payment"),
        filters: &[],
        handler: |r| r.to(payments::fail_route),
    },
    Endpoint {
        verb: Post,
        path: "/v1/refunds",
        summary: "Refund a completed payment; earned points are clawed back in proportion",
        body: Some("CreateRefund"),
        answer: Object("Refund"),
        filters: &[],
        handler: |r| r.to(refunds::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/refunds",
        summary: "List refunds, newest first",
        body: None,
        answer: List("Refund"),
        filters: &["payment"],
        handler: |r| r.to(refunds::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/refunds/{id}",
        summary: "Retrieve a refund",
        body: None,
        answer: Object("Refund"),
        filters: &[],
        handler: |r| r.to(refunds::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/rewards",
        summary: "Create a reward",
        body: Some("CreateReward"),
        answer: Object("Reward"),
        filters: &[],
        handler: |r| r.to(rewards::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/rewards",
        summary: "List rewards, newest first",
        body: None,
        answer: List("Reward"),
        filters: &["active"],
        handler: |r| r.to(rewards::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/rewards/{id}",
        summary: "Retrieve a reward",
        body: None,
        answer: Object("Reward"),
        filters: &[],
        handler: |r| r.to(rewards::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/rewards/{id}",
        summary: "Update a reward",
        body: Some("UpdateReward"),
        answer: Object("Reward"),
        filters: &[],
        handler: |r| r.to(rewards::update),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/redemptions",
        summary: "Redeem points for a reward (the points are deducted now)",
        body: Some("CreateRedemption"),
        answer: Object("Redemption"),
        filters: &[],
        handler: |r| r.to(redemptions::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/redemptions",
        summary: "List redemptions, newest first",
        body: None,
        answer: List("Redemption"),
        filters: &["account", "payment", "status"],
        handler: |r| r.to(redemptions::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/redemptions/{id}",
        summary: "Retrieve a redemption",
        body: None,
        answer: Object("Redemption"),
        filters: &[],
        handler: |r| r.to(redemptions::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/redemptions/{id}/cancel",
        summary: "Cancel a pending redemption; its points return",
        body: Some("NoParams"),
        answer: Object("Redemption"),
        filters: &[],
        handler: |r| r.to(redemptions::cancel),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/awards",
        summary: "Award points for a completed payment that has none",
        body: Some("CreateAward"),
        answer: Object("Payment"),
        filters: &[],
        handler: |r| r.to(payments::award),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/transactions",
        summary: "List points transactions (the points ledger), newest first",
        body: None,
        answer: List("PointsTransaction"),
        filters: &["account", "type", "payment"],
        handler: |r| r.to(transactions::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/transactions/{id}",
        summary: "Retrieve a points transaction",
        body: None,
        answer: Object("PointsTransaction"),
        filters: &[],
        handler: |r| r.to(transactions::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/loyalty/adjustments",
        summary: "Credit or debit an account by hand, with a reason (an adjustment transaction)",
        body: Some("CreateAdjustment"),
        answer: Object("PointsTransaction"),
        filters: &[],
        handler: |r| r.to(lots::create_adjustment),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/lots",
        summary: "List points lots, soonest to expire first",
        body: None,
        answer: List("PointsLot"),
        filters: &["account", "status"],
        handler: |r| r.to(lots::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/lots/{id}",
        summary: "Retrieve a points lot",
        body: None,
        answer: Object("PointsLot"),
        filters: &[],
        handler: |r| r.to(lots::get),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/reports/liability",
        summary: "The points liability now: available, pending, negative, expiring soon, and their value",
        body: None,
        answer: Object("LiabilityReport"),
        filters: &[],
        handler: |r| r.to(reports::liability),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/reports/activity",
        summary: "Points activity over [created[gte], created[lt]): opening, movements by type, closing",
        body: None,
        answer: Object("ActivityReport"),
        filters: &["created[gte]", "created[lt]"],
        handler: |r| r.to(reports::activity),
    },
    Endpoint {
        verb: Get,
        path: "/v1/loyalty/exports/transactions",
        summary: "Every points transaction created in [created[gte], created[lt]) as CSV, oldest first, no page limit",
        body: None,
        answer: Csv,
        filters: &["created[gte]", "created[lt]"],
        handler: |r| r.to(reports::export_transactions),
    },
    Endpoint {
        verb: Get,
        path: "/v1/events",
        summary: "List events (what happened), newest first",
        body: None,
        answer: List("Event"),
        filters: &["type"],
        handler: |r| r.to(events::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/events/{id}",
        summary: "Retrieve an event",
        body: None,
        answer: Object("Event"),
        filters: &[],
        handler: |r| r.to(events::get),
    },
    Endpoint {
        verb: Post,
        path: "/v1/webhook_endpoints",
        summary: "Create a webhook endpoint (its signing secret is shown only here)",
        body: Some("CreateWebhookEndpoint"),
        answer: Object("WebhookEndpoint"),
        filters: &[],
        handler: |r| r.to(webhooks::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/webhook_endpoints",
        summary: "List webhook endpoints, newest first",
        body: None,
        answer: List("WebhookEndpoint"),
        filters: &[],
        handler: |r| r.to(webhooks::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/webhook_endpoints/{id}",
        summary: "Retrieve a webhook endpoint",
        body: None,
        answer: Object("WebhookEndpoint"),
        filters: &[],
        handler: |r| r.to(webhooks::get),
    },
    Endpoint {
        verb: Delete,
        path: "/v1/webhook_endpoints/{id}",
        summary: "Delete a webhook endpoint",
        body: None,
        answer: Object("Deleted"),
        filters: &[],
        handler: |r| r.to(webhooks::delete),
    },
    Endpoint {
        verb: Post,
        path: "/v1/webhook_endpoints/{id}",
        summary: "Enable or disable a webhook endpoint (a disabled one gets no new deliveries; its pending ones wait)",
        body: Some("UpdateWebhookEndpoint"),
        answer: Object("WebhookEndpoint"),
        filters: &[],
        handler: |r| r.to(webhooks::update),
    },
    Endpoint {
        verb: Post,
        path: "/v1/webhook_endpoints/{id}/roll_secret",
        summary: "Roll a webhook endpoint's signing secret: the old one also signs for expire_in_seconds",
        body: Some("RollWebhookSecret"),
        answer: Object("WebhookEndpoint"),
        filters: &[],
        handler: |r| r.to(webhooks::roll_secret),
    },
    Endpoint {
        verb: Get,
        path: "/v1/webhook_deliveries",
        summary: "List webhook deliveries (pending, delivered, failed), newest first",
        body: None,
        answer: List("WebhookDelivery"),
        filters: &["endpoint", "event", "status"],
        handler: |r| r.to(webhooks::list_deliveries),
    },
    Endpoint {
        verb: Get,
        path: "/v1/webhook_deliveries/{id}",
        summary: "Retrieve a webhook delivery",
        body: None,
        answer: Object("WebhookDelivery"),
        filters: &[],
        handler: |r| r.to(webhooks::get_delivery),
    },
    Endpoint {
        verb: Post,
        path: "/v1/webhook_deliveries/{id}/retry",
        summary:
            "Deliver a webhook delivery again now, whatever its status (409 if its endpoint is disabled or deleted)",
        body: Some("NoParams"),
        answer: Object("WebhookDelivery"),
        filters: &[],
        handler: |r| r.to(webhooks::retry_delivery),
    },
    Endpoint {
        verb: Post,
        path: "/v1/api_keys",
        summary: "Create an API key (full or read-only; its secret is shown only here and on roll)",
        body: Some("CreateApiKey"),
        answer: Object("ApiKey"),
        filters: &[],
        handler: |r| r.to(api_keys::create),
    },
    Endpoint {
        verb: Get,
        path: "/v1/api_keys",
        summary: "List API keys (not revoked), newest first",
        body: None,
        answer: List("ApiKey"),
        filters: &[],
        handler: |r| r.to(api_keys::list),
    },
    Endpoint {
        verb: Get,
        path: "/v1/api_keys/{id}",
        summary: "Retrieve an API key (never its secret)",
        body: None,
        answer: Object("ApiKey"),
        filters: &[],
        handler: |r| r.to(api_keys::get),
    },
    Endpoint {
        verb: Delete,
        path: "/v1/api_keys/{id}",
        summary: "Revoke an API key: its secrets are refused (401) from then on",
        body: None,
        answer: Object("Deleted"),
        filters: &[],
        handler: |r| r.to(api_keys::delete),
    },
    Endpoint {
        verb: Post,
        path: "/v1/api_keys/{id}/roll",
        summary: "Roll an API key: a new secret; the old one keeps working for expire_in_seconds",
        body: Some("RollApiKey"),
        answer: Object("ApiKey"),
        filters: &[],
        handler: |r| r.to(api_keys::roll),
    },
    Endpoint {
        verb: Post,
        path: "/v1/admin/snapshot",
        summary: "Write a consistent snapshot now (the server keeps serving); old WAL segments are then deleted",
        body: Some("NoParams"),
        answer: Object("Snapshot"),
        filters: &[],
        handler: |r| r.to(admin::snapshot),
    },
    Endpoint {
        verb: Post,
        path: "/v1/test/clock",
        summary: "Tests only (LEDGER_TEST_CLOCK): move the manual clock forward; 404 otherwise",
        body: Some("AdvanceClock"),
        answer: Object("TestClock"),
        filters: &[],
        handler: |r| r.to(testing::advance_clock),
    },
    Endpoint {
        verb: Post,
        path: "/v1/test/faults",
        summary: "Tests only (LEDGER_FAULTS=1): arm or clear a storage fault under the WAL; 404 otherwise",
        body: Some("ArmFault"),
        answer: Object("TestFaults"),
        filters: &[],
        handler: |r| r.to(testing::arm_fault),
    },
    Endpoint {
        verb: Get,
        path: "/v1/test/faults",
        summary: "Tests only (LEDGER_FAULTS=1): storage operations counted, faults fired and armed; 404 otherwise",
        body: None,
        answer: Object("TestFaults"),
        filters: &[],
        handler: |r| r.to(testing::fault_status),
    },
];

/// `ENDPOINTS` grouped by path, in first-seen order: one actix resource each
/// (two resources on one path would hide each other's methods).
pub fn by_path() -> Vec<(&'static str, Vec<&'static Endpoint>)> {
    let mut out: Vec<(&'static str, Vec<&'static Endpoint>)> = Vec::new();
    for ep in ENDPOINTS {
        match out.iter_mut().find(|(p, _)| *p == ep.path) {
            Some((_, eps)) => eps.push(ep),
            None => out.push((ep.path, vec![ep])),
        }
    }
    out
}

/// A route of `ep`'s method with its handler.
pub fn route(ep: &Endpoint) -> Route {
    (ep.handler)(web::route().method(ep.verb.method()))
}
