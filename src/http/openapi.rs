//! `GET /v1/openapi.json`: an OpenAPI 3 description of every route.
//!
//! Paths, methods, path parameters, list parameters and filters, error
//! answers and links come from the route table (`routes::ENDPOINTS`) that the
//! router itself is built from, so they cannot drift. Object and request
//! shapes are written by hand in `openapi_components.json`; every limit in
//! them (length, range, pattern, count) is set by `constrain` from the
//! constant or rule the server checks, and a unit test fails if the file
//! keeps one of its own. The rules are generic (an `{id}`'s kind, an id
//! filter's kind, links by kind), so a new route in the table gets them too.
//! The test hooks' routes (`/v1/test/*`) are described only when the server
//! runs with them on (`LEDGER_TEST_CLOCK`, `LEDGER_FAULTS`); otherwise they
//! answer 404 like any unknown route, and a schema-driven client should not
//! see them. A generator crate (utoipa) would need an annotation on every
//! handler and type and adds a heavy proc-macro build for little more than
//! this gives. `.ci/check-spec` runs schemathesis against the real server.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::lots::{ADJUSTMENT_POINTS_MAX, ADJUSTMENT_REASON_CHARS_MAX};
use super::query::id_filter_kind;
use super::routes::{Answer, Endpoint, TestHook, Verb, ENDPOINTS};
use super::{idempotency, testing};
use crate::config::{
    AMOUNT_MAX, API_KEY_NAME_CHARS_MAX, API_KEY_ROLL_EXPIRE_SECONDS_MAX, IDEMPOTENCY_KEY_CHARS_MAX, ID_BYTES_MAX,
    LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX, METADATA_VALUE_CHARS_MAX,
    TEXT_FIELD_CHARS_MAX, WEBHOOK_ROLL_EXPIRE_SECONDS_MAX,
};
use crate::domain::earning::RULE_POINTS_MAX;
use crate::domain::events::EventType;
use crate::domain::program::{
    EXPIRY_DAYS_MAX, EXPIRY_DAYS_MIN, EXPIRY_WARNING_DAYS_MAX, PENDING_DAYS_MAX, REDEMPTION_TTL_SECONDS_MAX,
    REDEMPTION_TTL_SECONDS_MIN,
};
use crate::domain::redemptions::REDEMPTIONS_PER_PAYMENT_MAX;
use crate::domain::rewards::{client_id_pattern, REWARD_POINTS_MAX};
use crate::domain::webhooks::WEBHOOK_URL_BYTES_MAX;
use crate::domain::{money, text, IdKind};
use crate::ledger::Ledger;
use crate::test_hooks::faults::FAULT_DELAY_MAX;

/// The hand-written schemas (`components.schemas`); `constrain` then sets
/// every limit in them from the constants the server checks.
const COMPONENTS: &str = include_str!("openapi_components.json");

/// Which component schema is which kind of object (its `id`'s prefix): the
/// `{id}` path parameters, the links and the id-valued fields follow from it.
pub const SCHEMA_KINDS: &[(&str, IdKind)] = &[
    ("Customer", IdKind::Customer),
    ("LoyaltyAccount", IdKind::Account),
    ("Payment", IdKind::Payment),
    ("Refund", IdKind::Refund),
    ("PointsTransaction", IdKind::PointsTransaction),
    ("Redemption", IdKind::Redemption),
    ("Reward", IdKind::Reward),
    ("EarningRule", IdKind::EarningRule),
    ("Event", IdKind::Event),
    ("WebhookEndpoint", IdKind::WebhookEndpoint),
    ("WebhookDelivery", IdKind::WebhookDelivery),
    ("ApiKey", IdKind::ApiKey),
    ("PointsLot", IdKind::Lot),
];

/// Request body fields that name an object: (schema, field, kind). Their
/// shape is `IdKind::accepts` (a malformed one is 400 `resource_missing` like
/// an unknown one), and a link fills them from the answer of an operation
/// that made such an object.
pub const BODY_ID_FIELDS: &[(&str, &str, IdKind)] = &[
    ("AccountParams", "customer", IdKind::Customer),
    ("CreatePayment", "customer", IdKind::Customer),
    ("CreateRefund", "payment", IdKind::Payment),
    ("CreateRedemption", "account", IdKind::Account),
    ("CreateRedemption", "reward", IdKind::Reward),
    ("CreateAward", "payment", IdKind::Payment),
    ("CreateAward", "account", IdKind::Account),
    ("CreateAdjustment", "account", IdKind::Account),
];

