//! The optional TOML file (namespaces, limits, bearer tokens) and how its
//! namespaces resolve. The flags and environment variables that point at it
//! are `dedupd`'s command line (src/cli.rs).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::domain::{CASSANDRA_MAX_TTL_SECS, Namespace, Namespaces, RetentionPolicy};
use crate::http::auth::AuthFile;

/// The optional TOML file.
///
/// ```toml
/// [auth]                  # bearer tokens; with none listed, no auth
/// protect_metrics = true
/// [[auth.tokens]]
/// name = "orders-consumer"
/// sha256 = "…"            # `dedupd hash-token` prints it
/// namespaces = ["orders"] # or ["*"]
///
/// [defaults]              # for namespaces not listed (when none are listed)
/// ttl_secs = 86400
/// max_ttl_secs = 2592000
/// lease_secs = 30
///
/// [namespaces.payments]   # once any namespace is listed, only those exist
/// ttl_secs = 604800
/// max_ttl_secs = 2592000
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub defaults: PolicyFile,
    #[serde(default)]
    pub namespaces: BTreeMap<String, PolicyFile>,
    #[serde(default)]
    pub auth: AuthFile,
}

/// The `--auth-config` file: an `[auth]` table and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfigFile {
    auth: AuthFile,
}

fn read_toml<T: serde::de::DeserializeOwned>(what: &str, path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {what} {}: {error}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("invalid {what} {}: {error}", path.display()))
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        read_toml("config file", path)
    }

    /// The config file, with its `[auth]` replaced by the one in
    /// `auth_path` when given.
    pub fn load_with_auth(path: Option<&Path>, auth_path: Option<&Path>) -> anyhow::Result<Self> {
        let mut file = Self::load(path)?;
        if let Some(auth_path) = auth_path {
            let auth: AuthConfigFile = read_toml("auth config file", auth_path)?;
            // Naming an auth file says "authenticate": one that lists no
            // token would silently serve everyone.
            anyhow::ensure!(
                !auth.auth.tokens.is_empty(),
                "auth config file {} lists no [[auth.tokens]]; list at least one, or leave \
                 --auth-config unset to serve without authentication",
                auth_path.display()
            );
            file.auth = auth.auth;
        }
        Ok(file)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub ttl_secs: Option<u64>,
    pub max_ttl_secs: Option<u64>,
    pub lease_secs: Option<u64>,
}

impl PolicyFile {
    fn resolve(self, base: RetentionPolicy, name: &str) -> anyhow::Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            default_ttl_secs: self.ttl_secs.unwrap_or(base.default_ttl_secs),
            max_ttl_secs: self.max_ttl_secs.unwrap_or(base.max_ttl_secs),
            default_lease_secs: self.lease_secs.unwrap_or(base.default_lease_secs),
        };
        anyhow::ensure!(
            policy.max_ttl_secs >= 1 && policy.max_ttl_secs <= CASSANDRA_MAX_TTL_SECS,
            "{name}: max_ttl_secs must be between 1 and {CASSANDRA_MAX_TTL_SECS} (Cassandra's 20-year cap)"
        );
        anyhow::ensure!(
            policy.default_ttl_secs >= 1 && policy.default_ttl_secs <= policy.max_ttl_secs,
            "{name}: ttl_secs must be between 1 and max_ttl_secs ({})",
            policy.max_ttl_secs
        );
        anyhow::ensure!(
            policy.default_lease_secs >= 1,
            "{name}: lease_secs must be at least 1"
        );
        Ok(policy)
    }
}

/// Building the domain's `Namespaces` from the file.
impl Namespaces {
    pub fn from_file(file: &FileConfig) -> anyhow::Result<Self> {
        let defaults = file
            .defaults
            .resolve(RetentionPolicy::default(), "[defaults]")?;
        if file.namespaces.is_empty() {
            return Ok(Namespaces::Open(defaults));
        }
        let mut listed = BTreeMap::new();
        for (name, policy) in &file.namespaces {
            let namespace = Namespace::parse(name)
                .map_err(|error| anyhow::anyhow!("[namespaces.{name}]: {error}"))?;
            listed.insert(
                namespace,
                policy.resolve(defaults, &format!("[namespaces.{name}]"))?,
            );
        }
        Ok(Namespaces::Listed(listed))
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_file(&FileConfig::load(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_every_namespace_with_a_day_of_retention() {
        let namespaces = Namespaces::load(None).unwrap();
        let policy = namespaces
            .policy(&Namespace::parse("anything").unwrap())
            .unwrap();
        assert_eq!(policy.default_ttl_secs, 86400);
        assert_eq!(policy.max_ttl_secs, CASSANDRA_MAX_TTL_SECS);
    }

    #[test]
    fn listed_namespaces_close_the_set() {
        let file: FileConfig = toml::from_str(
            "[defaults]\nttl_secs = 900\nmax_ttl_secs = 1000\n[namespaces.payments]\nttl_secs = 600\n",
        )
        .unwrap();
        let namespaces = Namespaces::from_file(&file).unwrap();
        let policy = namespaces
            .policy(&Namespace::parse("payments").unwrap())
            .unwrap();
        assert_eq!(policy.default_ttl_secs, 600);
        assert_eq!(policy.max_ttl_secs, 1000);
        assert_eq!(
            namespaces.policy(&Namespace::parse("orders").unwrap()),
            None
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for text in [
            "[namespaces.Bad]\n",
            "[defaults]\nttl_secs = 10\nmax_ttl_secs = 5\n",
            "[defaults]\nmax_ttl_secs = 999999999999\n",
            "[defaults]\nunknown = 1\n",
        ] {
            let parsed: Result<FileConfig, _> = toml::from_str(text);
            let result = parsed
                .map_err(anyhow::Error::from)
                .and_then(|file| Namespaces::from_file(&file));
            assert!(result.is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn an_auth_config_file_replaces_the_config_files_auth() {
        let dir = std::env::temp_dir().join(format!("dedupd-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("dedupd.toml");
        let auth = dir.join("auth.toml");
        std::fs::write(
            &config,
            "[namespaces.orders]\n[auth]\nprotect_metrics = false\n",
        )
        .unwrap();
        std::fs::write(
            &auth,
            format!(
                "[auth]\nprotect_metrics = true\n[[auth.tokens]]\nname = \"orders\"\nsha256 = \"{}\"\nnamespaces = [\"orders\"]\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let merged = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap();
        assert!(merged.auth.protect_metrics);
        assert_eq!(merged.auth.tokens.len(), 1);
        assert!(merged.namespaces.contains_key("orders"));
        let alone = FileConfig::load_with_auth(Some(&config), None).unwrap();
        assert!(alone.auth.tokens.is_empty());
        // An auth file without tokens would turn auth off without a word.
        std::fs::write(&auth, "[auth]\nprotect_metrics = true\n").unwrap();
        let error = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap_err();
        assert!(error.to_string().contains("lists no"), "{error}");
        // Only `[auth]` belongs in the auth file.
        std::fs::write(&auth, "[namespaces.orders]\n[auth]\n").unwrap();
        let error = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap_err();
        assert!(error.to_string().contains("auth config file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
