//! The harness itself: a test process killed without its destructors still leaves no
//! PostgreSQL cluster behind.

use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// Run by `test_cluster_is_removed_when_the_test_process_is_killed` in a child process.
#[test]
#[ignore = "a helper: run by test_cluster_is_removed_when_the_test_process_is_killed"]
fn helper_holds_a_cluster_until_killed() {
    if std::env::var_os("USER_API_TEST_HELPER").is_none() {
        return;
    }
    let cluster = TestCluster::start();
    println!("CLUSTER {} {}", cluster.port(), cluster.dir().display());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The helper's name as the test runner knows it: its module path without the crate.
fn helper_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::helper_holds_a_cluster_until_killed")
}

#[test]
fn test_cluster_is_removed_when_the_test_process_is_killed() {
    use std::io::BufRead;
    // Arrange: a child test process holding a cluster.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &helper_test_name(), "--ignored", "--nocapture"])
        .env("USER_API_TEST_HELPER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("CLUSTER "))
        .expect("the helper reports its cluster");
    let mut parts = line.split_whitespace().skip(1);
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    assert!(dir.exists(), "the cluster directory exists while it runs");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the cluster serves"
    );

    // Act: kill it as a crash or a CI timeout would, with no destructor running.
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: its watchdog stopped the server and removed the directory.
    let gone = poll_until(Duration::from_secs(30), || {
        (!dir.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_err()).then_some(())
    });
    assert!(
        gone.is_some(),
        "{} or port {port} outlived the test process",
        dir.display()
    );
}
