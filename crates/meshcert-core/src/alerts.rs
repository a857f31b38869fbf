//! Expiry alerts: which certificates are expired or about to expire, kept as one record per
//! certificate that changes only when an alert starts, changes or ends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::expiry::{self, ExpiryStatus};
use crate::validate::UploadSummary;

/// The kind of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A member is past its not_after.
    Expired,
    /// A member has fewer than `expiry_warning_days` days left.
    Expiring,
}

impl AlertKind {
    /// Returns the kind name used in the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Expired => "expired",
            AlertKind::Expiring => "expiring",
        }
    }
}

/// A certificate of a stored chain, or its mTLS CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMember {
    /// `leaf`, `intermediate` or `ca`.
    pub role: String,
    /// Subject distinguished name.
    pub subject: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// One alert of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Expired or expiring.
    pub kind: AlertKind,
    /// The member with the earliest not_after among those in this state.
    pub member: AlertMember,
    /// Every member in this state, earliest first.
    pub members: Vec<AlertMember>,
    /// When a scan or upload first saw it.
    pub first_seen: DateTime<Utc>,
    /// When it ended (renewed, deleted, or replaced by `expired`); `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// When `alert_webhook_url` accepted it; `None` until then, and again after its members change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    /// When a scan claimed its notification ([`claim_notifications`]); `None` when no scan is
    /// sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifying_since: Option<DateTime<Utc>>,
}

/// How long a claim on a notification holds. A scan sends a notification right after it claims it,
/// within three attempts of a few seconds, so a claim older than this belongs to a scan that
/// stopped, and the next scan claims the notification again.
pub const NOTIFY_CLAIM_SECONDS: i64 = 120;

/// The alerts of one certificate, at most one per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Namespace of the certificate.
    pub namespace: String,
    /// Name of the certificate.
    pub name: String,
    /// Alerts by kind.
    pub alerts: BTreeMap<AlertKind, Alert>,
}

/// Lists every member of a stored certificate with its role, leaf first.
pub fn members(summary: &UploadSummary) -> Vec<AlertMember> {
    let member = |role: &str, certificate: &crate::certificate::CertificateSummary| AlertMember {
        role: role.into(),
        subject: certificate.subject.clone(),
        not_after: certificate.not_after,
    };
    std::iter::once(member("leaf", &summary.leaf))
        .chain(summary.intermediates.iter().map(|certificate| member("intermediate", certificate)))
        .chain(summary.ca.iter().map(|certificate| member("ca", certificate)))
        .collect()
}

/// Evaluates the alert a certificate deserves at `now`, if any: `expired` when any member is expired,
/// otherwise `expiring` when any member is expiring. Returns the kind and its members, earliest
/// not_after first.
pub fn evaluate(summary: &UploadSummary, now: DateTime<Utc>, warning_days: u32) -> Option<(AlertKind, Vec<AlertMember>)> {
    evaluate_members(members(summary), now, warning_days)
}

/// Evaluates the alert of a certificate with `members` at `now`, as [`evaluate`] does.
pub fn evaluate_members(members: Vec<AlertMember>, now: DateTime<Utc>, warning_days: u32) -> Option<(AlertKind, Vec<AlertMember>)> {
    let mut expired = Vec::new();
    let mut expiring = Vec::new();
    for member in members {
        match expiry::classify(member.not_after, now, warning_days) {
            ExpiryStatus::Expired => expired.push(member),
            ExpiryStatus::Expiring => expiring.push(member),
            ExpiryStatus::Valid => {}
        }
    }

    let (kind, mut members) = if !expired.is_empty() {
        (AlertKind::Expired, expired)
    } else if !expiring.is_empty() {
        (AlertKind::Expiring, expiring)
    } else {
        return None;
    };
    members.sort_by_key(|member| member.not_after);
    Some((kind, members))
}

/// Applies an evaluation to the stored record and returns the new record only when it changed,
/// so that a scan writes nothing for certificates whose alerts stay the same.
///
/// A new kind opens an alert, and the other active kind is resolved at `now`, as when a
/// certificate moves from `expiring` to `expired`. No evaluation (a renewal) resolves every
/// active alert.
pub fn reconcile(
    existing: Option<&AlertRecord>,
    namespace: &str,
    name: &str,
    evaluation: Option<(AlertKind, Vec<AlertMember>)>,
    now: DateTime<Utc>,
) -> Option<AlertRecord> {
    let mut record = existing.cloned().unwrap_or_else(|| AlertRecord {
        namespace: namespace.into(),
        name: name.into(),
        alerts: BTreeMap::new(),
    });

    let active_kind = evaluation.as_ref().map(|(kind, _)| *kind);
    for (kind, alert) in record.alerts.iter_mut() {
        if Some(*kind) != active_kind && alert.resolved_at.is_none() {
            alert.resolved_at = Some(now);
        }
    }

    if let Some((kind, members)) = evaluation {
        let member = members[0].clone();
        match record.alerts.get_mut(&kind) {
            Some(alert) if alert.resolved_at.is_none() => {
                if alert.members != members {
                    // A changed alert is notified again, and a notification being sent of the
                    // old members no longer counts for it.
                    alert.notified_at = None;
                    alert.notifying_since = None;
                }
                alert.member = member;
                alert.members = members;
            }
            _ => {
                record.alerts.insert(kind, Alert { kind, member, members, first_seen: now, resolved_at: None, notified_at: None, notifying_since: None });
            }
        }
    }

    if existing == Some(&record) || (existing.is_none() && record.alerts.is_empty()) {
        return None;
    }
    Some(record)
}

