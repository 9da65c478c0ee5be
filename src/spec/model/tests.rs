//! Tests of the model: parsing and printing its values, its serde form.

use super::*;

#[test]
fn refresh_pull_policies_parse_compose_durations() {
    let period = |s: &str| match PullPolicy::refresh(s) {
        Some(PullPolicy::Refresh { period, written }) => {
            assert_eq!(written, s);
            Some(period.as_secs())
        }
        _ => None,
    };
    assert_eq!(period("daily"), Some(86_400));
    assert_eq!(period("weekly"), Some(604_800));
    assert_eq!(period("every_12h"), Some(43_200));
    assert_eq!(period("every_1w2d"), Some(9 * 86_400));
    assert_eq!(period("every_1h30m15s"), Some(5_415));
    for bad in [
        "every_",
        "every_12",
        "every_12x",
        "every_h",
        "hourly",
        "every_1.5h",
    ] {
        assert_eq!(period(bad), None, "{bad}");
    }
    let p = PullPolicy::refresh("every_1d").unwrap();
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"every_1d\"");
}

#[test]
fn durations_parse_and_print_like_go() {
    for (input, printed) in [
        ("1m30s", "1m30s"),
        ("90s", "1m30s"),
        ("1h", "1h0m0s"),
        ("1.5s", "1.5s"),
        ("300ms", "300ms"),
        ("0", "0s"),
        ("10us", "10µs"),
        ("2h3m4s", "2h3m4s"),
        ("1m0.5s", "1m0.5s"),
    ] {
        let d = GoDuration::parse(input).unwrap_or_else(|| panic!("{input}"));
        assert_eq!(d.to_string(), printed, "{input}");
    }
    for bad in ["", "30", "1x", "-1s", "s", "1m30"] {
        assert!(GoDuration::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn bytes_parse_binary_units() {
    assert_eq!(Bytes::parse("128m"), Some(Bytes(128 << 20)));
    assert_eq!(Bytes::parse("1g"), Some(Bytes(1 << 30)));
    assert_eq!(Bytes::parse("512MiB"), Some(Bytes(512 << 20)));
    assert_eq!(Bytes::parse("1.5k"), Some(Bytes(1536)));
    assert_eq!(Bytes::parse("1024"), Some(Bytes(1024)));
    assert_eq!(Bytes::parse("12x"), None);
    assert_eq!(Bytes(256 << 20).to_string(), "256 MiB");
}

/// Sizes, CPUs and file modes print the way `docker compose config --format json` does.
#[test]
fn serializes_like_compose() {
    assert_eq!(
        serde_json::to_value(Bytes(268_435_456)).unwrap(),
        serde_json::json!("268435456")
    );
    let set = |cpus| {
        serde_json::to_value(ResourceSet {
            cpus: Some(cpus),
            ..ResourceSet::default()
        })
        .unwrap()
    };
    assert_eq!(set(2.0), serde_json::json!({"cpus": 2}));
    assert_eq!(set(0.5), serde_json::json!({"cpus": 0.5}));
    let file = |mode| FileRef {
        source: "s".into(),
        target: None,
        uid: None,
        gid: None,
        mode,
    };
    assert_eq!(
        serde_json::to_value(file(Some(0o440))).unwrap(),
        serde_json::json!({"source": "s", "mode": "0440"})
    );
    assert_eq!(serde_json::to_value(file(Some(0))).unwrap()["mode"], "00");
    assert_eq!(
        serde_json::to_value(file(None)).unwrap(),
        serde_json::json!({"source": "s"})
    );
    let bind = BindOptions {
        create_host_path: false,
        ..BindOptions::default()
    };
    assert_eq!(serde_json::to_value(bind).unwrap(), serde_json::json!({}));
}

#[test]
fn restart_policies() {
    assert_eq!(
        RestartPolicy::parse("on-failure:3"),
        Some(RestartPolicy::OnFailure(Some(3)))
    );
    assert_eq!(
        RestartPolicy::parse("unless-stopped").unwrap().to_string(),
        "unless-stopped"
    );
    assert_eq!(RestartPolicy::parse("sometimes"), None);
    assert_eq!(RestartPolicy::parse("on-failure:x"), None);
}
