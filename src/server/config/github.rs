//! GitHub settings from the environment (`GITHUB_WEBHOOK_SECRET`,
//! `GITHUB_MARKETPLACE_PLANS`); re-exported by [`crate::server::marketplace`].

use crate::server::config::ConfigError;
use crate::types::values::Plan;
use std::collections::BTreeMap;

/// GitHub settings from the environment (documented in `.env.example`).
#[derive(Clone, Default)]
pub struct GitHubSettings {
    /// `GITHUB_WEBHOOK_SECRET`: the GitHub App's webhook secret;
    /// several comma-separated are all accepted (for rotation). Empty:
    /// `POST /webhooks/github` rejects every delivery (401).
    pub webhook_secrets: Vec<secrecy::SecretString>,
    /// `GITHUB_MARKETPLACE_PLANS`: Marketplace listing plan id (the
    /// `marketplace_purchase.plan.id` of an event) → our catalog plan,
    /// written `7001=pro,7002=payg,7003=trial`. A purchase of a plan that is
    /// not listed fails (the delivery is stored as failed).
    pub marketplace_plans: BTreeMap<i64, Plan>,
}

impl std::fmt::Debug for GitHubSettings {
    // Hand-written: the webhook secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubSettings")
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("marketplace_plans", &self.marketplace_plans)
            .finish()
    }
}

impl GitHubSettings {
    /// The catalog plan of Marketplace plan `marketplace_plan_id`, if
    /// configured.
    pub fn plan_for(&self, marketplace_plan_id: i64) -> Option<Plan> {
        self.marketplace_plans.get(&marketplace_plan_id).copied()
    }

    /// Reads the settings through `lookup` (variable name → value).
    ///
    /// Errors: [`ConfigError::Invalid`] for a `GITHUB_MARKETPLACE_PLANS`
    /// entry that is not `<positive id>=<trial|payg|pro>` or names an id
    /// twice (the message never holds a secret).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let webhook_secrets = get("GITHUB_WEBHOOK_SECRET")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .map(secrecy::SecretString::from)
                    .collect()
            })
            .unwrap_or_default();
        let mut marketplace_plans = BTreeMap::new();
        for entry in get("GITHUB_MARKETPLACE_PLANS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let invalid = |reason: String| ConfigError::Invalid {
                name: "GITHUB_MARKETPLACE_PLANS",
                reason,
            };
            let (id, plan) = entry.split_once('=').ok_or_else(|| {
                invalid(format!(
                    "entry {entry:?} must be <marketplace plan id>=<plan>"
                ))
            })?;
            let id: i64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                invalid(format!(
                    "entry {entry:?}: the plan id must be a positive whole number"
                ))
            })?;
            let plan = Plan::parse(plan.trim()).map_err(|e| invalid(e.0))?;
            if marketplace_plans.insert(id, plan).is_some() {
                return Err(invalid(format!("plan id {id} is listed twice")));
            }
        }
        Ok(Self {
            webhook_secrets,
            marketplace_plans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<GitHubSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GitHubSettings::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_parsing() {
        let s = settings(&[]).unwrap();
        assert!(s.webhook_secrets.is_empty() && s.marketplace_plans.is_empty());
        let s = settings(&[
            ("GITHUB_WEBHOOK_SECRET", " new-secret, old-secret ,"),
            (
                "GITHUB_MARKETPLACE_PLANS",
                "7001=pro, 7002 = payg,7003=trial,",
            ),
        ])
        .unwrap();
        assert_eq!(
            super::super::expose_all(&s.webhook_secrets),
            vec!["new-secret", "old-secret"]
        );
        assert_eq!(s.plan_for(7001), Some(Plan::Pro));
        assert_eq!(s.plan_for(7002), Some(Plan::Payg));
        assert_eq!(s.plan_for(7003), Some(Plan::Trial));
        assert_eq!(s.plan_for(9), None);
        let debug = format!("{s:?}");
        assert!(!debug.contains("new-secret"), "{debug}");
    }

    #[test]
    fn bad_plan_maps_name_the_variable() {
        for bad in ["7001", "x=pro", "0=pro", "7001=gold", "1=pro,1=payg"] {
            let err = settings(&[("GITHUB_MARKETPLACE_PLANS", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("GITHUB_MARKETPLACE_PLANS"),
                "{err}"
            );
        }
    }
}