/// Builds the JSON body posted to `alert_webhook_url` for an active alert. `text` is a one-line
/// summary, which chat webhooks (Slack, Mattermost, Teams connectors) show as the message.
pub fn notification(record: &AlertRecord, alert: &Alert, now: DateTime<Utc>) -> serde_json::Value {
    let certificate = format!("{}/{}", record.namespace, record.name);
    let days_left = expiry::days_left(alert.member.not_after, now);
    let when = match alert.kind {
        AlertKind::Expired => format!("expired on {}", alert.member.not_after.format("%Y-%m-%d %H:%M UTC")),
        AlertKind::Expiring => format!("expires in {days_left} days, on {}", alert.member.not_after.format("%Y-%m-%d %H:%M UTC")),
    };
    let text = format!("meshcert: certificate {certificate} {when} ({} {})", alert.member.role, alert.member.subject);
    serde_json::json!({
        "text": text,
        "certificate": certificate,
        "namespace": record.namespace,
        "name": record.name,
        "kind": alert.kind.as_str(),
        "role": alert.member.role,
        "subject": alert.member.subject,
        "not_after": alert.member.not_after,
        "days_left": days_left,
        "members": alert.members,
        "first_seen": alert.first_seen,
    })
}

/// Claims the notifications of `record` that are due at `now`: active alerts not notified yet and
/// not claimed by a scan within [`NOTIFY_CLAIM_SECONDS`]. Returns the claimed kinds, each marked
/// with `notifying_since = now`.
///
/// Scans on several replicas send each notification once when each writes its claims with
/// compare-and-swap before sending: of two scans at once, the second finds the claim.
pub fn claim_notifications(record: &mut AlertRecord, now: DateTime<Utc>) -> Vec<AlertKind> {
    let mut claimed = Vec::new();
    for alert in record.alerts.values_mut() {
        let claim_held = alert.notifying_since.is_some_and(|since| (now - since).num_seconds() < NOTIFY_CLAIM_SECONDS);
        if alert.resolved_at.is_none() && alert.notified_at.is_none() && !claim_held {
            alert.notifying_since = Some(now);
            claimed.push(alert.kind);
        }
    }
    claimed
}

/// Ends the claim on the notification of `kind` taken at `claimed_at`: marks the alert notified
/// when the endpoint accepted it, and releases the claim otherwise, so the next scan retries.
/// Returns whether `record` changed. A claim that is no longer there (the alert changed or ended
/// while it was sent) leaves the record as it is.
pub fn finish_notification(record: &mut AlertRecord, kind: AlertKind, claimed_at: DateTime<Utc>, delivered: bool) -> bool {
    let Some(alert) = record.alerts.get_mut(&kind).filter(|alert| alert.notifying_since == Some(claimed_at)) else {
        return false;
    };
    alert.notifying_since = None;
    if delivered {
        alert.notified_at = Some(claimed_at);
    }
    true
}

