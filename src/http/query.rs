//! Query strings of list routes: the common list parameters plus the route's
//! own filters; anything else is a 400 `parameter_unknown`.

use actix_web::HttpRequest;

use crate::domain::IdKind;
use crate::error::ApiError;
use crate::state::ListParams;

/// Query filters that name an object, with the kind of id each takes: the
/// shape `id_filter` checks and `/v1/openapi.json` declares for them.
pub const ID_FILTERS: &[(&str, IdKind)] = &[
    ("customer", IdKind::Customer),
    ("account", IdKind::Account),
    ("payment", IdKind::Payment),
    ("endpoint", IdKind::WebhookEndpoint),
    ("event", IdKind::Event),
];

/// The kind of id filter `name` takes, if it names an object.
pub fn id_filter_kind(name: &str) -> Option<IdKind> {
    ID_FILTERS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// A parsed list query: the common parameters and the route filters given.
pub struct ListQuery {
    pub params: ListParams,
    filters: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses `req`'s query string, accepting only `allowed` filters.
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<ListQuery, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| ApiError::bad_request("parameter_invalid", format!("Invalid query string: {e}")))?;
        let (params, filters) = ListParams::parse(pairs)?;
        for (k, _) in &filters {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::parameter_unknown(k));
            }
        }
        Ok(ListQuery { params, filters })
    }

    /// The value of filter `name`, if given.
    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A `true`/`false` filter.
    pub fn bool_filter(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.filter(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::parameter_invalid(name, format!("{name} must be true or false."))),
        }
    }

    /// The value of an id filter (one of `ID_FILTERS`), checked for shape:
    /// its kind's prefix and tail (`IdKind::accepts`).
    pub fn id_filter(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let kind = id_filter_kind(name);
        match self.filter(name) {
            Some(v) if !kind.is_some_and(|k| k.accepts(v)) => Err(ApiError::parameter_invalid(
                name,
                format!("{name} must be an object id ({}...).", kind.map_or("", IdKind::prefix)),
            )),
            other => Ok(other),
        }
    }
}
