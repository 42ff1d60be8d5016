//! API keys: their grants, how they are stored (SHA-256 of the key, never the key) and how a
//! new one is made.
//!
//! A key is `egk_` followed by 64 hex digits: 256 bits from the operating system's random
//! source (`getrandom`). With that much entropy a single SHA-256 is enough to store it: no
//! dictionary or brute-force search can reach a random 256-bit preimage, so a slow password
//! hash (argon2, bcrypt) would only add latency to every request. Presented keys are compared
//! by their hashes in constant time (`subtle`), against every configured key.

use super::limits::Limiter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wildmatch::WildMatch;

/// The prefix of every key `keys new` makes (so a leaked one is recognisable in secret scanners).
pub const KEY_PREFIX: &str = "egk_";

/// Most API keys in force at once (config and keys file together): their names are label
/// values, so their number is bounded.
pub const MAX_KEYS: usize = 1000;

/// What a key may do in the memory spaces a grant names; each role includes those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Recall, describe the space, get an observation, list it among the spaces.
    Read,
    /// Read, plus write observations (insert, upsert) and delete them.
    Write,
    /// Write, plus create and drop the space and its snapshots.
    Admin,
}

impl Role {
    /// The role's name in grants (`read`, `write`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// One grant of a key, as written in its `grants` list and in `keys new --grant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `PATTERN=ROLE`: `role` in every memory space whose name `pattern` matches (an exact
    /// name, or a glob with `*` for any run of characters and `?` for one, e.g. `tenant-42-*`).
    Space {
        /// The memory-space name or glob.
        pattern: String,
        /// What the key may do there.
        role: Role,
    },
    /// `admin`: every role in every space, `/metrics` and `/health/detailed`.
    Admin,
    /// `metrics`: `/metrics` and `/health/detailed` (for Prometheus and dashboards).
    Metrics,
}

impl Grant {
    /// Parses `admin`, `metrics` or `PATTERN=ROLE`.
    ///
    /// # Errors
    /// What is wrong with the grant, quoting it.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "admin" => return Ok(Grant::Admin),
            "metrics" => return Ok(Grant::Metrics),
            _ => {}
        }
        let Some((pattern, role)) = s.split_once('=') else {
            return Err(format!("`{s}`: expected `admin`, `metrics` or PATTERN=ROLE (e.g. `tenant-42-*=write`)"));
        };
        let role = match role {
            "read" => Role::Read,
            "write" => Role::Write,
            "admin" => Role::Admin,
            other => return Err(format!("`{s}`: unknown role `{other}`, expected `read`, `write` or `admin`")),
        };
        let valid = !pattern.is_empty()
            && pattern.len() <= 64
            && pattern.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?'));
        if !valid {
            return Err(format!(
                "`{s}`: the pattern must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-' (memory-space names) and the wildcards '*', '?'"
            ));
        }
        Ok(Grant::Space { pattern: pattern.to_owned(), role })
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Space { pattern, role } => write!(f, "{pattern}={}", role.as_str()),
            Grant::Admin => f.write_str("admin"),
            Grant::Metrics => f.write_str("metrics"),
        }
    }
}

/// One API key as configured (`[[auth.keys]]`, or `[[keys]]` in the keys file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name: in the audit log and in metric labels, never the key itself. 1 to 64
    /// characters of A-Z, a-z, 0-9, '_', '.', '-'; unique.
    pub name: String,
    /// SHA-256 of the key, 64 hex digits (`keys new` prints it; or `printf %s KEY | sha256sum`).
    pub sha256: String,
    /// What the key may do: `admin`, `metrics`, or `PATTERN=ROLE` with ROLE one of `read`,
    /// `write`, `admin` (see [`Grant`]).
    #[serde(default)]
    pub grants: Vec<String>,
    /// This key's requests per second (`rate_limits.requests_per_second` when unset; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// This key's observations per second (`rate_limits.observations_per_second` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observations_per_second: Option<u32>,
}