/// Resolves every active alert of a deleted certificate; `None` when there was nothing active.
pub fn resolve_all(existing: &AlertRecord, now: DateTime<Utc>) -> Option<AlertRecord> {
    reconcile(Some(existing), &existing.namespace, &existing.name, None, now)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::certificate::CertificateSummary;
    use crate::key::KeySummary;

    fn certificate(subject: &str, not_after: DateTime<Utc>) -> CertificateSummary {
        CertificateSummary {
            subject: subject.into(),
            issuer: "CN=ca".into(),
            sans: vec![],
            serial_hex: "1".into(),
            not_before: Utc.timestamp_opt(0, 0).unwrap(),
            not_after,
            sha256_fingerprint: String::new(),
            key_algorithm: "ECDSA".into(),
            key_size_bits: 256,
            ec_curve: None,
            is_ca: false,
        }
    }

    fn summary(leaf_days: i64, intermediate_days: Option<i64>, now: DateTime<Utc>) -> UploadSummary {
        UploadSummary {
            leaf: certificate("CN=leaf", now + Duration::days(leaf_days)),
            intermediates: intermediate_days.map(|days| certificate("CN=intermediate", now + Duration::days(days))).into_iter().collect(),
            ca: None,
            key: KeySummary { pem_label: "PRIVATE KEY".into(), algorithm: "ECDSA".into(), size_bits: 256, ec_curve: None },
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn evaluate_names_earliest_member() {
        let (kind, members) = evaluate(&summary(20, Some(10), now()), now(), 30).unwrap();

        assert_eq!(kind, AlertKind::Expiring);
        assert_eq!(members[0].subject, "CN=intermediate");
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn evaluate_prefers_expired() {
        let (kind, members) = evaluate(&summary(20, Some(-1), now()), now(), 30).unwrap();

        assert_eq!(kind, AlertKind::Expired);
        assert_eq!(members.len(), 1);
        assert!(evaluate(&summary(31, None, now()), now(), 30).is_none());
    }

    #[test]
    fn claimed_notification_is_not_claimed_again() {
        let evaluation = evaluate(&summary(1, None, now()), now(), 30);
        let mut record = reconcile(None, "ns", "web", evaluation, now()).unwrap();

        assert_eq!(claim_notifications(&mut record, now()), vec![AlertKind::Expiring]);
        let mut other_scan = record.clone();
        assert!(claim_notifications(&mut other_scan, now() + Duration::seconds(5)).is_empty());

        assert!(finish_notification(&mut record, AlertKind::Expiring, now(), true));
        assert_eq!(record.alerts[&AlertKind::Expiring].notified_at, Some(now()));
        assert!(claim_notifications(&mut record, now() + Duration::hours(6)).is_empty());
    }

    #[test]
    fn failed_or_abandoned_claim_is_retried() {
        let evaluation = evaluate(&summary(1, None, now()), now(), 30);
        let mut record = reconcile(None, "ns", "web", evaluation, now()).unwrap();
        claim_notifications(&mut record, now());

        let mut abandoned = record.clone();
        let later = now() + Duration::seconds(NOTIFY_CLAIM_SECONDS);
        assert_eq!(claim_notifications(&mut abandoned, later), vec![AlertKind::Expiring]);

        assert!(finish_notification(&mut record, AlertKind::Expiring, now(), false));
        assert_eq!(record.alerts[&AlertKind::Expiring].notified_at, None);
        assert_eq!(claim_notifications(&mut record, now() + Duration::seconds(1)), vec![AlertKind::Expiring]);
    }

    #[test]
    fn claim_of_changed_alert_does_not_mark_it() {
        let mut record = reconcile(None, "ns", "web", evaluate(&summary(20, None, now()), now(), 30), now()).unwrap();
        claim_notifications(&mut record, now());

        // An intermediate that expires sooner joins the alert while the notification is sent.
        let mut changed = reconcile(Some(&record), "ns", "web", evaluate(&summary(20, Some(10), now()), now(), 30), now()).unwrap();

        assert!(!finish_notification(&mut changed, AlertKind::Expiring, now(), true));
        assert_eq!(changed.alerts[&AlertKind::Expiring].notified_at, None);
        assert_eq!(claim_notifications(&mut changed, now()), vec![AlertKind::Expiring]);
    }

    #[test]
    fn reconcile_writes_only_changes() {
        let evaluation = evaluate(&summary(1, None, now()), now(), 30);

        let first = reconcile(None, "ns", "web", evaluation.clone(), now()).unwrap();
        let again = reconcile(Some(&first), "ns", "web", evaluation, now() + Duration::hours(6));

        assert!(again.is_none());
        assert!(reconcile(None, "ns", "web", None, now()).is_none());
    }

    #[test]
    fn reconcile_moves_expiring_to_expired() {
        let later = now() + Duration::days(2);
        let first = reconcile(None, "ns", "web", evaluate(&summary(1, None, now()), now(), 30), now()).unwrap();

        let second = reconcile(Some(&first), "ns", "web", evaluate(&summary(1, None, now()), later, 30), later).unwrap();

        assert_eq!(second.alerts[&AlertKind::Expiring].resolved_at, Some(later));
        assert_eq!(second.alerts[&AlertKind::Expired].resolved_at, None);
    }

    #[test]
    fn changed_members_are_notified_again() {
        let mut first = reconcile(None, "ns", "web", evaluate(&summary(20, None, now()), now(), 30), now()).unwrap();
        first.alerts.get_mut(&AlertKind::Expiring).unwrap().notified_at = Some(now());

        let unchanged = reconcile(Some(&first), "ns", "web", evaluate(&summary(20, None, now()), now(), 30), now());
        let second = reconcile(Some(&first), "ns", "web", evaluate(&summary(20, Some(10), now()), now(), 30), now()).unwrap();

        assert!(unchanged.is_none());
        assert_eq!(second.alerts[&AlertKind::Expiring].notified_at, None);
        let body = notification(&second, &second.alerts[&AlertKind::Expiring], now());
        assert_eq!(body["text"], "meshcert: certificate ns/web expires in 10 days, on 2027-01-25 08:00 UTC (intermediate CN=intermediate)");
        assert_eq!(body["members"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn reconcile_resolves_renewed() {
        let first = reconcile(None, "ns", "web", evaluate(&summary(1, None, now()), now(), 30), now()).unwrap();

        let renewed = reconcile(Some(&first), "ns", "web", None, now()).unwrap();

        assert_eq!(renewed.alerts[&AlertKind::Expiring].resolved_at, Some(now()));
    }
}
