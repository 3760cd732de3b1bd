//! Command-line parsing: the default subcommand, the defaults of each mode, and the init flags the webhook passes.

use std::ffi::OsString;

use super::*;

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    let argv: Vec<OsString> = std::iter::once("weft-proxy").chain(args.iter().copied()).map(OsString::from).collect();
    Cli::try_parse_from(with_default_subcommand(argv)).map(|cli| cli.command)
}

/// The flags `run` requires.
const RUN: [&str; 7] =
    ["run", "--xds-address", "http://10.0.0.1:15010", "--pod-name", "web-1", "--pod-namespace", "shop"];

fn run_settings(args: &[&str]) -> ProxySettings {
    match parse(&[&RUN[..], args].concat()).unwrap() {
        Command::Run(run) => run.settings(),
        other => panic!("expected run, got {other:?}"),
    }
}

#[test]
fn no_subcommand_means_run_in_explicit_mode() {
    let settings = run_settings(&["--outbound-listen", "127.0.0.1:4000"]);
    assert_eq!(settings.capture, Capture::Explicit);
    assert_eq!(settings.outbound_listen.to_string(), "127.0.0.1:4000");
    assert_eq!(settings.admin_listen.to_string(), "127.0.0.1:15000");
    assert_eq!(settings.health_listen, None, "explicit mode serves health only when asked");
    assert_eq!(settings.drain_timeout, Duration::from_secs(5));
    assert_eq!(run_settings(&[]).outbound_listen.to_string(), "127.0.0.1:15001");
    let Command::Run(bare) =
        parse(&["--xds-address", "http://x:1", "--pod-name", "p", "--pod-namespace", "n"]).unwrap()
    else {
        panic!("no subcommand must mean run")
    };
    assert_eq!(bare.settings().capture, Capture::Explicit);
}

#[test]
fn transparent_mode_listens_on_istios_ports() {
    let settings = run_settings(&["--transparent", "--drain-timeout", "750ms", "--service-account", "web"]);
    assert_eq!(settings.capture, Capture::Transparent { inbound_listen: "0.0.0.0:15006".parse().unwrap() });
    assert_eq!(settings.outbound_listen.to_string(), "0.0.0.0:15001");
    assert_eq!(settings.health_listen.map(|a| a.to_string()).as_deref(), Some("0.0.0.0:15020"));
    assert_eq!(settings.admin_listen.to_string(), "127.0.0.1:15000", "admin stays on localhost");
    assert_eq!(settings.drain_timeout, Duration::from_millis(750));
    assert_eq!(settings.service_account.as_deref(), Some("web"));
    let moved = run_settings(&["--transparent", "--inbound-listen", "0.0.0.0:7006", "--health-listen", "0.0.0.0:7020"]);
    assert_eq!(moved.capture, Capture::Transparent { inbound_listen: "0.0.0.0:7006".parse().unwrap() });
    assert_eq!(moved.health_listen.map(|a| a.to_string()).as_deref(), Some("0.0.0.0:7020"));
}

#[test]
fn timeouts_have_envoys_defaults_and_zero_turns_one_off() {
    assert_eq!(run_settings(&[]).timeouts, crate::http::timeouts::Timeouts::default());
    let set = run_settings(&["--request-headers-timeout", "2s", "--stream-idle-timeout", "0", "--idle-timeout", "90s"]);
    assert_eq!(set.timeouts.request_headers, Some(Duration::from_secs(2)));
    assert_eq!(set.timeouts.stream_idle, None);
    assert_eq!(set.timeouts.idle, Some(Duration::from_secs(90)));
    assert!(
        parse(&["--xds-address", "http://x:1", "--pod-name", "p", "--pod-namespace", "n", "--idle-timeout", "soon"])
            .is_err()
    );
}

#[test]
fn the_inbound_listener_needs_transparent_mode() {
    let base = ["--xds-address", "http://x:1", "--pod-name", "p", "--pod-namespace", "n"];
    let err = parse(&[&base[..], &["--inbound-listen", "0.0.0.0:15006"]].concat()).unwrap_err();
    assert!(err.to_string().contains("--transparent"), "{err}");
}

#[test]
fn init_takes_the_webhooks_flags() {
    let args = [
        "init",
        "--proxy-uid",
        "1337",
        "--outbound-capture-port",
        "15001",
        "--inbound-capture-port",
        "15006",
        "--exclude-outbound-ports",
        "5432,6379",
        "--exclude-inbound-ports",
        "8081",
        "--exclude-outbound-ip-ranges",
        "10.0.0.0/8,fd00::/8",
    ];
    let Command::Init(init) = parse(&args).unwrap() else { panic!("expected init") };
    let settings = init.settings();
    assert_eq!(settings.exclude_outbound_ports, [5432, 6379]);
    assert_eq!(settings.exclude_inbound_ports, [8081]);
    assert_eq!(settings.exclude_outbound_ip_ranges.len(), 2);
    assert_eq!((settings.proxy_uid, settings.health_port), (1337, 15020));
    assert!(!init.dry_run);
}

#[test]
fn bad_init_values_name_the_flag() {
    for (args, flag) in [
        (&["init", "--exclude-outbound-ports", "5432,http"][..], "--exclude-outbound-ports"),
        (&["init", "--exclude-inbound-ports", "0"], "--exclude-inbound-ports"),
        (&["init", "--exclude-outbound-ip-ranges", "10.0.0.0/33"], "--exclude-outbound-ip-ranges"),
        (&["init", "--proxy-uid", "nobody"], "--proxy-uid"),
    ] {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn wait_defaults_to_the_health_listener() {
    let Command::Wait(wait) = parse(&["wait", "--timeout", "60s"]).unwrap() else { panic!("expected wait") };
    assert_eq!(wait.timeout, Duration::from_secs(60));
    assert_eq!(wait.url.to_string(), "http://127.0.0.1:15020/healthz/ready");
}

#[test]
fn pod_labels_are_key_value_pairs() {
    let settings = run_settings(&["--pod-labels", "app=web,version=v2,pod-template-hash=5d7c"]);
    let labels: Vec<(&str, &str)> = settings.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, [("app", "web"), ("pod-template-hash", "5d7c"), ("version", "v2")]);
    assert!(run_settings(&[]).labels.is_empty(), "no labels by default");
    assert_eq!(
        parse_labels("app.kubernetes.io/name=web, empty="),
        Ok(Labels::from([("app.kubernetes.io/name".into(), "web".into()), ("empty".into(), String::new()),]))
    );
    for bad in ["app", "=web", "app=web,app=api", "a=b=c"] {
        let err = parse(&[&RUN[..], &["--pod-labels", bad]].concat()).unwrap_err().to_string();
        assert!(err.contains("--pod-labels"), "{bad}: {err}");
    }
}

#[test]
fn tracing_is_off_without_a_collector_and_samples_one_percent_by_default() {
    assert_eq!(run_settings(&["--trace-sampling", "5"]).tracing, None);
    let on = run_settings(&["--trace-collector", "http://otel.observability:4317"]).tracing.unwrap();
    assert_eq!((on.collector.as_str(), on.sampling_percent), ("http://otel.observability:4317", 1.0));
    let all = run_settings(&["--trace-collector", "otel:4317", "--trace-sampling", "100"]).tracing.unwrap();
    assert_eq!(all.sampling_percent, 100.0);
    assert!(parse(&[&RUN[..], &["--trace-sampling", "-1"]].concat()).is_err());
    assert!(parse(&[&RUN[..], &["--trace-sampling", "NaN"]].concat()).is_err());
}