fn schema_kind(name: &str) -> Option<IdKind> {
    SCHEMA_KINDS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// The schema of an id of `kind`, exactly as `IdKind::accepts` takes it.
pub fn id_schema(kind: IdKind) -> Value {
    json!({
        "type": "string",
        "minLength": kind.prefix().len() + 1,
        "maxLength": ID_BYTES_MAX,
        "pattern": kind.pattern(),
        "description": format!("An id: {}...", kind.prefix())
    })
}

/// The kind of object a path's `{id}` names: what `GET` of the path up to
/// `{id}` answers, else what the collection before it lists or creates.
pub fn path_id_kind(path: &str) -> Option<IdKind> {
    let at = path.find("/{id}")?;
    let (object_path, collection) = (&path[..at + "/{id}".len()], &path[..at]);
    let answered = |p: &str, verb: Verb| {
        ENDPOINTS.iter().filter(|ep| ep.path == p && ep.verb == verb).find_map(|ep| match ep.answer {
            Answer::Object(s) | Answer::List(s) => schema_kind(s),
            Answer::Text | Answer::Csv => None,
        })
    };
    answered(object_path, Verb::Get)
        .or_else(|| answered(collection, Verb::Get))
        .or_else(|| answered(collection, Verb::Post))
}

fn operation_id(ep: &Endpoint) -> String {
    let path: String = ep
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    format!("{}_{path}", ep.verb.as_str().to_ascii_lowercase())
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn query_parameter(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// Query parameters every list route takes, with the limits `state::list` checks.
/// `kind`: what the list holds (its cursors are ids of it).
fn list_parameters(kind: Option<IdKind>) -> Vec<Value> {
    let cursor = kind.map_or_else(|| json!({"type": "string", "minLength": 1, "maxLength": ID_BYTES_MAX}), id_schema);
    let created = json!({"type": "integer", "format": "int64"});
    vec![
        query_parameter(
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}),
            &format!("Page size, 1 to {LIST_LIMIT_MAX} (default {LIST_LIMIT_DEFAULT})"),
        ),
        query_parameter("starting_after", cursor.clone(), "Cursor: the page of objects just older than this id (the last object of the previous page); not with ending_before; an id not in the list is 400 resource_missing"),
        query_parameter("ending_before", cursor, "Cursor: the page of objects just newer than this id (the first object of the next page), still newest first; has_more says whether newer ones remain; not with starting_after"),
        query_parameter("created", created.clone(), "Created exactly at this unix second"),
        query_parameter("created[gte]", created.clone(), "Created at or after (unix seconds)"),
        query_parameter("created[gt]", created.clone(), "Created after (unix seconds)"),
        query_parameter("created[lte]", created.clone(), "Created at or before (unix seconds)"),
        query_parameter("created[lt]", created, "Created before (unix seconds)"),
    ]
}

/// The schema of a route filter, by the rule its handler checks it with:
/// an id filter (`query::ID_FILTERS`), a `true`/`false` flag, an email, a
/// currency, or a field of the listed objects that has an enum (`status`, `type`).
fn filter_schema(name: &str, listed: Option<&Value>) -> Value {
    if let Some(kind) = id_filter_kind(name) {
        return id_schema(kind);
    }
    match name {
        "active" => json!({"type": "boolean"}),
        "email" => json!({"type": "string", "minLength": 1, "maxLength": TEXT_FIELD_CHARS_MAX}),
        "currency" => json!({"type": "string", "pattern": money::CURRENCY_PATTERN}),
        "created[gte]" | "created[lt]" => json!({"type": "integer", "format": "int64"}),
        _ => match listed.and_then(|s| s["properties"][name]["enum"].as_array()) {
            Some(values) => json!({"type": "string", "enum": values}),
            None => json!({"type": "string"}),
        },
    }
}

/// Error answers every operation may give, by status, with when.
fn error_responses(ep: &Endpoint) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if ep.path == "/readyz" {
        out.push(("503", "Replay is not done yet"));
    }
    if !ep.is_v1() {
        return out;
    }
    out.push((
        "400",
        "A parameter is missing, unknown or invalid, or names an object that does not exist (resource_missing)",
    ));
    out.push(("401", "No valid key (api_key_missing, invalid_api_key)"));
    out.push(("403", "The key may not do this (a read-only key writing, or managing keys)"));
    out.push(("404", "No such object (resource_missing), or a test hook that is off (route_not_found)"));
    if ep.verb != Verb::Get {
        out.push((
            "409",
            "The object's state does not allow it, or the Idempotency-Key was used for another request or is in use",
        ));
    }
    if ep.body.is_some() {
        out.push(("413", "The body is over the size limit, or the change it makes is too large to record"));
    }
    out.push(("503", "Starting (not_ready), overloaded, or storage unavailable: nothing was acknowledged"));
    out
}

