//! `tms tokens create|list|revoke`: API tokens for service accounts (admins only).

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::api::{Api, Failure, exit};
use crate::import::{Output, OutputArg, text};
use crate::table::Table;

pub const TOKENS_HELP: &str = "Examples:
  tms tokens create grafana-poller --role monitor --expires-in-days 90
  tms tokens list
  tms tokens revoke 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d

The secret is printed once by `create`; send it as `Authorization: Bearer <token>` or set
TMS_TOKEN for the CLI.";

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Role {
    Admin,
    Maintainer,
    Operator,
    Viewer,
    Auditor,
    Monitor,
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Create a token holding one role; prints its secret once.
    #[command(
        after_help = "Example:\n  tms tokens create ci-trigger --role operator --expires-in-days 30"
    )]
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Days until it expires (default: never).
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        out: OutputArg,
    },
    /// List live (not revoked) tokens, newest first.
    #[command(after_help = "Example:\n  tms tokens list --output json")]
    List {
        #[command(flatten)]
        out: OutputArg,
    },
    /// Revoke a token: refused from the next request on.
    #[command(after_help = "Example:\n  tms tokens revoke 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d")]
    Revoke {
        id: String,
        #[command(flatten)]
        out: OutputArg,
    },
}

impl TokensCmd {
    pub fn output(&self) -> Output {
        match self {
            TokensCmd::Create { out, .. }
            | TokensCmd::List { out }
            | TokensCmd::Revoke { out, .. } => out.output,
        }
    }
}

const FIELDS: &str = "id name role createdAt expiresAt lastUsedAt";

pub async fn run(api: Api, cmd: &TokensCmd) -> Result<i32, Failure> {
    let json_out = cmd.output() == Output::Json;
    match cmd {
        TokensCmd::Create {
            name,
            role,
            expires_in_days,
            ..
        } => {
            let role = role
                .to_possible_value()
                .map(|v| v.get_name().to_uppercase())
                .unwrap_or_default();
            let q = format!(
                "mutation($n: String!, $r: Role!, $d: Int) {{ createApiToken(name: $n, role: $r, \
                 expiresInDays: $d) {{ token apiToken {{ {FIELDS} }} }} }}"
            );
            let d = api
                .gql(&q, json!({"n": name, "r": role, "d": expires_in_days}))
                .await?;
            let p = &d["createApiToken"];
            if json_out {
                println!("{p}");
            } else {
                println!("{}", text(&p["token"]));
                eprintln!(
                    "token {} ({}, {}) created; the secret above is shown only once",
                    text(&p["apiToken"]["id"]),
                    text(&p["apiToken"]["name"]),
                    text(&p["apiToken"]["role"])
                );
            }
        }
        TokensCmd::List { .. } => {
            let d = api
                .gql(&format!("{{ apiTokens {{ {FIELDS} }} }}"), json!({}))
                .await?;
            let tokens = d["apiTokens"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", Value::Array(tokens));
            } else {
                let mut t = Table::new(&["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED"]);
                for k in &tokens {
                    t.row(
                        ["id", "name", "role", "createdAt", "expiresAt", "lastUsedAt"]
                            .iter()
                            .map(|f| text(&k[*f]))
                            .collect(),
                    );
                }
                print!("{}", t.render());
            }
        }
        TokensCmd::Revoke { id, .. } => {
            let d = api
                .gql(
                    "mutation($id: ID!) { revokeApiToken(id: $id) }",
                    json!({"id": id}),
                )
                .await?;
            let revoked = d["revokeApiToken"] == true;
            if json_out {
                println!("{}", json!({"id": id, "revoked": revoked}));
            } else if revoked {
                println!("token {id} revoked");
            } else {
                println!("token {id} was already revoked");
            }
        }
    }
    Ok(exit::OK)
}
