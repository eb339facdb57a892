//! Tenants: one Genesys org's share of a deployment.

use std::fmt;

/// A tenant's name: 1 to 32 of `a-z`, `0-9` and `-`, starting with a
/// letter or digit. The name picks the hash tag every key of the tenant
/// shares, so a tenant's records, queues and limiter sit in one Redis
/// Cluster slot and different tenants spread over the shards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Tenant(String);

/// A tenant name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {0:?}: use 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit")]
pub struct BadTenant(pub String);

impl Tenant {
    /// The tenant of a deployment that names none: its keys keep the
    /// `{gcrun}` tag of single-org releases, so upgrading changes nothing.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(name: &str) -> Result<Self, BadTenant> {
        let ok = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if ok { Ok(Self(name.to_string())) } else { Err(BadTenant(name.chars().take(40).collect())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The hash tag of every key of this tenant: `{gcrun}` for the default
    /// tenant, `{gcrun@<name>}` for the others.
    pub fn tag(&self) -> String {
        if self.is_default() { "{gcrun}".to_string() } else { format!("{{gcrun@{}}}", self.0) }
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Self(Self::DEFAULT.to_string())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tenant {
    type Err = BadTenant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tenant_keeps_the_single_org_tag_and_others_get_their_own() {
        assert_eq!(Tenant::default().tag(), "{gcrun}");
        assert_eq!(Tenant::parse("acme-eu").map(|t| t.tag()), Ok("{gcrun@acme-eu}".to_string()));
    }

    #[test]
    fn names_that_could_break_a_key_or_a_tag_are_refused() {
        for bad in ["", "-x", "Acme", "a}b", "a:b", "a b", &"x".repeat(33)] {
            assert!(Tenant::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Tenant>("\"a{b\"").is_err());
        assert_eq!(serde_json::from_str::<Tenant>("\"t1\"").ok(), Tenant::parse("t1").ok());
    }
}