/// Links from an operation that answers one object of `schema`: to every
/// operation whose path `{id}` is that kind of object (`$response.body#/id`),
/// and to every operation whose body has a field naming one (`BODY_ID_FIELDS`).
fn links(schema: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(kind) = schema_kind(schema) else { return out };
    for target in ENDPOINTS.iter().filter(|t| t.test_hook().is_none()) {
        let id = operation_id(target);
        if path_id_kind(target.path) == Some(kind) {
            out.insert(
                format!("{id}_by_id"),
                json!({"operationId": id, "parameters": {"path.id": "$response.body#/id"}}),
            );
        }
        for (body, field, _) in BODY_ID_FIELDS.iter().filter(|(b, _, k)| Some(*b) == target.body && *k == kind) {
            let mut body_value = Map::new();
            body_value.insert(field.to_string(), json!("$response.body#/id"));
            out.insert(
                format!("{id}_{body}_{field}"),
                json!({"operationId": id, "requestBody": Value::Object(body_value)}),
            );
        }
    }
    out
}

fn operation(ep: &Endpoint, schemas: &Map<String, Value>) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    if ep.path.contains("{id}") {
        let schema = path_id_kind(ep.path).map_or_else(|| json!({"type": "string", "minLength": 1}), id_schema);
        parameters.push(json!({"name": "id", "in": "path", "required": true, "schema": schema}));
    }
    if let Answer::List(name) = ep.answer {
        parameters.extend(list_parameters(schema_kind(name)));
        for filter in ep.filters {
            parameters.push(query_parameter(
                filter,
                filter_schema(filter, schemas.get(name)),
                "Filter (see docs/api.md, Lists)",
            ));
        }
    } else {
        for filter in ep.filters {
            parameters.push(query_parameter(
                filter,
                filter_schema(filter, None),
                "The period (see docs/api.md, Reports)",
            ));
        }
    }
    if ep.verb == Verb::Post && ep.is_v1() {
        parameters.push(json!({
            "name": idempotency::HEADER, "in": "header", "required": false,
            "description": "Retries with the same key, path and body replay the first answer",
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_CHARS_MAX, "pattern": idempotency::KEY_PATTERN}
        }));
    }
    let mut ok = match ep.answer {
        Answer::Object(name) => {
            json!({"description": "OK", "content": {"application/json": {"schema": schema_ref(name)}}})
        }
        Answer::List(name) => {
            json!({"description": "One page, newest first", "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["object", "data", "has_more"],
                "properties": {
                    "object": {"type": "string", "enum": ["list"]},
                    "data": {"type": "array", "items": schema_ref(name)},
                    "has_more": {"type": "boolean"}
                }
            }}}})
        }
        Answer::Text => {
            json!({"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        Answer::Csv => {
            json!({"description": "CSV with a header row (see docs/api.md, Reports)", "content": {"text/csv": {"schema": {"type": "string"}}}})
        }
    };
    if let Answer::Object(name) = ep.answer {
        let links = links(name);
        if !links.is_empty() {
            ok["links"] = Value::Object(links);
        }
    }
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    for (status, description) in error_responses(ep) {
        responses.insert(
            status.into(),
            json!({"description": description, "content": {"application/json": {"schema": schema_ref("Error")}}}),
        );
    }
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(ep)));
    op.insert("summary".into(), json!(ep.summary));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = ep.body {
        // An empty body is `{}`: it may be left out unless the schema requires a field.
        let required = schemas.get(body).and_then(|s| s["required"].as_array()).is_some_and(|r| !r.is_empty());
        op.insert(
            "requestBody".into(),
            json!({"required": required, "content": {"application/json": {"schema": schema_ref(body)}}}),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    if !ep.is_v1() {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// A request body's optional fields are `Option`s: `null` is the same as
/// leaving the field out, so each is declared `nullable` (a `$ref` is
/// inlined for that, OpenAPI 3.0 ignoring a `$ref`'s siblings). Nested
/// objects follow the same rule.
fn nullable_optionals(schema: &mut Value, all: &Map<String, Value>) {
    let required: Vec<String> =
        schema["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)).collect();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (name, property) in properties.iter_mut() {
        if let Some(target) = property["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            if let Some(inlined) = all.get(target) {
                *property = inlined.clone();
            }
        }
        nullable_optionals(property, all);
        if !required.contains(name) {
            property["nullable"] = json!(true);
        }
    }
}

/// Sets `schemas[pointer]` (a JSON pointer below `components.schemas`) to
/// `value`, merging objects key by key. A pointer that names nothing is
/// recorded under `_unconstrained`, which a test keeps empty.
fn set(schemas: &mut Value, pointer: &str, value: Value) {
    match schemas.pointer_mut(pointer) {
        Some(Value::Object(target)) => {
            if let Value::Object(fields) = value {
                target.extend(fields);
            }
        }
        _ => {
            if let Value::Object(m) = schemas {
                let missed = m.entry("_unconstrained").or_insert_with(|| json!([]));
                if let Value::Array(a) = missed {
                    a.push(json!(pointer));
                }
            }
        }
    }
}

/// Every limit the server checks, set on the request schemas from the very
/// constants and rules the checks use (`config`, `domain::*`), so that the
/// JSON file holds shapes and words, and no number or pattern of its own.
fn constrain(schemas: &mut Value) {
    let amount = json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": AMOUNT_MAX});
    let amount_or_zero = json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": AMOUNT_MAX});
    let currency = json!({"type": "string", "pattern": money::CURRENCY_PATTERN});
    let free_text = json!({"type": "string", "maxLength": TEXT_FIELD_CHARS_MAX});
    let email = json!({"type": "string", "maxLength": TEXT_FIELD_CHARS_MAX, "pattern": text::email_pattern()});
    let name = json!({"type": "string", "minLength": 1, "maxLength": TEXT_FIELD_CHARS_MAX, "pattern": text::not_blank_pattern()});
    // Keys of 1 to METADATA_KEY_CHARS_MAX characters (any; `[\s\S]`, not `.`,
    // which misses line ends), as `patternProperties`: OpenAPI 3.0 schemas
    // are JSON Schema draft 4, which has no `propertyNames`.
    set(
        schemas,
        "/Metadata",
        json!({
            "maxProperties": METADATA_KEYS_MAX,
            "patternProperties": {
                (format!("^[\\s\\S]{{1,{METADATA_KEY_CHARS_MAX}}}$")):
                    {"type": "string", "maxLength": METADATA_VALUE_CHARS_MAX}
            },
            "additionalProperties": false,
            "description": format!(
                "At most {METADATA_KEYS_MAX} keys of 1 to {METADATA_KEY_CHARS_MAX} characters, values of at most \
                 {METADATA_VALUE_CHARS_MAX}; on update a key set to \"\" is removed"
            )
        }),
    );
    set(schemas, "/CreateCustomer/properties/email", email.clone());
    set(schemas, "/CreateCustomer/properties/name", free_text.clone());
    // An update's "" clears the field.
    let email_or_empty = format!("^$|{}", text::email_pattern());
    set(
        schemas,
        "/UpdateCustomer/properties/email",
        json!({"maxLength": TEXT_FIELD_CHARS_MAX, "pattern": email_or_empty}),
    );
    set(schemas, "/UpdateCustomer/properties/name", free_text);
    for (schema, field, kind) in BODY_ID_FIELDS {
        set(schemas, &format!("/{schema}/properties/{field}"), id_schema(*kind));
    }
    set(
        schemas,
        "/UpdateProgram/properties/redemption_ttl_seconds",
        json!({"minimum": REDEMPTION_TTL_SECONDS_MIN, "maximum": REDEMPTION_TTL_SECONDS_MAX}),
    );
    let days = |max: i64| json!({"type": "integer", "minimum": 0, "maximum": max});
    set(schemas, "/UpdateProgram/properties/pending_days", days(PENDING_DAYS_MAX));
    set(schemas, "/UpdateProgram/properties/expiry_warning_days", days(EXPIRY_WARNING_DAYS_MAX));
    set(
        schemas,
        "/UpdateProgram/properties/expiry/properties/days",
        json!({"minimum": EXPIRY_DAYS_MIN, "maximum": EXPIRY_DAYS_MAX}),
    );
    set(
        schemas,
        "/UpdateProgram/properties/point_value/properties/points",
        json!({"minimum": 1, "maximum": RULE_POINTS_MAX}),
    );
    set(schemas, "/UpdateProgram/properties/point_value/properties/amount", amount.clone());
    set(schemas, "/UpdateProgram/properties/point_value/properties/currency", currency.clone());
    set(
        schemas,
        "/CreateAdjustment/properties/points",
        json!({"minimum": -ADJUSTMENT_POINTS_MAX, "maximum": ADJUSTMENT_POINTS_MAX, "not": {"enum": [0]}}),
    );
    set(
        schemas,
        "/CreateAdjustment/properties/reason",
        json!({"minLength": 1, "maxLength": ADJUSTMENT_REASON_CHARS_MAX, "pattern": text::not_blank_pattern()}),
    );
    for rule in ["CreateEarningRule", "UpdateEarningRule"] {
        set(
            schemas,
            &format!("/{rule}/properties/points"),
            json!({"type": "integer", "minimum": 1, "maximum": RULE_POINTS_MAX}),
        );
        set(schemas, &format!("/{rule}/properties/per_amount"), amount.clone());
        set(schemas, &format!("/{rule}/properties/min_amount"), amount_or_zero.clone());
    }
    set(schemas, "/CreateEarningRule/properties/currency", currency.clone());
    set(schemas, "/CreatePayment/properties/amount", amount.clone());
    set(schemas, "/CreatePayment/properties/currency", currency.clone());
    set(
        schemas,
        "/CreatePayment/properties/redemptions",
        json!({"maxItems": REDEMPTIONS_PER_PAYMENT_MAX, "uniqueItems": true, "items": id_schema(IdKind::Redemption)}),
    );
    set(schemas, "/CreateRefund/properties/amount", amount.clone());
    set(schemas, "/CreateReward/properties/id", json!({"pattern": client_id_pattern(), "minLength": "rwd_".len() + 1}));
    set(schemas, "/CreateReward/properties/name", name.clone());
    set(schemas, "/UpdateReward/properties/name", name);
    set(
        schemas,
        "/CreateReward/properties/points",
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": REWARD_POINTS_MAX}),
    );
    set(schemas, "/CreateReward/properties/discount/properties/amount", amount);
    set(schemas, "/CreateReward/properties/discount/properties/currency", currency);
    set(
        schemas,
        "/CreateApiKey/properties/name",
        json!({"minLength": 1, "maxLength": API_KEY_NAME_CHARS_MAX, "pattern": text::not_blank_pattern()}),
    );
    set(
        schemas,
        "/RollApiKey/properties/expire_in_seconds",
        json!({"minimum": 0, "maximum": API_KEY_ROLL_EXPIRE_SECONDS_MAX}),
    );
    set(
        schemas,
        "/RollWebhookSecret/properties/expire_in_seconds",
        json!({"minimum": 0, "maximum": WEBHOOK_ROLL_EXPIRE_SECONDS_MAX}),
    );
    let event_types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    set(schemas, "/Event/properties/type", json!({"enum": event_types.clone()}));
    let mut enabled: Vec<&str> = event_types;
    enabled.push("*");
    set(
        schemas,
        "/CreateWebhookEndpoint/properties/enabled_events",
        json!({"minItems": 1, "items": {"type": "string", "enum": enabled}}),
    );
    set(
        schemas,
        "/CreateWebhookEndpoint/properties/url",
        json!({"maxLength": WEBHOOK_URL_BYTES_MAX, "pattern": text::webhook_url_pattern()}),
    );
    set(schemas, "/ApiKey/properties/id", id_schema(IdKind::ApiKey));
    // The test hooks' bodies.
    set(
        schemas,
        "/AdvanceClock/properties/advance_seconds",
        json!({"minimum": 0, "maximum": testing::ADVANCE_SECONDS_MAX}),
    );
    for count in ["after", "times"] {
        set(schemas, &format!("/ArmFault/properties/{count}"), json!({"minimum": 0}));
    }
    let delay_ms = u64::try_from(FAULT_DELAY_MAX.as_millis()).unwrap_or(u64::MAX);
    set(schemas, "/ArmFault/properties/delay_ms", json!({"minimum": 0, "maximum": delay_ms}));
}

/// Which test hooks the server runs with: their routes are described only then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    pub clock: bool,
    pub faults: bool,
}

impl Hooks {
    /// Every hook on (the description of every route in the table).
    pub const ALL: Hooks = Hooks { clock: true, faults: true };

    pub fn of(ledger: &Ledger) -> Hooks {
        Hooks { clock: ledger.manual_clock.is_some(), faults: ledger.faults.is_some() }
    }

    pub fn describes(&self, ep: &Endpoint) -> bool {
        match ep.test_hook() {
            None => true,
            Some(TestHook::Clock) => self.clock,
            Some(TestHook::Faults) => self.faults,
        }
    }
}

/// The whole description of the routes a server with `hooks` answers.
pub fn spec(hooks: Hooks) -> Value {
    let mut schemas: Value = serde_json::from_str(COMPONENTS).unwrap_or_else(|e| json!({"_error": e.to_string()}));
    constrain(&mut schemas);
    let snapshot = schemas.as_object().cloned().unwrap_or_default();
    for body in ENDPOINTS.iter().filter_map(|ep| ep.body) {
        if let Some(schema) = schemas.get_mut(body) {
            nullable_optionals(schema, &snapshot);
        }
    }
    let empty = Map::new();
    let schema_map = schemas.as_object().unwrap_or(&empty);
    let mut paths = Map::new();
    for ep in ENDPOINTS.iter().filter(|ep| hooks.describes(ep)) {
        let item = paths.entry(ep.path.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(methods) = item {
            methods.insert(ep.verb.as_str().to_ascii_lowercase(), operation(ep, schema_map));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "loyalty-ledger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Payments tied to loyalty members: purchases earn points, redemptions discount checkout, refunds claw points back. Money in minor units, times in unix seconds. Every /v1 route needs 'Authorization: Bearer <secret key>'."
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "paths": paths
    })
}

fn rendered(hooks: Hooks) -> &'static [u8] {
    static SPECS: [OnceLock<Vec<u8>>; 4] = [const { OnceLock::new() }; 4];
    let slot = usize::from(hooks.clock) | usize::from(hooks.faults) << 1;
    SPECS[slot].get_or_init(|| serde_json::to_vec(&spec(hooks)).unwrap_or_default())
}

pub async fn serve(ledger: web::Data<Ledger>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(rendered(Hooks::of(&ledger)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap_or_default().to_string());
                    } else {
                        refs(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_described_and_every_schema_exists() {
        let spec = spec(Hooks::ALL);
        let schemas = spec["components"]["schemas"].as_object().expect("openapi_components.json is a JSON object");
        assert!(!schemas.contains_key("_error"), "openapi_components.json does not parse: {:?}", schemas.get("_error"));
        for ep in ENDPOINTS {
            let op = &spec["paths"][ep.path][ep.verb.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} is not described", ep.verb.as_str(), ep.path);
        }
        let described: usize = spec["paths"].as_object().unwrap().values().map(|m| m.as_object().unwrap().len()).sum();
        assert_eq!(described, ENDPOINTS.len(), "the spec describes exactly the routes");
        let mut all = Vec::new();
        refs(&spec, &mut all);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").expect("local schema refs only");
            assert!(schemas.contains_key(name), "schema {name} is referenced but not defined");
        }
        let ids: std::collections::HashSet<String> = ENDPOINTS.iter().map(operation_id).collect();
        assert_eq!(ids.len(), ENDPOINTS.len(), "operation ids are unique");
    }

    #[test]
    fn test_hook_routes_are_described_only_with_their_hook() {
        for ep in ENDPOINTS {
            assert_eq!(ep.path.starts_with("/v1/test/"), ep.test_hook().is_some(), "{}", ep.path);
        }
        let paths = |hooks: Hooks| -> Vec<String> {
            spec(hooks)["paths"].as_object().unwrap().keys().filter(|p| p.starts_with("/v1/test/")).cloned().collect()
        };
        assert!(paths(Hooks::default()).is_empty());
        assert_eq!(paths(Hooks { clock: true, faults: false }), vec!["/v1/test/clock"]);
        assert_eq!(paths(Hooks { clock: false, faults: true }), vec!["/v1/test/faults"]);
        assert_eq!(paths(Hooks::ALL).len(), 2);
    }

    fn operations(spec: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, methods) in spec["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_declares_its_error_answers() {
        let spec = spec(Hooks::ALL);
        for (path, method, op) in operations(&spec) {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.contains_key("default"), "{method} {path}: statuses are listed one by one");
            let mut expected: Vec<&str> = vec![];
            if path.starts_with("/v1/") {
                expected.extend(["400", "401", "403", "404", "503"]);
                if method != "get" {
                    expected.push("409");
                }
                if op.get("requestBody").is_some() {
                    expected.push("413");
                }
            }
            for status in expected {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
        assert_eq!(
            spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }

    #[test]
    fn every_link_names_an_operation_and_what_it_takes() {
        for hooks in [Hooks::default(), Hooks::ALL] {
            let spec = spec(hooks);
            let ops = operations(&spec);
            let by_id = |id: &str| ops.iter().find(|(_, _, op)| op["operationId"] == id).map(|(_, _, op)| op.clone());
            let mut count = 0;
            for (path, method, op) in &ops {
                for (name, link) in op["responses"]["200"]["links"].as_object().into_iter().flatten() {
                    count += 1;
                    let target = by_id(link["operationId"].as_str().unwrap())
                        .unwrap_or_else(|| panic!("{method} {path} link {name}: no such operation"));
                    for (param, expr) in link["parameters"].as_object().into_iter().flatten() {
                        let (location, pname) = param.split_once('.').unwrap();
                        assert!(
                            target["parameters"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["in"] == location && p["name"] == pname),
                            "{method} {path} link {name}: the target has no {param}"
                        );
                        assert_eq!(expr, "$response.body#/id");
                    }
                    for (field, _) in link["requestBody"].as_object().into_iter().flatten() {
                        let body =
                            target["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
                        let body = body.rsplit('/').next().unwrap();
                        assert!(
                            spec["components"]["schemas"][body]["properties"].get(field).is_some(),
                            "{method} {path} link {name}: {body} has no {field}"
                        );
                    }
                    assert!(link.get("parameters").is_some() || link.get("requestBody").is_some(), "{name}");
                }
            }
            assert!(count > 40, "{count} links");
        }
        // What the stateful phase starts from: a create links to its object.
        let spec = spec(Hooks::default());
        let links = &spec["paths"]["/v1/customers"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["get_v1_customers_id_by_id"]["parameters"]["path.id"], "$response.body#/id");
        assert_eq!(
            links["post_v1_loyalty_accounts_AccountParams_customer"]["requestBody"]["customer"],
            "$response.body#/id"
        );
        for create in [
            "/v1/payments",
            "/v1/loyalty/accounts",
            "/v1/loyalty/rewards",
            "/v1/loyalty/redemptions",
            "/v1/refunds",
            "/v1/webhook_endpoints",
            "/v1/api_keys",
            "/v1/loyalty/earning_rules",
        ] {
            assert!(
                spec["paths"][create]["post"]["responses"]["200"]["links"].as_object().is_some_and(|l| !l.is_empty()),
                "{create}"
            );
        }
    }

    #[test]
    fn every_id_in_a_path_has_its_kind_and_shape() {
        let spec = spec(Hooks::ALL);
        for ep in ENDPOINTS.iter().filter(|ep| ep.path.contains("{id}")) {
            let kind = path_id_kind(ep.path).unwrap_or_else(|| panic!("{}: no kind for its id", ep.path));
            let op = &spec["paths"][ep.path][ep.verb.as_str().to_ascii_lowercase()];
            let id = op["parameters"].as_array().unwrap().iter().find(|p| p["in"] == "path").unwrap();
            assert_eq!(id["schema"], id_schema(kind), "{}", ep.path);
        }
        assert_eq!(path_id_kind("/v1/payments/{id}/complete"), Some(IdKind::Payment));
        assert_eq!(path_id_kind("/v1/loyalty/accounts/{id}"), Some(IdKind::Account));
        // Every route filter is typed by a rule, never a bare string.
        for ep in ENDPOINTS {
            for f in ep.filters {
                let op = &spec["paths"][ep.path]["get"];
                let p = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == *f).unwrap();
                let schema = p["schema"].as_object().unwrap();
                assert!(schema.len() > 1 || schema["type"] == "boolean", "{} {f}: {schema:?}", ep.path);
            }
        }
    }

    /// The JSON file's constraints are all replaced from the server's own
    /// constants: a number or pattern in it that `constrain` does not set
    /// would be a second copy of a limit, free to drift.
    #[test]
    fn every_limit_in_the_json_comes_from_the_server() {
        const KEYWORDS: &[&str] =
            &["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "maxProperties", "pattern"];
        fn blank(v: &mut Value, at: &str, found: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m.iter_mut() {
                        if KEYWORDS.contains(&k.as_str()) {
                            *v = json!("FROM_JSON");
                            found.push(format!("{at}/{k}"));
                        } else {
                            blank(v, &format!("{at}/{k}"), found);
                        }
                    }
                }
                Value::Array(a) => a.iter_mut().enumerate().for_each(|(i, v)| blank(v, &format!("{at}/{i}"), found)),
                _ => {}
            }
        }
        let mut schemas: Value = serde_json::from_str(COMPONENTS).unwrap();
        let mut found = Vec::new();
        blank(&mut schemas, "", &mut found);
        constrain(&mut schemas);
        assert!(
            schemas.get("_unconstrained").is_none(),
            "constrain names schemas that do not exist: {}",
            schemas["_unconstrained"]
        );
        let left: Vec<&String> = found.iter().filter(|p| schemas.pointer(p) == Some(&json!("FROM_JSON"))).collect();
        assert!(left.is_empty(), "limits only the JSON file holds: {left:?}");
        // Spot checks against the constants.
        let spec = spec(Hooks::default());
        let s = &spec["components"]["schemas"];
        assert_eq!(s["CreatePayment"]["properties"]["amount"]["maximum"], AMOUNT_MAX);
        assert_eq!(s["Metadata"]["maxProperties"], METADATA_KEYS_MAX);
        assert_eq!(s["CreateCustomer"]["properties"]["email"]["pattern"], text::email_pattern());
        let list = &spec["paths"]["/v1/payments"]["get"]["parameters"];
        let limit = list.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!((&limit["schema"]["minimum"], &limit["schema"]["maximum"]), (&json!(1), &json!(LIST_LIMIT_MAX)));
        let key = spec["paths"]["/v1/payments"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["in"] == "header")
            .unwrap()
            .clone();
        assert_eq!(key["schema"]["maxLength"], IDEMPOTENCY_KEY_CHARS_MAX);
        assert_eq!(key["schema"]["pattern"], idempotency::KEY_PATTERN);
        let permissions: Vec<&str> = s["CreateApiKey"]["properties"]["permissions"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for p in &permissions {
            assert!(crate::domain::api_keys::Permissions::parse(p).is_some(), "{p}");
        }
    }
}
