//! Which namespaces exist, and the retention rules of each: resolved once
//! at startup (from the config file, see `config`), read on every request.

use std::collections::BTreeMap;

use super::{Namespace, RetentionPolicy};

/// Which namespaces exist and the retention rules of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// No namespace configured: every valid name exists, with these rules.
    Open(RetentionPolicy),
    /// Only these exist; any other name is 404.
    Listed(BTreeMap<Namespace, RetentionPolicy>),
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::Open(RetentionPolicy::default())
    }
}

impl Namespaces {
    pub fn policy(&self, namespace: &Namespace) -> Option<RetentionPolicy> {
        match self {
            Namespaces::Open(policy) => Some(*policy),
            Namespaces::Listed(listed) => listed.get(namespace).copied(),
        }
    }
}
