//! Genesys Cloud regions and how `GENESYSCLOUD_REGION` is read.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use url::Url;

/// The 18 Genesys Cloud regions (`reference/genesys-cloud.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    UsEast1,
    UsEast2,
    UsWest2,
    CaCentral1,
    SaEast1,
    MxCentral1,
    EuWest1,
    EuWest2,
    EuCentral1,
    EuCentral2,
    EuscDeEast1,
    MeCentral1,
    ApSouth1,
    ApSoutheast1,
    ApSoutheast2,
    ApNortheast1,
    ApNortheast2,
    ApNortheast3,
}

/// Region, code, and domain (the API host is `api.` + domain, the login
/// host `login.` + domain).
const REGIONS: [(Region, &str, &str); 18] = [
    (Region::UsEast1, "us-east-1", "mypurecloud.com"),
    (Region::UsEast2, "us-east-2", "use2.us-gov-pure.cloud"),
    (Region::UsWest2, "us-west-2", "usw2.pure.cloud"),
    (Region::CaCentral1, "ca-central-1", "cac1.pure.cloud"),
    (Region::SaEast1, "sa-east-1", "sae1.pure.cloud"),
    (Region::MxCentral1, "mx-central-1", "mxc1.pure.cloud"),
    (Region::EuWest1, "eu-west-1", "mypurecloud.ie"),
    (Region::EuWest2, "eu-west-2", "euw2.pure.cloud"),
    (Region::EuCentral1, "eu-central-1", "mypurecloud.de"),
    (Region::EuCentral2, "eu-central-2", "euc2.pure.cloud"),
    (Region::EuscDeEast1, "eusc-de-east-1", "edee1.eusc-pure.cloud"),
    (Region::MeCentral1, "me-central-1", "mec1.pure.cloud"),
    (Region::ApSouth1, "ap-south-1", "aps1.pure.cloud"),
    (Region::ApSoutheast1, "ap-southeast-1", "apse1.pure.cloud"),
    (Region::ApSoutheast2, "ap-southeast-2", "mypurecloud.com.au"),
    (Region::ApNortheast1, "ap-northeast-1", "mypurecloud.jp"),
    (Region::ApNortheast2, "ap-northeast-2", "apne2.pure.cloud"),
    (Region::ApNortheast3, "ap-northeast-3", "apne3.pure.cloud"),
];

impl Region {
    pub const ALL: [Region; 18] = {
        let mut all = [Region::UsEast1; 18];
        let mut i = 0;
        while i < 18 {
            all[i] = REGIONS[i].0;
            i += 1;
        }
        all
    };

    fn entry(self) -> &'static (Region, &'static str, &'static str) {
        // Every variant is in the table (a test checks it).
        REGIONS.iter().find(|(r, _, _)| *r == self).unwrap_or(&REGIONS[0])
    }

    /// The region code, e.g. `eu-west-1`.
    pub fn code(self) -> &'static str {
        self.entry().1
    }

    /// The region's domain, e.g. `mypurecloud.ie`.
    pub fn domain(self) -> &'static str {
        self.entry().2
    }

    /// `api.<domain>`.
    pub fn api_host(self) -> String {
        format!("api.{}", self.domain())
    }

    /// `login.<domain>`.
    pub fn login_host(self) -> String {
        format!("login.{}", self.domain())
    }

    /// Every valid code, comma separated, for error messages.
    pub fn valid_codes() -> String {
        REGIONS.iter().map(|(_, c, _)| *c).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        REGIONS
            .iter()
            .find(|(_, code, _)| code.eq_ignore_ascii_case(s.trim()))
            .map(|(r, _, _)| *r)
            .ok_or_else(|| RegionError::Unknown(s.to_string()))
    }
}

/// `GENESYSCLOUD_REGION` could not be understood.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegionError {
    #[error(
        "unknown Genesys Cloud region `{0}`; valid region codes: {codes}. A domain such as `mypurecloud.ie` or a base URL such as `http://127.0.0.1:8080` (the emulator) also works",
        codes = Region::valid_codes()
    )]
    Unknown(String),
    #[error("invalid Genesys Cloud base URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Where the API and the OAuth token endpoint live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Base of the Platform API (`https://api.mypurecloud.ie/`).
    pub api: Url,
    /// Base of the login service (`https://login.mypurecloud.ie/`).
    pub login: Url,
    /// The region, when one was named or recognised.
    pub region: Option<Region>,
}

impl Environment {
    /// The environment of a named region.
    pub fn of(region: Region) -> Self {
        let url = |host: String| Url::parse(&format!("https://{host}/")).expect("hosts in REGIONS form valid URLs");
        Self { api: url(region.api_host()), login: url(region.login_host()), region: Some(region) }
    }

    /// Reads `GENESYSCLOUD_REGION`: a region code (`eu-west-1`), a domain
    /// (`mypurecloud.ie`, with or without `api.`), or a base URL. For a URL
    /// whose host starts with `api.` the login host is `login.` + the rest;
    /// any other URL (the emulator, a proxy) serves both from one base.
    /// Nothing unknown falls back silently to us-east-1.
    pub fn parse(value: &str) -> Result<Self, RegionError> {
        let value = value.trim();
        if value.contains("://") {
            return Self::from_url(value);
        }
        if let Ok(region) = value.parse::<Region>() {
            return Ok(Self::of(region));
        }
        let domain = value.trim_end_matches('/').to_ascii_lowercase();
        let domain = domain.strip_prefix("api.").unwrap_or(&domain);
        REGIONS
            .iter()
            .find(|(_, _, d)| *d == domain)
            .map(|(r, _, _)| Self::of(*r))
            .ok_or_else(|| RegionError::Unknown(value.to_string()))
    }

    fn from_url(value: &str) -> Result<Self, RegionError> {
        let bad = |reason: &str| RegionError::BadUrl { url: value.to_string(), reason: reason.to_string() };
        let mut api = Url::parse(value).map_err(|e| bad(&e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        let host = api.host_str().ok_or_else(|| bad("no host"))?.to_string();
        if !api.path().ends_with('/') {
            let path = format!("{}/", api.path());
            api.set_path(&path);
        }
        let mut login = api.clone();
        if let Some(rest) = host.strip_prefix("api.") {
            login.set_host(Some(&format!("login.{rest}"))).map_err(|e| bad(&e.to_string()))?;
        }
        let region = REGIONS.iter().find(|(_, _, d)| host.strip_prefix("api.") == Some(*d)).map(|(r, _, _)| *r);
        Ok(Self { api, login, region })
    }
}
