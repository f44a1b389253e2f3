//! The `[audit]` table of the configuration: retention and alert rules
//! (docs/operations.md, "Audit trail").

use serde::Deserialize;

use super::{AuditAction, AuditOutcome};

/// Default retention of audit records: 90 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Longest accepted `retention_days`: 10 years.
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// Default most records kept; the cleanup pass deletes the oldest beyond it.
pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;
/// Allowed range of `max_records`.
pub const MAX_RECORDS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=100_000_000;
/// Most alert rules.
pub const MAX_ALERT_RULES: usize = 32;
/// Longest alert window: 7 days.
pub const MAX_ALERT_WINDOW_SECS: u64 = 7 * 86_400;

/// What an alert rule counts per.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertPer {
    /// Per actor (a user id, an attempted name's hash, the operator, the server).
    Actor,
    /// Per client address (records without one are not counted).
    Ip,
}

/// One alert rule: `threshold` records of `action` (with `outcome`, when
/// given) from one actor or address within one window of `window_secs`
/// raise an alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The action counted.
    pub action: AuditAction,
    /// Only records with this outcome (all when absent).
    #[serde(default)]
    pub outcome: Option<AuditOutcome>,
    /// Counted per actor or per client address.
    pub per: AlertPer,
    /// Window length (fixed windows starting at the first record counted).
    pub window_secs: u64,
    /// Records in one window that raise the alert.
    pub threshold: u32,
}

/// The default alert rules: 30 rooms created by one user within an hour; 20
/// failed logins from one address within 10 minutes; 10 refused room joins
/// (wrong room password) by one user within 10 minutes; any refresh-token
/// reuse.
pub fn default_alerts() -> Vec<AlertRule> {
    vec![
        AlertRule {
            action: AuditAction::RoomCreated,
            outcome: None,
            per: AlertPer::Actor,
            window_secs: 3600,
            threshold: 30,
        },
        AlertRule {
            action: AuditAction::Login,
            outcome: Some(AuditOutcome::Failure),
            per: AlertPer::Ip,
            window_secs: 600,
            threshold: 20,
        },
        AlertRule {
            action: AuditAction::RoomJoined,
            outcome: Some(AuditOutcome::Failure),
            per: AlertPer::Actor,
            window_secs: 600,
            threshold: 10,
        },
        AlertRule {
            action: AuditAction::RefreshReuse,
            outcome: None,
            per: AlertPer::Actor,
            window_secs: 86_400,
            threshold: 1,
        },
    ]
}

/// Settings of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are deleted by the cleanup pass
    /// (1..=[`MAX_RETENTION_DAYS`], default [`DEFAULT_RETENTION_DAYS`]).
    pub retention_days: u32,
    /// Most records kept ([`MAX_RECORDS_RANGE`], default [`DEFAULT_MAX_RECORDS`]).
    pub max_records: u64,
    /// Alert rules (at most [`MAX_ALERT_RULES`]; default [`default_alerts`];
    /// `alerts = []` turns alerting off).
    pub alerts: Vec<AlertRule>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: DEFAULT_RETENTION_DAYS,
            max_records: DEFAULT_MAX_RECORDS,
            alerts: default_alerts(),
        }
    }
}

impl AuditConfig {
    /// Retention in seconds.
    pub fn retention_secs(&self) -> i64 {
        i64::from(self.retention_days) * 86_400
    }

    /// Checks bounds; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(format!(
                "audit.retention_days must be 1..={MAX_RETENTION_DAYS}"
            ));
        }
        if !MAX_RECORDS_RANGE.contains(&self.max_records) {
            return Err(format!(
                "audit.max_records must be {}..={}",
                MAX_RECORDS_RANGE.start(),
                MAX_RECORDS_RANGE.end()
            ));
        }
        if self.alerts.len() > MAX_ALERT_RULES {
            return Err(format!(
                "audit.alerts holds at most {MAX_ALERT_RULES} rules"
            ));
        }
        for rule in &self.alerts {
            if rule.threshold == 0 {
                return Err("audit.alerts threshold must be positive".into());
            }
            if !(1..=MAX_ALERT_WINDOW_SECS).contains(&rule.window_secs) {
                return Err(format!(
                    "audit.alerts window_secs must be 1..={MAX_ALERT_WINDOW_SECS}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bounds_are_enforced() {
        AuditConfig::default().validate().unwrap();
        let parsed: AuditConfig = toml::from_str(
            "retention_days = 30\nmax_records = 5000\n[[alerts]]\naction = \"login\"\noutcome = \"failure\"\nper = \"ip\"\nwindow_secs = 60\nthreshold = 3\n",
        )
        .unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.alerts.len(), 1);
        assert_eq!(parsed.alerts[0].per, AlertPer::Ip);
        for bad in [
            "retention_days = 0",
            "retention_days = 3651",
            "max_records = 999",
            "max_records = 100000001",
            "[[alerts]]\naction = \"login\"\nper = \"ip\"\nwindow_secs = 60\nthreshold = 0",
            "[[alerts]]\naction = \"login\"\nper = \"ip\"\nwindow_secs = 0\nthreshold = 1",
            "[[alerts]]\naction = \"login\"\nper = \"ip\"\nwindow_secs = 604801\nthreshold = 1",
        ] {
            let c: AuditConfig = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        let many =
            "[[alerts]]\naction = \"login\"\nper = \"ip\"\nwindow_secs = 60\nthreshold = 1\n"
                .repeat(MAX_ALERT_RULES + 1);
        let c: AuditConfig = toml::from_str(&many).unwrap();
        assert!(c.validate().is_err());
        assert!(
            toml::from_str::<AuditConfig>(
                "[[alerts]]\naction = \"nope\"\nper = \"ip\"\nwindow_secs = 1\nthreshold = 1"
            )
            .is_err()
        );
    }
}
