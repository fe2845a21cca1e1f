//! List parameters shared by every `GET` list route: `limit`,
//! `starting_after` or `ending_before`, and `created[gte|gt|lte|lt]`.
//!
//! A page is newest first either way. `starting_after=X` is the page of
//! objects just older than X (the list walks backwards from X);
//! `ending_before=X` is the page of objects just newer than X (the list walks
//! forwards from X, takes up to `limit` objects, and emits them newest
//! first), and its `has_more` says whether there are newer ones still.

use crate::config::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use crate::domain::Id;
use crate::error::ApiError;

/// Bounds on `created` (unix seconds); each is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreatedRange {
    pub gte: Option<i64>,
    pub gt: Option<i64>,
    pub lte: Option<i64>,
    pub lt: Option<i64>,
}

impl CreatedRange {
    pub fn contains(&self, t: i64) -> bool {
        self.gte.is_none_or(|b| t >= b)
            && self.gt.is_none_or(|b| t > b)
            && self.lte.is_none_or(|b| t <= b)
            && self.lt.is_none_or(|b| t < b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub limit: usize,
    /// The page of objects older than this one.
    pub starting_after: Option<Id>,
    /// The page of objects newer than this one (never with `starting_after`).
    pub ending_before: Option<Id>,
    pub created: CreatedRange,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            limit: LIST_LIMIT_DEFAULT,
            starting_after: None,
            ending_before: None,
            created: CreatedRange::default(),
        }
    }
}

/// Where a page starts, and which way it walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor<'a> {
    /// The newest objects (no cursor).
    Newest,
    /// `starting_after`: backwards from (not including) this object.
    After(&'a str),
    /// `ending_before`: forwards from (not including) this object.
    Before(&'a str),
}

impl Cursor<'_> {
    /// The query parameter that named the cursor (for errors about it).
    pub fn param(&self) -> &'static str {
        match self {
            Cursor::Before(_) => "ending_before",
            _ => "starting_after",
        }
    }
}

impl ListParams {
    /// Takes the common parameters out of `query`; returns the rest (route filters).
    pub fn parse(query: Vec<(String, String)>) -> Result<(ListParams, Vec<(String, String)>), ApiError> {
        let mut params = ListParams::default();
        let mut rest = Vec::new();
        for (key, value) in query {
            match key.as_str() {
                "limit" => {
                    params.limit =
                        value.parse::<usize>().ok().filter(|n| (1..=LIST_LIMIT_MAX).contains(n)).ok_or_else(|| {
                            ApiError::parameter_invalid(
                                "limit",
                                format!("limit must be an integer from 1 to {LIST_LIMIT_MAX}."),
                            )
                        })?;
                }
                "starting_after" | "ending_before" => {
                    if value.is_empty() || value.len() > crate::config::ID_BYTES_MAX {
                        return Err(ApiError::parameter_invalid(&key, format!("{key} must be an object id.")));
                    }
                    let slot =
                        if key == "starting_after" { &mut params.starting_after } else { &mut params.ending_before };
                    *slot = Some(Id::from(value));
                }
                "created[gte]" | "created[gt]" | "created[lte]" | "created[lt]" | "created" => {
                    let t = value.parse::<i64>().map_err(|_| {
                        ApiError::parameter_invalid(&key, format!("{key} must be an integer (unix seconds)."))
                    })?;
                    let slot = match key.as_str() {
                        "created[gte]" => &mut params.created.gte,
                        "created[gt]" => &mut params.created.gt,
                        "created[lte]" => &mut params.created.lte,
                        "created[lt]" => &mut params.created.lt,
                        _ => {
                            // `created=<t>` means exactly that second.
                            params.created.gte = Some(t);
                            &mut params.created.lte
                        }
                    };
                    *slot = Some(t);
                }
                _ => rest.push((key, value)),
            }
        }
        if params.starting_after.is_some() && params.ending_before.is_some() {
            return Err(ApiError::parameter_invalid(
                "ending_before",
                "starting_after and ending_before cannot be used together: give one cursor.",
            ));
        }
        Ok((params, rest))
    }

