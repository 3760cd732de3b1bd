//! Rule generation: golden files in `proxy/testdata/capture/` (`WEFT_UPDATE_GOLDEN=1 cargo test -p weft-proxy
//! capture` rewrites them; review the diff), plus the properties that matter on a real node.

use std::path::PathBuf;

use super::*;

fn defaults() -> CaptureSettings {
    CaptureSettings {
        proxy_uid: 1337,
        outbound_capture_port: 15001,
        inbound_capture_port: 15006,
        health_port: 15020,
        exclude_outbound_ports: Vec::new(),
        exclude_inbound_ports: Vec::new(),
        exclude_outbound_ip_ranges: Vec::new(),
    }
}

fn with_exclusions() -> CaptureSettings {
    CaptureSettings {
        exclude_outbound_ports: vec![5432, 6379, 5432],
        exclude_inbound_ports: vec![8081],
        exclude_outbound_ip_ranges: ["10.0.0.0/8", "fd00::/8", "169.254.169.254/32"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect(),
        ..defaults()
    }
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/capture").join(name);
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "{} is stale: run WEFT_UPDATE_GOLDEN=1 cargo test -p weft-proxy capture and review the diff",
        path.display()
    );
}

#[test]
fn default_rules_match_the_golden_file() {
    golden("default.rules", &defaults().ruleset().restore_text(None));
}

#[test]
fn exclusion_rules_match_the_golden_file() {
    golden("exclusions.rules", &with_exclusions().ruleset().restore_text(None));
}

#[test]
fn exclusions_come_before_the_redirect_and_duplicates_collapse() {
    let rules = with_exclusions().ruleset().rules;
    let position = |rule: &str| rules.iter().position(|r| r == rule).unwrap_or_else(|| panic!("{rule} missing"));
    let redirect = position("-A WEFT_OUTPUT -j WEFT_REDIRECT");
    assert!(position("-A WEFT_OUTPUT -p tcp --dport 5432 -j RETURN") < redirect);
    assert!(position("-A WEFT_OUTPUT -d 10.0.0.0/8 -j RETURN") < redirect);
    let first_output = rules.iter().position(|r| r.starts_with("-A WEFT_OUTPUT")).unwrap();
    assert_eq!(
        position("-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN"),
        first_output,
        "the proxy's UID goes first"
    );
    assert!(
        position("-A WEFT_INBOUND -p tcp --dport 8081 -j RETURN")
            < position("-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT")
    );
    assert_eq!(rules.iter().filter(|r| r.contains("--dport 5432")).count(), 1);
    assert!(!rules.iter().any(|r| r.contains("fd00")), "IPv6 ranges are not iptables rules");
}

#[test]
fn the_health_port_is_never_captured_inbound() {
    let rules = defaults().ruleset().rules;
    assert_eq!(rules[0], "-A WEFT_INBOUND -p tcp --dport 15020 -j RETURN");
}

#[test]
fn rerunning_adds_the_jumps_only_once() {
    let ruleset = defaults().ruleset();
    let first = ruleset.restore_text(Some(""));
    assert!(
        first.contains("-A PREROUTING -p tcp -j WEFT_INBOUND\n") && first.contains("-A OUTPUT -p tcp -j WEFT_OUTPUT\n")
    );
    // What iptables-save prints after the first run (it spells matches out: `-m tcp`, counters omitted).
    let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:WEFT_INBOUND - [0:0]\n:WEFT_OUTPUT - [0:0]\n\
                 -A PREROUTING -p tcp -j WEFT_INBOUND\n-A OUTPUT -p tcp -j WEFT_OUTPUT\n\
                 -A WEFT_INBOUND -p tcp -m tcp --dport 15020 -j RETURN\nCOMMIT\n";
    let second = ruleset.restore_text(Some(saved));
    assert!(!second.contains("-A PREROUTING") && !second.contains("-A OUTPUT "), "{second}");
    assert_eq!(
        second.lines().filter(|l| l.starts_with("-A WEFT_")).count(),
        first.lines().filter(|l| l.starts_with("-A WEFT_")).count(),
        "Weft's chains are declared (flushed) and refilled in full"
    );
    assert_eq!(ruleset.restore_text(Some(saved)), second, "the same input gives the same text");
}

#[test]
fn a_jump_from_another_chain_or_to_another_target_does_not_count() {
    let ruleset = defaults().ruleset();
    let saved = "-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A POSTROUTING -p tcp -j WEFT_OUTPUT\n";
    let text = ruleset.restore_text(Some(saved));
    assert!(text.contains("-A PREROUTING -p tcp -j WEFT_INBOUND") && text.contains("-A OUTPUT -p tcp -j WEFT_OUTPUT"));
}

#[test]
fn cidrs_parse_strictly() {
    assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
    assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
    for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/08", "fd00::/129", "example.com/8", "10.0.0.0/"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn capture_ports_must_differ() {
    let same = CaptureSettings { inbound_capture_port: 15001, ..defaults() };
    assert_eq!(same.validate(), Err(SettingsError::SamePorts(15001)));
    assert_eq!(defaults().validate(), Ok(()));
}
