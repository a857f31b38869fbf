//! Spin's `{{ variable }}` templates, used in component variables and `allowed_outbound_hosts`,
//! and the identifier rules for variable names and component ids.

use anyhow::{bail, Result};

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A parsed template such as `"Bearer {{ api_token }}"`: literal text with `{{ name }}`
/// references to application variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `source`. Fails on an unclosed `{{` or an invalid variable name inside braces.
    pub fn parse(source: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after_open = &rest[start + 2..];
            let Some(end) = after_open.find("}}") else {
                bail!("template {source:?} has a '{{{{' without a closing '}}}}'; write it as \"{{{{ variable_name }}}}\"");
            };
            let name = after_open[..end].trim();
            if let Err(reason) = check_lower_snake_id(name) {
                bail!("template {source:?} refers to {name:?}, which is not a valid variable name: {reason}");
            }
            parts.push(Part::Variable(name.to_string()));
            rest = &after_open[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Returns whether the template contains no variable reference.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|part| matches!(part, Part::Literal(_)))
    }

    /// Returns the names of the variables the template refers to, in order of appearance.
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template, looking each variable up with `lookup`. Returns the first name
    /// that `lookup` does not know as the error.
    pub fn render<'a>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> std::result::Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => match lookup(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(name.clone()),
                },
            }
        }
        Ok(out)
    }
}

/// Checks a Spin variable name: lowercase words of ASCII letters and digits joined by single
/// underscores, each word starting with a letter (`api_token`, `tls2_key`).
pub fn check_lower_snake_id(name: &str) -> std::result::Result<(), String> {
    check_id(name, '_', true)
}

/// Checks a Spin component id: words of ASCII letters and digits joined by single hyphens,
/// each word starting with a letter and written in one case (`api`, `sync-webhook`).
pub fn check_kebab_id(id: &str) -> std::result::Result<(), String> {
    check_id(id, '-', false)
}

fn check_id(id: &str, delimiter: char, lowercase_only: bool) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".to_string());
    }
    for word in id.split(delimiter) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("words separated by {delimiter:?} must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!("each word must start with an ASCII letter, but {word:?} does not"));
        }
        let uppercase = first.is_ascii_uppercase();
        if lowercase_only && uppercase {
            return Err(format!("it must be lowercase, but {word:?} is not"));
        }
        for ch in chars {
            if ch.is_ascii_digit() {
                continue;
            }
            if !ch.is_ascii_alphanumeric() {
                return Err(format!(
                    "only ASCII letters, digits and {delimiter:?} are allowed, but it contains {ch:?}"
                ));
            }
            if ch.is_ascii_uppercase() != uppercase {
                return Err(format!("each word must be all lowercase or all uppercase, but {word:?} mixes them"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<&'static str> {
        match name {
            "api_token" => Some("secret"),
            "port" => Some("6443"),
            _ => None,
        }
    }

    #[test]
    fn template_renders_single_reference() {
        let template = Template::parse("{{ api_token }}").unwrap();
        assert!(!template.is_literal());
        assert_eq!(template.render(lookup).unwrap(), "secret");
    }

    #[test]
    fn template_keeps_surrounding_text() {
        let template = Template::parse("https://*:{{port}}/x{{ api_token }}!").unwrap();
        assert_eq!(template.render(lookup).unwrap(), "https://*:6443/xsecret!");
        assert_eq!(template.variable_names().collect::<Vec<_>>(), ["port", "api_token"]);
    }

    #[test]
    fn template_literal_has_no_variables() {
        let template = Template::parse("plain text").unwrap();
        assert!(template.is_literal());
        assert_eq!(template.render(lookup).unwrap(), "plain text");
    }

    #[test]
    fn template_reports_unknown_variable() {
        let template = Template::parse("{{ nope }}").unwrap();
        assert_eq!(template.render(lookup).unwrap_err(), "nope");
    }

    #[test]
    fn template_rejects_unclosed_braces() {
        let err = Template::parse("{{ api_token").unwrap_err().to_string();
        assert!(err.contains("without a closing"), "{err}");
    }

    #[test]
    fn template_rejects_invalid_name() {
        assert!(Template::parse("{{ Api-Token }}").is_err());
        assert!(Template::parse("{{ }}").is_err());
    }

    #[test]
    fn snake_id_rules() {
        assert!(check_lower_snake_id("api_token").is_ok());
        assert!(check_lower_snake_id("tls2_key").is_ok());
        assert!(check_lower_snake_id("Api").is_err());
        assert!(check_lower_snake_id("a__b").is_err());
        assert!(check_lower_snake_id("_a").is_err());
        assert!(check_lower_snake_id("a_").is_err());
        assert!(check_lower_snake_id("a_1").is_err());
        assert!(check_lower_snake_id("a-b").is_err());
    }

    #[test]
    fn kebab_id_rules() {
        assert!(check_kebab_id("sync-webhook").is_ok());
        assert!(check_kebab_id("expiry-cron2").is_ok());
        assert!(check_kebab_id("API").is_ok());
        assert!(check_kebab_id("sync_webhook").is_err());
        assert!(check_kebab_id("sync--webhook").is_err());
        assert!(check_kebab_id("Sync").is_err());
        assert!(check_kebab_id("").is_err());
    }
}