    /// The page's cursor.
    pub fn cursor(&self) -> Cursor<'_> {
        match (&self.starting_after, &self.ending_before) {
            (Some(after), _) => Cursor::After(after),
            (None, Some(before)) => Cursor::Before(before),
            (None, None) => Cursor::Newest,
        }
    }
}

/// One page of a list being filled: an offered object goes in when its
/// `created` is within the bounds and the route's `keep` takes it, until the
/// page holds `limit` objects. Every list walks its objects in its own way (a
/// table's order, an account's index) and offers them here, newest first
/// (backwards) or, for `ending_before`, oldest first (forwards: the walker
/// then emits what it took in reverse).
pub struct PageFill<'a, K, E> {
    params: &'a ListParams,
    keep: K,
    emit: E,
    emitted: usize,
}

impl<'a, K, E> PageFill<'a, K, E> {
    pub fn new(params: &'a ListParams, keep: K, emit: E) -> Self {
        PageFill { params, keep, emit, emitted: 0 }
    }

    /// Offers the next object, created at `created`. `true` when it passed the
    /// filters but the page is already full: the list has more.
    pub fn offer<T: ?Sized>(&mut self, item: &T, created: i64) -> bool
    where
        K: Fn(&T) -> bool,
        E: FnMut(&T),
    {
        if !self.params.created.contains(created) || !(self.keep)(item) {
            return false;
        }
        if self.emitted == self.params.limit {
            return true;
        }
        (self.emit)(item);
        self.emitted += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_common_and_leaves_the_rest() {
        let (p, rest) =
            ListParams::parse(q(&[("limit", "3"), ("created[gte]", "10"), ("customer", "cust_1")])).unwrap();
        assert_eq!(p.limit, 3);
        assert!(p.created.contains(10) && !p.created.contains(9));
        assert_eq!(rest, q(&[("customer", "cust_1")]));
    }

    #[test]
    fn rejects_bad_limits() {
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(ListParams::parse(q(&[("limit", bad)])).unwrap_err().param.as_deref(), Some("limit"));
        }
        assert!(ListParams::parse(q(&[("created[lt]", "soon")])).is_err());
    }

    #[test]
    fn one_cursor_at_most() {
        let (p, _) = ListParams::parse(q(&[("ending_before", "cust_1")])).unwrap();
        assert_eq!(p.cursor(), Cursor::Before("cust_1"));
        let (p, _) = ListParams::parse(q(&[("starting_after", "cust_2")])).unwrap();
        assert_eq!(p.cursor(), Cursor::After("cust_2"));
        assert_eq!(ListParams::default().cursor(), Cursor::Newest);
        let both = ListParams::parse(q(&[("starting_after", "cust_1"), ("ending_before", "cust_2")])).unwrap_err();
        assert_eq!((both.status, both.param.as_deref()), (400, Some("ending_before")));
        for bad in ["", &"x".repeat(crate::config::ID_BYTES_MAX + 1)] {
            let err = ListParams::parse(q(&[("ending_before", bad)])).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("ending_before"));
        }
    }

    #[test]
    fn a_page_takes_what_passes_its_filters_up_to_the_limit() {
        let params = ListParams {
            limit: 2,
            created: CreatedRange { gte: Some(10), ..Default::default() },
            ..Default::default()
        };
        let mut taken = Vec::new();
        let mut page = PageFill::new(&params, |n: &i64| n % 2 == 0, |n: &i64| taken.push(*n));
        assert!(!page.offer(&1, 20), "odd: not kept");
        assert!(!page.offer(&2, 9), "created before the bound");
        assert!(!page.offer(&4, 20));
        assert!(!page.offer(&3, 20), "not kept, so not counted as more");
        assert!(!page.offer(&6, 10));
        assert!(!page.offer(&7, 20), "a full page still skips what it would not keep");
        assert!(page.offer(&8, 20), "full: there is more");
        assert_eq!(taken, vec![4, 6]);
    }
}
