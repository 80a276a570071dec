//! `tollgate token add|list|revoke`: the team server's bearer tokens, kept in the file
//! beside an SQLite store or, with `--database`, in the database every replica reads.

use super::{CliError, to_json, write_out};
use crate::cli::args::TokenCommand;
use crate::config::Paths;
use crate::server::tokens::{self, DatabaseTokenError, TokenEntry, TokenError, Tokens};
use crate::store::pg::PgStore;
use chrono::{DateTime, Utc};
use std::io::Write;

/// Where the tokens are, as messages name it.
enum Place {
    File(std::path::PathBuf),
    Database(PgStore),
}

impl Place {
    fn of(paths: &Paths) -> Result<Place, CliError> {
        Ok(match &paths.database {
            Some(url) => Place::Database(PgStore::open(url)?),
            None => Place::File(tokens::tokens_beside(&paths.store)),
        })
    }

    fn name(&self) -> String {
        match self {
            Place::File(f) => f.display().to_string(),
            Place::Database(db) => format!("the {}", db.location().display()),
        }
    }
}

fn token_error(e: TokenError) -> CliError {
    match e {
        TokenError::Write { .. } => CliError::environment(e.to_string()),
        _ => CliError::refused(e.to_string()),
    }
}

fn database_error(e: DatabaseTokenError) -> CliError {
    match e {
        DatabaseTokenError::Token(t) => token_error(t),
        DatabaseTokenError::Store(s) => s.into(),
    }
}

/// Runs one `token` subcommand.
pub fn run(
    paths: &Paths,
    command: TokenCommand,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let place = Place::of(paths)?;
    match command {
        TokenCommand::List { json } => {
            let entries: Vec<TokenEntry> = match &place {
                Place::File(file) => match Tokens::load(file) {
                    Ok(t) => t.entries().to_vec(),
                    Err(TokenError::Read { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Vec::new()
                    }
                    Err(e) => return Err(CliError::refused(e.to_string())),
                },
                Place::Database(db) => db.tokens()?,
            };
            if json {
                return write_out(out, &to_json(&entries)?);
            }
            let mut text = format!("{:<13} {:<12} {:<25} LABEL\n", "ID", "PRINCIPAL", "CREATED");
            for e in &entries {
                text.push_str(&format!(
                    "{:<13} {:<12} {:<25} {}\n",
                    e.id,
                    e.principal,
                    e.created.as_deref().unwrap_or("—"),
                    crate::domain::text::sanitize(&e.label)
                ));
            }
            text.push_str(&format!("{} token(s) in {}\n", entries.len(), place.name()));
            write_out(out, &text)
        }
        TokenCommand::Revoke { id } => {
            let gone = match &place {
                Place::File(file) => tokens::revoke(file, &id).map_err(token_error)?,
                Place::Database(db) => {
                    tokens::revoke_in_database(db, &id).map_err(database_error)?
                }
            };
            write_out(
                out,
                &format!(
                    "revoked token {} of {} ({}); a running server refuses it from its next request\n",
                    gone.id,
                    gone.principal,
                    crate::domain::text::sanitize(&gone.label)
                ),
            )
        }
        TokenCommand::Add { principal, label } => {
            let (token, _) = match &place {
                Place::File(file) => {
                    tokens::add(file, &principal, &label, now).map_err(token_error)?
                }
                Place::Database(db) => {
                    tokens::add_to_database(db, &principal, &label, now).map_err(database_error)?
                }
            };
            write_out(
                out,
                &format!(
                    "token for {principal} (shown once; only its hash is kept in {}):\n{token}\n\nclients use it as TOLLGATE_TOKEN={token} tollgate --remote URL ...\n",
                    place.name()
                ),
            )
        }
    }
}