impl KeyConfig {
    /// An entry with `grants` and the default rate limits.
    pub fn new(name: impl Into<String>, sha256: impl Into<String>, grants: Vec<String>) -> Self {
        Self {
            name: name.into(),
            sha256: sha256.into(),
            grants,
            requests_per_second: None,
            observations_per_second: None,
        }
    }
}

/// A configured key, checked and ready to match.
#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) name: String,
    hash: [u8; 32],
    admin: bool,
    metrics: bool,
    spaces: Vec<(WildMatch, Role)>,
    /// The key's rate limits (none by default).
    pub(crate) limiter: Option<Limiter>,
}

impl Key {
    /// Checks `c` (found at `field`, e.g. `auth.keys[2]`) and compiles its grants.
    fn compile(c: &KeyConfig, field: &str) -> Result<Self, String> {
        let name_ok = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err(format!("{field}.name: must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'"));
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&c.sha256, &mut hash).map_err(|_| {
            format!("{field}.sha256: must be 64 hex digits (the SHA-256 of the key, as `keys new` prints)")
        })?;
        let mut key =
            Key { name: c.name.clone(), hash, admin: false, metrics: false, spaces: Vec::new(), limiter: None };
        for (i, g) in c.grants.iter().enumerate() {
            match Grant::parse(g).map_err(|e| format!("{field}.grants[{i}]: {e}"))? {
                Grant::Admin => key.admin = true,
                Grant::Metrics => key.metrics = true,
                Grant::Space { pattern, role } => key.spaces.push((WildMatch::new(&pattern), role)),
            }
        }
        Ok(key)
    }

    /// The strongest role this key holds in `space` (`None`: it may not see the space).
    pub(crate) fn role_in(&self, space: &str) -> Option<Role> {
        if self.admin {
            return Some(Role::Admin);
        }
        self.spaces.iter().filter(|(p, _)| p.matches(space)).map(|(_, r)| *r).max()
    }

    /// Whether the key may read `/metrics` and `/health/detailed`.
    pub(crate) fn may_read_metrics(&self) -> bool {
        self.admin || self.metrics
    }
}

/// The keys in force.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<Key>>,
}

impl KeySet {
    /// Compiles `keys` (each `(field, config)`), refusing duplicate names or hashes; each key's
    /// rate limits come from `limiter`.
    pub(crate) fn compile<'a>(
        keys: impl IntoIterator<Item = (String, &'a KeyConfig)>,
        limiter: impl Fn(&KeyConfig) -> Option<Limiter>,
    ) -> Result<Self, String> {
        let mut set = KeySet::default();
        for (field, c) in keys {
            let mut key = Key::compile(c, &field)?;
            key.limiter = limiter(c);
            if set.keys.iter().any(|k| k.name == key.name) {
                return Err(format!("{field}.name: `{}` names another key too; names must be unique", key.name));
            }
            if set.keys.iter().any(|k| k.hash == key.hash) {
                return Err(format!("{field}.sha256: the same key as another one; make a new key for each client"));
            }
            set.keys.push(Arc::new(key));
        }
        if set.keys.len() > MAX_KEYS {
            return Err(format!("auth: {} keys, more than the {MAX_KEYS} allowed", set.keys.len()));
        }
        Ok(set)
    }

    /// How many keys are in force.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key whose hash is `presented`'s SHA-256. Every key is compared, in constant time, so
    /// how long this takes says nothing about which key (or how much of one) matched.
    pub(crate) fn find(&self, presented: &str) -> Option<Arc<Key>> {
        let hash = sha256(presented);
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.hash.ct_eq(&hash)) {
                found = Some(Arc::clone(k));
            }
        }
        found
    }
}

/// SHA-256 of `key`'s bytes.
pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh random key: [`KEY_PREFIX`] and 64 hex digits (256 bits from the OS).
///
/// # Errors
/// The operating system's random source failed.
pub fn new_key() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the operating system's random source failed: {e}"))?;
    Ok(format!("{KEY_PREFIX}{}", hex::encode(bytes)))
}

