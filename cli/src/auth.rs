//! `tms login` and `tms logout`: a local account's (or, with `--sso`, a single sign-on) session
//! saved in the token file.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::api::{Failure, exit, post_public};
use crate::import::report_failure;
use crate::session::Saved;

pub const LOGIN_HELP: &str = "Examples:
  tms login --email admin@localhost                  # prompts for the password
  echo \"$PASSWORD\" | tms login --email admin@localhost --password-stdin
  TMS_URL=https://tms.example.com tms login --email me@example.com
  TMS_URL=https://tms.example.com tms login --sso    # single sign-on in the browser
  tms login --sso --no-browser --timeout 120         # print the URL, open it yourself

The access and refresh tokens are saved in ~/.config/tms/token (or
$XDG_CONFIG_HOME/tms/token) with mode 0600; later commands refresh the access token
when it has expired. TMS_TOKEN, when set, is used instead of the saved session.

--sso listens once on 127.0.0.1 (a random port) for the browser to come back from the
api's identity provider, so the browser must run on the same machine (over SSH, forward
the port or use an API token). Exit codes: 4 sign-in refused or the answer did not match
this login (state), 6 single sign-on not configured on the api, 7 no sign-in within
--timeout or the api unreachable.";

pub const LOGOUT_HELP: &str = "Example:
  tms logout        # ends the session at the api and deletes the token file";

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Sign in through the browser (single sign-on) instead of with a password.
    #[arg(long, conflicts_with = "password_stdin")]
    pub sso: bool,
    /// With --sso: print the sign-in URL instead of opening a browser.
    #[arg(long, requires = "sso")]
    pub no_browser: bool,
    /// With --sso: seconds to wait for the browser to come back [default: 300].
    #[arg(long, requires = "sso", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: Option<u64>,
}

fn http() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Failure::other("INTERNAL", e.to_string()))
}

fn read_line(prompt: &str) -> Result<String, Failure> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::other("READ", format!("reading stdin: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The password: stdin's first line, TMS_PASSWORD, or a prompt without echo.
fn password(args: &LoginArgs) -> Result<String, Failure> {
    if args.password_stdin {
        return read_line("");
    }
    if let Ok(p) = std::env::var("TMS_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to ask the password on: use --password-stdin",
        ));
    }
    rpassword::prompt_password("Password: ")
        .map_err(|e| Failure::other("READ", format!("reading the password: {e}")))
}

pub async fn login(url: &str, email: Option<String>, args: &LoginArgs) -> i32 {
    match try_login(url, email, args).await {
        Ok(()) => exit::OK,
        Err(f) => {
            report_failure(&f, crate::import::Output::Table, &[]);
            f.exit
        }
    }
}

async fn try_login(url: &str, email: Option<String>, args: &LoginArgs) -> Result<(), Failure> {
    let url = url.trim_end_matches('/');
    if args.sso {
        let wait = args.timeout.unwrap_or(crate::sso::DEFAULT_TIMEOUT_SECS);
        return crate::sso::login(url, !args.no_browser, Duration::from_secs(wait)).await;
    }
    let email = match email {
        Some(e) => e,
        None if args.password_stdin => {
            return Err(Failure::usage("give --email with --password-stdin"));
        }
        None => read_line("Email: ")?,
    };
    let password = password(args)?;
    let data = post_public(
        &http()?,
        url,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) \
         { accessToken refreshToken expiresIn } }",
        json!({"e": email, "p": password}),
    )
    .await?;
    let saved = Saved::from_payload(url, &email, &data["login"])?;
    let path = saved.store()?;
    println!(
        "Logged in to {url} as {email}; session saved in {}",
        path.display()
    );
    Ok(())
}

pub async fn logout(url: &str) -> i32 {
    let saved = match Saved::load() {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!("Not logged in.");
            return exit::OK;
        }
        Err(f) => {
            report_failure(&f, crate::import::Output::Table, &[]);
            return f.exit;
        }
    };
    if let (Some(refresh), Ok(http)) = (&saved.refresh_token, http()) {
        // An already-ended session is fine: the file goes either way.
        let ended = post_public(
            &http,
            url.trim_end_matches('/'),
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({"t": refresh}),
        )
        .await;
        if let Err(f) = ended
            && f.code != "UNAUTHENTICATED"
        {
            eprintln!("warning: the api did not end the session: {f}");
        }
    }
    match Saved::remove() {
        Ok(_) => {
            println!("Logged out of {}.", saved.url);
            exit::OK
        }
        Err(f) => {
            report_failure(&f, crate::import::Output::Table, &[]);
            f.exit
        }
    }
}
