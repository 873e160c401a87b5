//! Probes against real listeners on 127.0.0.1 and real commands.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use drover_agent::probe::{Outcome, Target, check};
use drover_model::service::{ExecAction, HttpGetAction, PortRef, Probe, TcpSocketAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server answering every request with `status`; `None` accepts and never answers.
async fn server(status: Option<u16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                match status {
                    Some(code) => {
                        let _ = stream
                            .write_all(
                                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    port
}

fn target(ports: &[(&str, u16)]) -> Target {
    Target {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports: ports.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(),
        default_port: ports.first().map(|(_, p)| *p),
        env: BTreeMap::new(),
        working_dir: None,
    }
}

fn http(path: &str, port: Option<PortRef>) -> Probe {
    Probe {
        http_get: Some(HttpGetAction {
            path: path.into(),
            port,
            ..HttpGetAction::default()
        }),
        ..Probe::default()
    }
}

#[tokio::test]
async fn http_probes_pass_on_2xx_and_3xx_and_fail_otherwise_saying_why() {
    for (status, passes) in [
        (200, true),
        (302, true),
        (399, true),
        (404, false),
        (503, false),
    ] {
        let port = server(Some(status)).await;
        let outcome = check(
            &http("/ready", Some(PortRef::Name("http".into()))),
            &target(&[("http", port)]),
        )
        .await;
        match (passes, outcome) {
            (true, Outcome::Pass) => {}
            (false, Outcome::Fail(why)) => assert_eq!(why, format!("GET /ready returned {status}")),
            (_, other) => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_http_probe_that_gets_no_answer_fails_at_its_timeout() {
    let port = server(None).await;
    let started = Instant::now();
    let outcome = check(&http("/healthz", None), &target(&[("http", port)])).await;
    assert_eq!(
        outcome,
        Outcome::Fail("GET /healthz timed out after 1s".into())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn tcp_probes_pass_when_the_port_accepts() {
    let open = server(Some(200)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = |port| Probe {
        tcp_socket: Some(TcpSocketAction {
            port: Some(PortRef::Number(port)),
        }),
        ..Probe::default()
    };
    assert_eq!(check(&tcp(open), &target(&[])).await, Outcome::Pass);
    let Outcome::Fail(why) = check(&tcp(closed), &target(&[])).await else {
        panic!("a closed port passed")
    };
    assert!(
        why.starts_with(&format!("TCP connect to port {closed} failed")),
        "{why}"
    );
}

#[tokio::test]
async fn exec_probes_pass_on_exit_0_and_are_killed_at_the_timeout() {
    let exec = |script: &str| Probe {
        exec: Some(ExecAction {
            command: vec!["sh".into(), "-c".into(), script.into()],
        }),
        ..Probe::default()
    };
    assert_eq!(check(&exec("exit 0"), &target(&[])).await, Outcome::Pass);
    assert_eq!(
        check(&exec("exit 3"), &target(&[])).await,
        Outcome::Fail("`sh -c exit 3` exited with 3".into())
    );
    let started = Instant::now();
    assert_eq!(
        check(&exec("sleep 20"), &target(&[])).await,
        Outcome::Fail("`sh -c sleep 20` timed out after 1s".into())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_probe_naming_an_unknown_port_fails_clearly() {
    let outcome = check(
        &http("/", Some(PortRef::Name("admin".into()))),
        &target(&[("http", 1)]),
    )
    .await;
    assert_eq!(outcome, Outcome::Fail("no port named admin".into()));
}
