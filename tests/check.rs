//! `kiki check` against a live deployment, and against a broken one.

use crate::common::*;

async fn kiki_check(stack: &Stack) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiki"))
        .args(["check", "--timeout", "5", "--gateway"])
        .arg(format!("http://{}", stack.addr))
        .env("KIKI_REDIS_URL", &stack.redis_url)
        .env("KIKI_LOG", "warn")
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_healthy_deployment_and_fails_without_workers() {
    let _g = serial().await;
    let stack = Stack::gateway_only(test_config()).await;
    let (ok, report) = kiki_check(&stack).await;
    eprintln!("{report}");
    assert!(!ok, "no worker yet: {report}");
    assert!(report.lines().any(|l| l.starts_with("FAIL") && l.contains("workers")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("FAIL") && l.contains("task path")), "{report}");

    stack.spawn_worker().await;
    stack.wait_ready().await;
    let (ok, report) = kiki_check(&stack).await;
    eprintln!("{report}");
    assert!(ok, "{report}");
    for name in ["redis", "task stream", "workers", "pub/sub", "task path", "gateway"] {
        assert!(report.lines().any(|l| l.starts_with("ok") && l.contains(name)), "{name}: {report}");
    }
}
