//! Sign-in benchmark: a password `login` followed by the first authorized query (`me`) with
//! the token it returned, one after the other, as a console does on start. Prints p50/p99 of
//! the sign-in, of the first query and of both together.
//!
//! Run with `scripts/bench auth`. Settings: AUTH_ROUNDS (sign-ins measured, 200).

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use serde_json::json;
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD};

const LOGIN: &str =
    "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken expiresIn}}";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(label: &str, mut xs: Vec<Duration>) {
    xs.sort();
    println!(
        "{label:<28} p50 {:7.2} ms   p99 {:7.2} ms   ({} samples)",
        percentile(&xs, 0.50),
        percentile(&xs, 0.99),
        xs.len()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = tms_tests::env_or("AUTH_ROUNDS", 200);
    let env = tms_tests::bench_env().await?;
    let (mut login, mut first, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t0 = Instant::now();
        let v = env
            .gql_raw(None, LOGIN, json!({"e": ADMIN_EMAIL, "p": ADMIN_PASSWORD}))
            .await?;
        let token = v["data"]["login"]["accessToken"]
            .as_str()
            .ok_or_else(|| anyhow!("login failed: {v}"))?
            .to_string();
        let t1 = Instant::now();
        let me = env
            .gql_raw(Some(&token), "{ me { id } }", json!({}))
            .await?;
        let t2 = Instant::now();
        ensure!(
            me["data"]["me"]["id"].is_string(),
            "first query refused: {me}"
        );
        login.push(t1 - t0);
        first.push(t2 - t1);
        total.push(t2 - t0);
    }
    println!("== TMS sign-in benchmark: login, then the first authorized query ==");
    report("login", login);
    report("first authorized query", first);
    report("login -> first query", total);
    Ok(())
}