/// What `engram-stream keys new` prints: a fresh key on the first line, then the
/// `[[auth.keys]]` entry (name, SHA-256, grants) to add to the config or keys file.
///
/// # Errors
/// A bad name or grant (named), or a failed random source.
pub fn new_key_entry(name: &str, grants: &[String]) -> Result<String, String> {
    let key = new_key()?;
    let config = KeyConfig::new(name, hex::encode(sha256(&key)), grants.to_vec());
    Key::compile(&config, "key")?;
    let grants = grants.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ");
    Ok(format!(
        "{key}\n\
         # The line above is the key: give it to the client now, it is not stored anywhere.\n\
         # Add what follows to the server's config file (or, as [[keys]], to auth.keys_file):\n\
         [[auth.keys]]\n\
         name = {name:?}\n\
         sha256 = \"{}\"\n\
         grants = [{grants}]\n",
        config.sha256
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(grants: &[&str]) -> Key {
        let c = KeyConfig::new("k", hex::encode(sha256("secret")), grants.iter().map(|g| (*g).to_owned()).collect());
        Key::compile(&c, "auth.keys[0]").unwrap()
    }

    #[test]
    fn roles_come_from_the_strongest_matching_grant() {
        let k = key(&["tenant-a-*=read", "tenant-a-docs=write", "other=admin"]);
        assert_eq!(k.role_in("tenant-a-x"), Some(Role::Read));
        assert_eq!(k.role_in("tenant-a-docs"), Some(Role::Write));
        assert_eq!(k.role_in("other"), Some(Role::Admin));
        assert_eq!(k.role_in("tenant-b"), None);
        assert_eq!(k.role_in("tenant-a"), None, "the glob needs the dash");
        assert!(!k.may_read_metrics());
        let admin = key(&["admin"]);
        assert_eq!(admin.role_in("anything"), Some(Role::Admin));
        assert!(admin.may_read_metrics() && admin.admin);
        assert!(key(&["metrics"]).may_read_metrics());
    }

    #[test]
    fn bad_grants_and_hashes_name_the_field() {
        for (grant, needle) in
            [("x=owner", "unknown role `owner`"), ("a b=read", "pattern must be"), ("tenant", "PATTERN=ROLE")]
        {
            let c = KeyConfig::new("k", hex::encode(sha256("s")), vec![grant.into()]);
            let e = Key::compile(&c, "auth.keys[3]").unwrap_err();
            assert!(e.starts_with("auth.keys[3].grants[0]: ") && e.contains(needle), "{e}");
        }
        let c = KeyConfig::new("k", "abc", vec![]);
        assert!(Key::compile(&c, "f").unwrap_err().starts_with("f.sha256: must be 64 hex digits"));
        let c = KeyConfig::new("bad name", hex::encode(sha256("s")), vec![]);
        assert!(Key::compile(&c, "f").unwrap_err().starts_with("f.name:"));
    }

    #[test]
    fn a_key_is_found_by_its_hash_only() {
        let a = KeyConfig::new("a", hex::encode(sha256("key-a")), vec![]);
        let b = KeyConfig::new("b", hex::encode(sha256("key-b")), vec![]);
        let set = KeySet::compile([("k0".to_owned(), &a), ("k1".to_owned(), &b)], |_| None).unwrap();
        assert_eq!(set.find("key-b").unwrap().name, "b");
        assert!(set.find("key-c").is_none());
        assert!(set.find("").is_none());
        let dup = KeySet::compile([("k0".to_owned(), &a), ("k1".to_owned(), &a)], |_| None).unwrap_err();
        assert!(dup.starts_with("k1.name:"), "{dup}");
    }

    #[test]
    fn new_entries_hold_a_fresh_key_whose_hash_they_give() {
        let out = new_key_entry("ingest", &["tenant-a-*=write".into(), "metrics".into()]).unwrap();
        let key = out.lines().next().unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64, "{key}");
        assert!(out.contains(&format!("sha256 = \"{}\"", hex::encode(sha256(key)))), "{out}");
        assert!(out.contains("grants = [\"tenant-a-*=write\", \"metrics\"]"), "{out}");
        assert_ne!(new_key().unwrap(), new_key().unwrap());
        assert!(new_key_entry("ingest", &["x=boss".into()]).is_err());
    }
}
