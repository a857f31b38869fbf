//! Application variables: resolution from providers in Spin's order, and component variables.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};

use crate::manifest::VariableDecl;
use crate::template::Template;

/// The prefix of the environment variables that set application variables, as in Spin:
/// `SPIN_VARIABLE_API_TOKEN` sets `api_token`.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// Resolved application variables.
#[derive(Clone, Debug, Default)]
pub struct AppVariables {
    values: HashMap<String, String>,
}

impl AppVariables {
    /// Resolves every declared variable. The first source with a value wins: `overrides`,
    /// then `SPIN_VARIABLE_<NAME>` read through `env`, then the manifest default. A required
    /// variable without a value is an error.
    pub fn resolve(
        decls: &BTreeMap<String, VariableDecl>,
        overrides: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        for name in overrides.keys() {
            if !decls.contains_key(name) {
                bail!("a value was given for variable {name:?}, but [variables] does not declare it: add it to the manifest or fix the name");
            }
        }
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in decls {
            let env_name = env_name(name);
            let value = overrides
                .get(name)
                .cloned()
                .or_else(|| env(&env_name))
                .or_else(|| decl.default.clone());
            match value {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(format!("{name} (set {env_name})")),
            }
        }
        if !missing.is_empty() {
            bail!("required variables have no value: {}", missing.join(", "));
        }
        Ok(Self { values })
    }

    /// Returns the value of `name`, if declared.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// Returns the environment variable that sets the application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Resolves the `[component.<id>.variables]` templates of one component.
pub fn resolve_component_variables(
    component_id: &str,
    templates: &BTreeMap<String, String>,
    app: &AppVariables,
) -> Result<HashMap<String, String>> {
    let mut resolved = HashMap::new();
    for (name, text) in templates {
        let template = Template::parse(text).map_err(|err| {
            anyhow::format_err!("invalid value of [component.{component_id}.variables] {name}: {err}")
        })?;
        let value = template.render(|v| app.get(v)).map_err(|unknown| {
            anyhow::format_err!(
                "[component.{component_id}.variables] {name} refers to {{{{ {unknown} }}}}, but [variables] does not declare {unknown:?}: add it to [variables]"
            )
        })?;
        resolved.insert(name.clone(), value);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        let mut decls = BTreeMap::new();
        decls.insert(
            "api_token".to_string(),
            VariableDecl { default: None, required: true, secret: true },
        );
        decls.insert(
            "days".to_string(),
            VariableDecl { default: Some("30".to_string()), required: false, secret: false },
        );
        decls
    }

    #[test]
    fn variables_env_beats_default() {
        let env = |name: &str| match name {
            "SPIN_VARIABLE_API_TOKEN" => Some("t".to_string()),
            "SPIN_VARIABLE_DAYS" => Some("7".to_string()),
            _ => None,
        };
        let vars = AppVariables::resolve(&decls(), &HashMap::new(), env).unwrap();
        assert_eq!(vars.get("api_token"), Some("t"));
        assert_eq!(vars.get("days"), Some("7"));
    }

    #[test]
    fn variables_override_beats_env() {
        let overrides = HashMap::from([("api_token".to_string(), "o".to_string())]);
        let env = |_: &str| Some("e".to_string());
        let vars = AppVariables::resolve(&decls(), &overrides, env).unwrap();
        assert_eq!(vars.get("api_token"), Some("o"));
    }

    #[test]
    fn variables_default_used_last() {
        let overrides = HashMap::from([("api_token".to_string(), "o".to_string())]);
        let vars = AppVariables::resolve(&decls(), &overrides, |_| None).unwrap();
        assert_eq!(vars.get("days"), Some("30"));
    }

    #[test]
    fn variables_required_missing_fails() {
        let err = AppVariables::resolve(&decls(), &HashMap::new(), |_| None).unwrap_err().to_string();
        assert!(err.contains("api_token"), "{err}");
        assert!(err.contains("SPIN_VARIABLE_API_TOKEN"), "{err}");
    }

    #[test]
    fn variables_unknown_override_fails() {
        let overrides = HashMap::from([("nope".to_string(), "x".to_string())]);
        assert!(AppVariables::resolve(&decls(), &overrides, |_| Some("x".to_string())).is_err());
    }

    #[test]
    fn component_variables_render_templates() {
        let overrides = HashMap::from([("api_token".to_string(), "tok".to_string())]);
        let app = AppVariables::resolve(&decls(), &overrides, |_| None).unwrap();
        let templates = BTreeMap::from([
            ("token".to_string(), "{{ api_token }}".to_string()),
            ("header".to_string(), "Bearer {{api_token}} for {{ days }}d".to_string()),
        ]);
        let resolved = resolve_component_variables("api", &templates, &app).unwrap();
        assert_eq!(resolved["token"], "tok");
        assert_eq!(resolved["header"], "Bearer tok for 30d");
    }

    #[test]
    fn component_variables_unknown_reference_fails() {
        let overrides = HashMap::from([("api_token".to_string(), "tok".to_string())]);
        let app = AppVariables::resolve(&decls(), &overrides, |_| None).unwrap();
        let templates = BTreeMap::from([("x".to_string(), "{{ missing }}".to_string())]);
        let err = resolve_component_variables("api", &templates, &app).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
