//! The `labelSelector` and `fieldSelector` query parameters of list requests, shared by every
//! resource the fake lists, so Secrets, Gateways and Pods accept the same syntax.

use std::collections::BTreeMap;

use crate::secret::{is_label_value, is_qualified_name};
use crate::status::ApiError;

/// A parsed `labelSelector` query parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses the selector syntax of the Kubernetes API: comma-joined `k=v`, `k==v`, `k!=v`, `k`,
    /// `!k`, `k in (a,b)` and `k notin (a,b)`. An empty selector matches everything.
    pub fn parse(selector: &str) -> Result<LabelSelector, ApiError> {
        let mut requirements = Vec::new();
        for term in split_terms(selector) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector term {term:?}"
                ))
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
        })
    }
}

/// Splits a selector at the commas that are outside parentheses, so `k in (a,b)` stays one term.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn parse_requirement(term: &str) -> Option<Requirement> {
    let valid_key = |k: &str| is_qualified_name(k);
    let valid_value = |v: &str| is_label_value(v);

    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key).then(|| Requirement::NotExists(key.to_owned()));
    }
    for (operator, build) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = term.split_once(operator) {
            let (key, value) = (key.trim(), value.trim());
            return (valid_key(key) && valid_value(value))
                .then(|| build(key.to_owned(), value.to_owned()));
        }
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = term.split_once(operator) {
            let key = key.trim();
            let list = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = list.split(',').map(|v| v.trim().to_owned()).collect();
            if !valid_key(key) || !values.iter().all(|v| valid_value(v)) {
                return None;
            }
            return Some(if negated {
                Requirement::NotIn(key.to_owned(), values)
            } else {
                Requirement::In(key.to_owned(), values)
            });
        }
    }
    valid_key(term).then(|| Requirement::Exists(term.to_owned()))
}

/// A parsed `fieldSelector` query parameter: comma-joined `field=value`, `field==value` and
/// `field!=value` terms, all of which must match.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSelector(Vec<FieldTerm>);

#[derive(Debug, Clone, PartialEq)]
struct FieldTerm {
    field: String,
    value: String,
    negated: bool,
}

impl FieldSelector {
    /// Parses a selector whose fields must all be in `supported`, because kube-apiserver accepts a
    /// different set of fields for each resource and rejects the others with 400.
    pub fn parse(selector: &str, supported: &[&str]) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector term {term:?}: expected field=value"
                )));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                value: value.trim().to_owned(),
                negated,
            });
        }
        Ok(FieldSelector(terms))
    }

    /// Checks every term against an object. `field_value` returns the object's value of a field
    /// path that [`FieldSelector::parse`] accepted.
    pub fn matches<'a>(&self, field_value: impl Fn(&str) -> &'a str) -> bool {
        self.0
            .iter()
            .all(|term| (field_value(&term.field) == term.value) != term.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_equality_and_existence() {
        let managed = labels(&[
            ("app.kubernetes.io/managed-by", "meshcert"),
            ("tier", "edge"),
        ]);
        let other = labels(&[("app.kubernetes.io/managed-by", "helm")]);
        let cases = [
            ("app.kubernetes.io/managed-by=meshcert", true, false),
            ("app.kubernetes.io/managed-by==meshcert", true, false),
            ("app.kubernetes.io/managed-by!=meshcert", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            (
                "app.kubernetes.io/managed-by=meshcert,tier=edge",
                true,
                false,
            ),
            (
                "app.kubernetes.io/managed-by in (meshcert, helm)",
                true,
                true,
            ),
            (
                "app.kubernetes.io/managed-by notin (helm),tier",
                true,
                false,
            ),
            ("", true, true),
        ];
        for (selector, matches_managed, matches_other) in cases {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(
                parsed.matches(&managed),
                matches_managed,
                "selector {selector:?} on managed"
            );
            assert_eq!(
                parsed.matches(&other),
                matches_other,
                "selector {selector:?} on other"
            );
        }
    }

    #[test]
    fn selector_rejects_malformed_terms() {
        for selector in ["a=b=c", "bad key=x", "k in a,b", "=v"] {
            assert!(
                LabelSelector::parse(selector).is_err(),
                "selector {selector:?} should be rejected"
            );
        }
    }

    #[test]
    fn field_selector_terms() {
        let selector = FieldSelector::parse(
            "metadata.name==east-tls, metadata.namespace!=default",
            &["metadata.name", "metadata.namespace"],
        )
        .unwrap();
        let value = |namespace: &'static str| {
            move |field: &str| match field {
                "metadata.name" => "east-tls",
                _ => namespace,
            }
        };
        assert!(selector.matches(value("istio-system")));
        assert!(!selector.matches(value("default")));
        assert!(FieldSelector::parse("", &[]).unwrap().matches(|_| ""));
    }

    #[test]
    fn field_selector_rejects_unsupported_field() {
        let error = FieldSelector::parse("type=Opaque", &["metadata.name"]).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(error.body["message"], "field label not supported: type");
        assert!(FieldSelector::parse("metadata.name", &["metadata.name"]).is_err());
    }
}
