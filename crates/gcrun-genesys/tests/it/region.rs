use gcrun_genesys::{Environment, Region, RegionError};

#[test]
fn all_eighteen_regions_map_to_the_reference_hosts() {
    let expected = [
        ("us-east-1", "api.mypurecloud.com"),
        ("us-east-2", "api.use2.us-gov-pure.cloud"),
        ("us-west-2", "api.usw2.pure.cloud"),
        ("ca-central-1", "api.cac1.pure.cloud"),
        ("sa-east-1", "api.sae1.pure.cloud"),
        ("mx-central-1", "api.mxc1.pure.cloud"),
        ("eu-west-1", "api.mypurecloud.ie"),
        ("eu-west-2", "api.euw2.pure.cloud"),
        ("eu-central-1", "api.mypurecloud.de"),
        ("eu-central-2", "api.euc2.pure.cloud"),
        ("eusc-de-east-1", "api.edee1.eusc-pure.cloud"),
        ("me-central-1", "api.mec1.pure.cloud"),
        ("ap-south-1", "api.aps1.pure.cloud"),
        ("ap-southeast-1", "api.apse1.pure.cloud"),
        ("ap-southeast-2", "api.mypurecloud.com.au"),
        ("ap-northeast-1", "api.mypurecloud.jp"),
        ("ap-northeast-2", "api.apne2.pure.cloud"),
        ("ap-northeast-3", "api.apne3.pure.cloud"),
    ];
    assert_eq!(Region::ALL.len(), 18);
    for (region, (code, host)) in Region::ALL.iter().zip(expected) {
        assert_eq!(region.code(), code);
        assert_eq!(region.api_host(), host);
        assert_eq!(region.login_host(), host.replacen("api.", "login.", 1));
        let env = Environment::parse(code).unwrap();
        assert_eq!(env.api.as_str(), format!("https://{host}/"));
        assert_eq!(env.login.as_str(), format!("https://{}/", host.replacen("api.", "login.", 1)));
        assert_eq!(env.region, Some(*region));
    }
}

#[test]
fn a_domain_or_an_api_host_names_its_region() {
    for value in ["mypurecloud.ie", "api.mypurecloud.ie", "MYPURECLOUD.IE/", "eu-west-1", " EU-WEST-1 "] {
        assert_eq!(Environment::parse(value).unwrap().region, Some(Region::EuWest1), "{value}");
    }
}

#[test]
fn a_base_url_serves_api_and_login_and_keeps_its_path() {
    let env = Environment::parse("http://127.0.0.1:8089").unwrap();
    assert_eq!(env.api.as_str(), "http://127.0.0.1:8089/");
    assert_eq!(env.login.as_str(), "http://127.0.0.1:8089/");
    assert_eq!(env.region, None);
    let env = Environment::parse("https://api.mypurecloud.de").unwrap();
    assert_eq!(env.login.as_str(), "https://login.mypurecloud.de/");
    assert_eq!(env.region, Some(Region::EuCentral1));
    let env = Environment::parse("http://proxy.local/genesys").unwrap();
    assert_eq!(env.api.as_str(), "http://proxy.local/genesys/");
}

#[test]
fn unknown_regions_are_errors_listing_the_valid_codes() {
    for value in ["us-gov-1", "mars-1", "example.com", ""] {
        let err = Environment::parse(value).unwrap_err();
        assert_eq!(err, RegionError::Unknown(value.trim().to_string()));
        let text = err.to_string();
        for region in Region::ALL {
            assert!(text.contains(region.code()), "{text}");
        }
    }
    assert!(matches!(Environment::parse("ftp://x"), Err(RegionError::BadUrl { .. })));
    assert!(matches!(Environment::parse("http://"), Err(RegionError::BadUrl { .. })));
}
