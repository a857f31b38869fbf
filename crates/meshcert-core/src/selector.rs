//! Kubernetes equality-based label selectors (`env=prod,region!=eu,canary,!legacy`) that choose
//! the clusters a certificate goes to, and the label syntax they match against.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    /// `key=value` or `key==value`
    Equals(String, String),
    /// `key!=value`: the label is absent or has another value.
    NotEquals(String, String),
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches every cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses a comma-separated equality-based selector.
    ///
    /// # Errors
    ///
    /// A message naming the requirement that is not valid and the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().into())
            } else {
                Requirement::Exists(part.into())
            };

            let (key, value) = match &requirement {
                Requirement::Equals(key, value) | Requirement::NotEquals(key, value) => (key, Some(value)),
                Requirement::Exists(key) | Requirement::DoesNotExist(key) => (key, None),
            };
            check_label_key(key).map_err(|rule| format!("requirement {part:?}: label key {key:?} {rule}; use key=value, key!=value, key or !key"))?;
            if let Some(value) = value {
                check_label_value(value).map_err(|rule| format!("requirement {part:?}: label value {value:?} {rule}"))?;
            }
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Returns whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

/// Checks a Kubernetes label key: an optional DNS subdomain prefix and `/`, then a name of at most
/// 63 characters of letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            crate::names::check_dns1123_subdomain(prefix).map_err(|rule| format!("has a prefix that {rule}"))?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    check_label_value(name)
}

/// Checks a Kubernetes label value: at most 63 characters of letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit. An empty value is allowed.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("must be at most 63 characters, not {}", value.len()));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    let alphanumeric = |b: Option<u8>| b.is_none_or(|b| b.is_ascii_alphanumeric());
    if !alphanumeric(value.bytes().next()) || !alphanumeric(value.bytes().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn selector_matches_each_form() {
        let prod = labels(&[("env", "prod"), ("region", "us")]);
        let staging = labels(&[("env", "staging")]);

        assert!(LabelSelector::parse("").unwrap().matches(&staging));
        assert!(LabelSelector::parse("env=prod").unwrap().matches(&prod));
        assert!(!LabelSelector::parse("env=prod").unwrap().matches(&staging));
        assert!(LabelSelector::parse("env==prod, region").unwrap().matches(&prod));
        assert!(!LabelSelector::parse("region").unwrap().matches(&staging));
        assert!(LabelSelector::parse("!region").unwrap().matches(&staging));
        assert!(LabelSelector::parse("region!=eu").unwrap().matches(&staging));
        assert!(!LabelSelector::parse("env!=prod").unwrap().matches(&prod));
    }

    #[test]
    fn selector_rejects_bad_syntax() {
        assert!(LabelSelector::parse("this is !! not a selector ===").is_err());
        assert!(LabelSelector::parse("env=pr od").is_err());
        assert!(LabelSelector::parse("=prod").is_err());
        assert!(LabelSelector::parse("example.com/env=prod").is_ok());
    }

    #[test]
    fn label_syntax_follows_kubernetes() {
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("Not A Label!").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("x y").is_err());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value(&"a".repeat(64)).is_err());
    }
}
