//! Configuration: a TMS_CONFIG file sets what the environment does not; bad files stop start-up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tms_tests::{bin_dir, free_port};

#[tokio::test]
async fn a_config_file_configures_the_api_and_a_bad_one_stops_it() -> anyhow::Result<()> {
    let redis = tms_tests::services::redis_url();
    let dir = std::env::temp_dir().join(format!("tms-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let database_url = tms_tests::create_database("tms_cfg")?;
    let port = free_port();
    let good = dir.join("tms.env");
    std::fs::write(
        &good,
        format!(
            "# TMS settings\nDATABASE_URL={database_url}\nexport REDIS_URL=\"{redis}\"\nTMS_LISTEN=127.0.0.1:{port}\n\
             TMS_JWT_SECRET='config-file-secret-config-file-secret-0123'\nTMS_QUEUE=q-config\n"
        ),
    )?;
    let mut api = Command::new(bin_dir().join("tms-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMS_CONFIG", &good)
        .envs(tms_tests::coverage_env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            break true;
        }
        if Instant::now() > deadline || api.try_wait()?.is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stopped gracefully, so an instrumented api writes its coverage profile.
    tms_tests::Proc {
        name: "api",
        child: api,
        log: Default::default(),
        killed: false,
    }
    .stop(tms_tests::STOP_TIMEOUT);
    assert!(
        ready,
        "the api did not come up on the port from the config file"
    );

    let bad = dir.join("bad.env");
    std::fs::write(&bad, "TMS_LISTEN=127.0.0.1:1\nTMS_LISTNE=oops\n")?;
    let out = Command::new(bin_dir().join("tms-api"))
        .env_clear()
        .env("TMS_CONFIG", &bad)
        .envs(tms_tests::coverage_env())
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.env:2: unknown setting `TMS_LISTNE`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
