//! The binary as an operator starts it. (Its serving and its stop on SIGTERM are tested with
//! a real token node, Kafka and Redis in `services/projector/tests/it/loop_tests.rs`, which
//! runs the binary this test target makes cargo build.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn it_refuses_to_start_without_an_issuer_and_says_why() {
    tokend_testkit::time_limit(30);
    let out = Command::new(env!("CARGO_BIN_EXE_resource-server"))
        .env_remove("RS_ISSUER")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RS_ISSUER must be set"), "{stderr}");
}

#[test]
fn it_refuses_a_cluster_flag_that_is_not_a_boolean() {
    tokend_testkit::time_limit(30);
    let out = Command::new(env!("CARGO_BIN_EXE_resource-server"))
        .env("RS_ISSUER", "http://127.0.0.1:1")
        .env("RS_REDIS_CLUSTER", "maybe")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RS_REDIS_CLUSTER must be true or false"),
        "{stderr}"
    );
}
