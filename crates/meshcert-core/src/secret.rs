//! A string that must never be printed: a private key in PEM or a bearer token.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Secret text, such as a PEM private key or a cluster token.
///
/// `Debug` and `Display` print `[redacted]`, so a secret that ends up in a log line or an error
/// through formatting shows nothing. Read the value with [`SecretString::expose`] only where it is
/// encrypted or sent to its destination.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret text. Callers must not log or return it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let secret = SecretString::new("-----BEGIN PRIVATE KEY-----");

        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "-----BEGIN PRIVATE KEY-----");
    }
}
