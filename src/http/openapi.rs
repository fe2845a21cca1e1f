//! `GET /v1/openapi.json`: an OpenAPI 3 description of every route.
//!
//! Paths, methods, path parameters, list parameters and filters come from
//! the route table (`routes::ENDPOINTS`) that the router itself is built
//! from, so they cannot drift; object and request schemas are written by hand
//! in `openapi_components.json`. The test hooks' routes (`/v1/test/*`) are
//! described only when the server runs with them on (`LEDGER_TEST_CLOCK`,
//! `LEDGER_FAULTS`); otherwise they answer 404 like any unknown route, and a
//! schema-driven client should not see them. A generator crate (utoipa) would need an
//! annotation on every handler and type and adds a heavy proc-macro build for
//! little more than this gives.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::routes::{Answer, Endpoint, TestHook, Verb, ENDPOINTS};
use crate::ledger::Ledger;

/// The hand-written schemas (`components.schemas`).
const COMPONENTS: &str = include_str!("openapi_components.json");

/// Query parameters every list route takes.
const LIST_PARAMETERS: &[(&str, &str, &str)] = &[
    ("limit", "integer", "Page size, 1 to 100 (default 10)"),
    ("starting_after", "string", "Cursor: the page of objects just older than this id (the last object of the previous page); not with ending_before"),
    ("ending_before", "string", "Cursor: the page of objects just newer than this id (the first object of the next page), still newest first; has_more says whether newer ones remain; not with starting_after"),
    ("created", "integer", "Created exactly at this unix second"),
    ("created[gte]", "integer", "Created at or after (unix seconds)"),
    ("created[gt]", "integer", "Created after (unix seconds)"),
    ("created[lte]", "integer", "Created at or before (unix seconds)"),
    ("created[lt]", "integer", "Created before (unix seconds)"),
];

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

fn query_parameter(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": kind}})
}

fn operation(ep: &Endpoint) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    for segment in ep.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            parameters.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
        }
    }
    if let Answer::List(_) = ep.answer {
        for (name, kind, description) in LIST_PARAMETERS {
            parameters.push(query_parameter(name, kind, description));
        }
    }
    for name in ep.filters {
        parameters.push(query_parameter(name, "string", "Filter (see docs/api.md, Lists)"));
    }
    if ep.verb == Verb::Post && ep.is_v1() {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Retries with the same key, path and body replay the first answer",
            "schema": {"type": "string", "maxLength": 255}
        }));
    }
    let ok = match ep.answer {
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
    };
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(ep)));
    op.insert("summary".into(), json!(ep.summary));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = ep.body {
        op.insert(
            "requestBody".into(),
            json!({"required": false, "content": {"application/json": {"schema": schema_ref(body)}}}),
        );
    }
    op.insert(
        "responses".into(),
        json!({
            "200": ok,
            "default": {"description": "An error", "content": {"application/json": {"schema": schema_ref("Error")}}}
        }),
    );
    if !ep.is_v1() {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
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

    fn describes(&self, ep: &Endpoint) -> bool {
        match ep.test_hook() {
            None => true,
            Some(TestHook::Clock) => self.clock,
            Some(TestHook::Faults) => self.faults,
        }
    }
}

/// The whole description of the routes a server with `hooks` answers.
pub fn spec(hooks: Hooks) -> Value {
    let mut paths = Map::new();
    for ep in ENDPOINTS.iter().filter(|ep| hooks.describes(ep)) {
        let item = paths.entry(ep.path.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(methods) = item {
            methods.insert(ep.verb.as_str().to_ascii_lowercase(), operation(ep));
        }
    }
    let schemas: Value = serde_json::from_str(COMPONENTS).unwrap_or_else(|e| json!({"_error": e.to_string()}));
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
}
