//! A small country → region table for cross-border features.
//!
//! Regions are trade regions a marketplace reasons in (shipping zones, customs
//! unions), not continents: the EU single market is one region, the UK and
//! Switzerland sit in "europe-other". Countries not listed are `other`.

pub const REGIONS: &[(&str, &[&str])] = &[
    (
        "eu",
        &[
            "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
            "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        ],
    ),
    (
        "europe-other",
        &[
            "GB", "CH", "NO", "IS", "LI", "TR", "UA", "RS", "JE", "GG", "IM",
        ],
    ),
    ("north-america", &["US", "CA", "MX"]),
    ("latin-america", &["BR", "AR", "CL", "CO", "PE", "UY"]),
    ("east-asia", &["JP", "CN", "KR", "HK", "TW"]),
    ("southeast-asia", &["SG", "MY", "TH", "VN", "ID", "PH"]),
    ("south-asia", &["IN", "PK", "BD", "LK"]),
    (
        "middle-east",
        &["AE", "SA", "IL", "BH", "LB", "QA", "KW", "OM", "JO"],
    ),
    ("oceania", &["AU", "NZ"]),
    ("africa", &["ZA", "NG", "KE", "EG", "MA"]),
];

pub fn region(country: &str) -> &'static str {
    REGIONS
        .iter()
        .find(|(_, members)| members.contains(&country))
        .map(|(r, _)| *r)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_is_iso_and_in_one_region() {
        let mut seen = std::collections::HashSet::new();
        for (_, members) in REGIONS {
            for c in *members {
                assert!(crate::values::is_country(c), "{c}");
                assert!(seen.insert(*c), "{c} in two regions");
            }
        }
        assert_eq!(region("DE"), "eu");
        assert_eq!(region("ZZ"), "other");
    }
}
