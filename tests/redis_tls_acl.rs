//! Redis over TLS (`rediss://`, the server requiring client certificates) with an ACL user
//! limited to kiki's key prefix and the default user switched off: the whole line works, `kiki
//! check` passes, and a wrong password or a missing CA fails clearly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use kiki::channels::RedisTarget;
use kiki::config::RedisConfig;
use kiki::gateway::protocol::ServerMessage;
use kiki::local::redis_server::{RedisChild, free_port};
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=kiki-test-ca",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for name in ["server", "client"] {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        let subj = format!("/CN=kiki-test-{name}");
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &crt,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_and_an_acl_user() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let tls_port = free_port().unwrap();
    let tls_port_s = tls_port.to_string();
    let args = [
        "--tls-port",
        &tls_port_s,
        "--tls-cert-file",
        &p("server.crt"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.crt"),
        "--tls-auth-clients",
        "yes",
        // No anonymous access; one user that may touch kiki's keys and channels only.
        "--user",
        "default",
        "off",
        "--user",
        "kiki",
        "on",
        ">s3cret",
        "~kiki:*",
        "&kiki:*",
        "+@all",
    ];
    let redis = RedisChild::start("redis-server", &args).await.expect("redis-server with TLS starts");
    let url = format!("rediss://kiki:s3cret@127.0.0.1:{tls_port}/");
    let mut cfg = test_config();
    cfg.redis = RedisConfig {
        cluster: None,
        ca_file: Some(p("ca.crt").into()),
        cert_file: Some(p("client.crt").into()),
        key_file: Some(p("client.key").into()),
    };

    // What goes wrong says what it is.
    let wrong = format!("rediss://kiki:nope@127.0.0.1:{tls_port}/");
    let err = RedisTarget::new(&wrong, &cfg.redis).await.expect_err("a wrong password fails").to_string();
    assert!(err.to_lowercase().contains("authentication failed"), "{err}");
    let no_ca = RedisConfig { ca_file: None, ..cfg.redis.clone() };
    let err = RedisTarget::new(&url, &no_ca).await.expect_err("an unknown CA fails").to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let plain = format!("redis://kiki:s3cret@127.0.0.1:{tls_port}/");
    assert!(RedisTarget::new(&plain, &RedisConfig::default()).await.is_err(), "plain TCP to the TLS port");

    // The whole line over TLS as the ACL user.
    let stack = Stack::gateway_at(cfg, Backing::Single(redis), url.clone()).await;
    stack.spawn_worker().await;
    stack.wait_ready().await;
    let sentence = "Please call Stella and ask her to bring these things.";
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    c.stream(&speak_sentences(&[sentence], 700), 4.0).await;
    let msgs = c.stop_and_collect().await;
    let text = final_text(&msgs);
    eprintln!("over TLS: {text}");
    assert!(wer(sentence, &text) <= 0.35, "{msgs:?}");

    let checks = kiki::tools::check::run(&stack.cfg, &url, None, Duration::from_secs(10)).await;
    for c in &checks {
        eprintln!("{} {} {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
        assert!(!c.detail.contains("s3cret"), "a check printed the password: {}", c.detail);
    }
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
}
