//! Kubernetes name rules for namespaces, Secret names and cluster ids.

/// Maximum length of a DNS-1123 label (RFC 1123), the rule for namespaces and cluster ids.
pub const MAX_LABEL_LEN: usize = 63;

/// Maximum length of a DNS-1123 subdomain, the rule for Secret names.
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// Checks a DNS-1123 label: at most 63 characters of lowercase letters, digits and `-`, starting
/// and ending with a letter or digit. Returns the broken rule as a phrase.
pub fn check_dns1123_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!("must be at most {MAX_LABEL_LEN} characters, not {}", value.len()));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub fn check_dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_SUBDOMAIN_LEN {
        return Err(format!("must be at most {MAX_SUBDOMAIN_LEN} characters, not {}", value.len()));
    }
    for label in value.split('.') {
        if label.is_empty() {
            return Err("must not contain empty parts between dots".into());
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only lowercase letters, digits, '-' and '.'".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("must start and end each part between dots with a lowercase letter or digit".into());
        }
    }
    Ok(())
}

/// Formats a rejected name for an error message. A value made of name characters is quoted
/// whole. Any other value may be a secret pasted into the wrong field, so it is described by its
/// length and first foreign character instead.
pub fn describe_for_message(value: &str) -> String {
    let name_like = value.len() <= MAX_SUBDOMAIN_LEN && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if name_like {
        return format!("{value:?}");
    }
    match value.chars().enumerate().find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')) {
        Some((index, character)) => format!("(a value of {} characters, with {character:?} at position {})", value.chars().count(), index + 1),
        None => format!("(a value of {} characters)", value.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_quotes_only_name_like_values() {
        assert_eq!(describe_for_message("shop-tls"), "\"shop-tls\"");
        assert_eq!(describe_for_message("MIGHAgEAMBMG"), "(a value of 12 characters, with 'M' at position 1)");
        assert!(!describe_for_message(&"a".repeat(300)).contains("aaa"));
    }

    #[test]
    fn label_accepts_kubernetes_names() {
        assert!(check_dns1123_label("istio-system").is_ok());
        assert!(check_dns1123_label("a").is_ok());
        assert!(check_dns1123_label("0east").is_ok());
    }

    #[test]
    fn label_rejects_bad_names() {
        assert!(check_dns1123_label("").is_err());
        assert!(check_dns1123_label("Istio").is_err());
        assert!(check_dns1123_label("-east").is_err());
        assert!(check_dns1123_label("east-").is_err());
        assert!(check_dns1123_label("a.b").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
    }

    #[test]
    fn subdomain_accepts_dotted_names() {
        assert!(check_dns1123_subdomain("shop.example.com-tls").is_ok());
        assert!(check_dns1123_subdomain(&"a".repeat(253)).is_ok());
        assert!(check_dns1123_subdomain(&"a".repeat(254)).is_err());
        assert!(check_dns1123_subdomain("a..b").is_err());
        assert!(check_dns1123_subdomain("a_b").is_err());
    }
}
