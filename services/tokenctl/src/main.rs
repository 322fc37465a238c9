//! `tokenctl`: the operator's command line over a token node's admin API.
//!
//! Exit codes a script can use: 0 done; 1 the service refused (a 4xx: wrong input, unknown id,
//! bad admin token), with its `error_description` on stderr; 2 a usage error; 3 the service was
//! unavailable or unreachable (a 5xx or no connection: retrying may help).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "tokenctl",
    about = "Operate a tokend cluster through its admin API."
)]
struct Cli {
    /// The token node's base URL.
    #[arg(
        long,
        global = true,
        env = "TOKENCTL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The admin bearer token.
    #[arg(long, global = true, env = "TOKENCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the admin bearer token.
    #[arg(long, global = true, env = "TOKENCTL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the service's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        action: Keys,
    },
    /// The key-encryption key.
    Kek {
        #[command(subcommand)]
        action: KekAction,
    },
    /// OAuth clients.
    Clients {
        #[command(subcommand)]
        action: Clients,
    },
    /// Users.
    Users {
        #[command(subcommand)]
        action: Users,
    },
    /// "Log out everywhere": revoke every token of a subject issued up to now.
    RevokeSubject { sub: String },
}

#[derive(Subcommand)]
enum Keys {
    /// The adopted keys and their state.
    List,
    /// Rotate ahead of the schedule: the next key is published now and signs a publication
    /// lead later (no verifier meets a key it cannot know).
    Rotate,
    /// Emergency: withdraw a key everywhere; what it signed stops verifying.
    Revoke {
        /// A key id may begin with `-` (base64url): taken as the id, not as an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand)]
enum KekAction {
    /// Re-seal the secrets root and the keys in use under the node's KEK (after giving every
    /// node the new KEK as keys.kek_file and the old one as keys.previous_kek_file).
    Rotate,
}

#[derive(Subcommand)]
enum Clients {
    List,
    /// Register a client; its secret is printed once.
    Register {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        /// A grant type it may use (repeat the flag for more).
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// No secret (browser and mobile apps; code flow only).
        #[arg(long)]
        public: bool,
    },
    Disable {
        id: String,
    },
    /// Revoke every token the client holds.
    RevokeTokens {
        id: String,
    },
}

#[derive(Subcommand)]
enum Users {
    /// Create a user; the password is read from standard input.
    Create {
        username: String,
    },
    Disable {
        username: String,
    },
}

/// Why a command failed, and its exit code.
enum Failure {
    Refused(String),
    Unavailable(String),
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unavailable(format!("cannot reach {}: {e}", self.url)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let described = || {
            body["error_description"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_owned)
        };
        if status.is_server_error() {
            Err(Failure::Unavailable(described()))
        } else if status.is_client_error() {
            Err(Failure::Refused(described()))
        } else if status == StatusCode::NO_CONTENT {
            Ok(json!({}))
        } else {
            Ok(body)
        }
    }
}

fn admin_token(cli: &Cli) -> Result<String, Failure> {
    match (&cli.token, &cli.token_file) {
        (Some(t), None) => Ok(t.trim().to_owned()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_owned())
            .map_err(|e| Failure::Refused(format!("cannot read {}: {e}", f.display()))),
        (Some(_), Some(_)) => Err(Failure::Refused("give --token or --token-file, not both".into())),
        (None, None) => Err(Failure::Refused(
            "the admin token is needed: --token, --token-file, TOKENCTL_TOKEN or TOKENCTL_TOKEN_FILE".into(),
        )),
    }
}

/// One line per element of a JSON array (nothing for anything else).
fn lines(list: &Value, line: impl Fn(&Value) -> String) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the command; returns what to print.
async fn run(cli: &Cli) -> Result<(Value, String), Failure> {
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Unavailable(e.to_string()))?,
        url: cli.url.clone(),
        token: admin_token(cli)?,
    };
    let done = |v: Value| (v, "done".to_owned());
    Ok(match &cli.command {
        Command::Keys { action: Keys::List } => {
            let v = api.call(Method::GET, "/admin/keys", None).await?;
            let keys = lines(&v["keys"], |k| {
                format!(
                    "{}  epoch {}  {}",
                    k["kid"].as_str().unwrap_or_default(),
                    k["epoch"],
                    k["state"].as_str().unwrap_or("unpublished")
                )
            });
            let summary = format!(
                "{keys}\nkey log sealed under KEK {}",
                v["kek"].as_str().unwrap_or("?")
            );
            (v, summary)
        }
        Command::Keys {
            action: Keys::Rotate,
        } => {
            let v = api.call(Method::POST, "/admin/keys/rotate", None).await?;
            let summary = format!(
                "next key {} signs from {} (Unix seconds)",
                v["next_kid"].as_str().unwrap_or_default(),
                v["signs_from"]
            );
            (v, summary)
        }
        Command::Kek {
            action: KekAction::Rotate,
        } => {
            let v = api.call(Method::POST, "/admin/kek/rotate", None).await?;
            let summary = format!(
                "{} keys and the secrets root re-sealed under KEK {}; the previous KEK may now be dropped",
                v["resealed_keys"],
                v["kek"].as_str().unwrap_or_default()
            );
            (v, summary)
        }
        Command::Keys {
            action: Keys::Revoke { kid },
        } => done(
            api.call(Method::POST, &format!("/admin/keys/{kid}/revoke"), None)
                .await?,
        ),
        Command::Clients {
            action: Clients::List,
        } => {
            let v = api.call(Method::GET, "/admin/clients", None).await?;
            let summary = lines(&v, |c| {
                format!(
                    "{}  {}{}",
                    c["client_id"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default(),
                    if c["disabled"] == true {
                        "  (disabled)"
                    } else {
                        ""
                    }
                )
            });
            (v, summary)
        }
        Command::Clients {
            action:
                Clients::Register {
                    id,
                    name,
                    grants,
                    scopes,
                    audiences,
                    redirect_uris,
                    public,
                },
        } => {
            let body = json!({
                "client_id": id, "name": name, "grant_types": grants, "scopes": scopes,
                "audiences": audiences, "redirect_uris": redirect_uris, "public": public,
            });
            let v = api.call(Method::POST, "/admin/clients", Some(body)).await?;
            let summary = format!(
                "client_id      {}\nclient_secret  {}",
                v["client"]["client_id"].as_str().unwrap_or_default(),
                v["client_secret"]
                    .as_str()
                    .unwrap_or("(none: public client)")
            );
            (v, summary)
        }
        Command::Clients {
            action: Clients::Disable { id },
        } => done(
            api.call(Method::POST, &format!("/admin/clients/{id}/disable"), None)
                .await?,
        ),
        Command::Clients {
            action: Clients::RevokeTokens { id },
        } => done(
            api.call(
                Method::POST,
                &format!("/admin/clients/{id}/revoke-tokens"),
                None,
            )
            .await?,
        ),
        Command::Users {
            action: Users::Create { username },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| Failure::Refused(format!("cannot read the password: {e}")))?;
            let body = json!({ "username": username, "password": password.trim_end_matches(['\r', '\n']) });
            done(api.call(Method::POST, "/admin/users", Some(body)).await?)
        }
        Command::Users {
            action: Users::Disable { username },
        } => done(
            api.call(
                Method::POST,
                &format!("/admin/users/{username}/disable"),
                None,
            )
            .await?,
        ),
        Command::RevokeSubject { sub } => done(
            api.call(Method::POST, &format!("/admin/subjects/{sub}/revoke"), None)
                .await?,
        ),
    })
}

#[tokio::main(flavor = "current_thread")]
#[allow(clippy::print_stdout, clippy::print_stderr)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok((value, summary)) => {
            if cli.json {
                println!("{value}");
            } else {
                println!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Refused(why)) => {
            eprintln!("tokenctl: refused: {why}");
            ExitCode::from(1)
        }
        Err(Failure::Unavailable(why)) => {
            eprintln!("tokenctl: unavailable: {why}");
            ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command, Keys};

    #[test]
    fn a_key_id_that_begins_with_a_hyphen_is_taken_as_the_id() {
        let cli = Cli::try_parse_from(["tokenctl", "keys", "revoke", "-rXy0"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys { action: Keys::Revoke { kid } } if kid == "-rXy0"
        ));
    }
}
