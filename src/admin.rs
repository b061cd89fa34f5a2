//! `wxlogin admin …`: the operator's command, on the same binary and configuration as the
//! server (it reads the same environment and opens the same database).
//!
//! ```text
//! wxlogin admin user show <openid|user-id>      profile, status, sessions, last logins
//! wxlogin admin user disable <openid|user-id>   revoke every session; logins answer 403
//! wxlogin admin user enable <openid|user-id>    logging in works again
//! wxlogin admin user delete <openid|user-id>    erase now, no grace
//! wxlogin admin sessions revoke <openid|user-id>
//! wxlogin admin stats
//! ```
//!
//! Plain text by default, one JSON object with `--json` (anywhere on the line). Exit codes: 0
//! done, 1 not found, 2 usage (or configuration), 3 the database failed. Secrets (session_key,
//! refresh tokens, the phone number) are never printed. Servers see a revocation made here
//! within `WXLOGIN_REVOCATION_DELAY`.

use crate::account::AccountService;
use crate::app;
use crate::clock::{self, rfc3339};
use crate::config::Config;
use crate::error::Error;
use crate::session::SessionService;
use crate::store::{Account, RevokeReason, UserStore};
use crate::token::TokenIssuer;
use crate::wechat::WechatClient;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;

/// How many logins `user show` lists.
const SHOWN_LOGINS: usize = 10;

const USAGE: &str = "usage: wxlogin admin [--json] <command>
  user show <openid|user-id>
  user disable <openid|user-id>
  user enable <openid|user-id>
  user delete <openid|user-id>      (erases the account now, no grace period)
  sessions revoke <openid|user-id>
  stats";

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Show(String),
    Disable(String),
    Enable(String),
    Delete(String),
    RevokeSessions(String),
    Stats,
}

/// How a command ended, as the exit code says.
enum Outcome {
    Done(Value, String),
    NotFound(String),
}

/// Parses `args` (after `admin`): the command and whether `--json` was given.
fn parse(args: &[String]) -> Result<(Command, bool), String> {
    let json = args.iter().any(|a| a == "--json");
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--json")
        .collect();
    if let Some(unknown) = words.iter().find(|w| w.starts_with("--")) {
        return Err(format!("unknown option {unknown}"));
    }
    let id = |id: &str| id.to_string();
    let command = match words.as_slice() {
        ["user", "show", who] => Command::Show(id(who)),
        ["user", "disable", who] => Command::Disable(id(who)),
        ["user", "enable", who] => Command::Enable(id(who)),
        ["user", "delete", who] => Command::Delete(id(who)),
        ["sessions", "revoke", who] => Command::RevokeSessions(id(who)),
        ["stats"] => Command::Stats,
        _ => return Err("unknown command".into()),
    };
    Ok((command, json))
}

/// Runs `wxlogin admin <args>`; the process's exit code.
pub fn main(args: &[String]) -> ExitCode {
    let (command, json) = match parse(args) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("wxlogin admin: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("wxlogin admin: configuration: {message}");
            return ExitCode::from(2);
        }
    };
    let store = match app::open_store(&config) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("wxlogin admin: {e}");
            return ExitCode::from(3);
        }
    };
    match run(&config, store, &command) {
        Ok(Outcome::Done(value, text)) => {
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Ok(Outcome::NotFound(who)) => {
            if json {
                println!("{}", json!({ "error": "not_found", "user": who }));
            }
            eprintln!("wxlogin admin: no user has the openid or user id {who:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("wxlogin admin: {e}");
            ExitCode::from(3)
        }
    }
}

fn run(config: &Config, store: Arc<dyn UserStore>, command: &Command) -> Result<Outcome, Error> {
    let tokens = Arc::new(TokenIssuer::new(&config.jwt));
    let sessions = Arc::new(SessionService::new(
        store.clone(),
        tokens,
        config.sessions.clone(),
        &config.jwt.secret,
    ));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let accounts = AccountService::new(
        store.clone(),
        sessions,
        WechatClient::new(config.wechat.clone(), metrics),
        config.accounts.deletion_grace,
    );
    let now = clock::now();
    if let Command::Stats = command {
        let stats = store.stats(now)?;
        let text = format!(
            "users: {}\ndisabled users: {}\ndeletions pending: {}\nactive sessions: {}\nlogins in the last hour: {}\nlogins in the last day: {}",
            stats.users,
            stats.disabled_users,
            stats.deletions_pending,
            stats.active_sessions,
            stats.logins_last_hour,
            stats.logins_last_day
        );
        return Ok(Outcome::Done(json!(stats), text));
    }
    let who = match command {
        Command::Show(who)
        | Command::Disable(who)
        | Command::Enable(who)
        | Command::Delete(who)
        | Command::RevokeSessions(who) => who,
        Command::Stats => unreachable!("answered above"),
    };
    let Some(account) = store.find_account(who)? else {
        return Ok(Outcome::NotFound(who.clone()));
    };
    let uid = account.uid.clone();
    let done = |action: &str, extra: Value, text: String| {
        let mut value = json!({ "user_id": uid, "action": action });
        if let (Value::Object(value), Value::Object(extra)) = (&mut value, extra) {
            value.extend(extra);
        }
        Outcome::Done(value, text)
    };
    Ok(match command {
        Command::Show(_) => show(&*store, &account, now)?,
        Command::Disable(_) | Command::Enable(_) => {
            let disable = matches!(command, Command::Disable(_));
            let revoked = accounts.set_disabled(&uid, disable)?.unwrap_or(0);
            let action = if disable { "disabled" } else { "enabled" };
            done(
                action,
                json!({ "sessions_revoked": revoked }),
                format!("user {uid} {action} ({revoked} session(s) revoked)"),
            )
        }
        Command::Delete(_) => {
            if !accounts.erase_now(&uid)? {
                return Ok(Outcome::NotFound(who.clone()));
            }
            done("erased", json!({}), format!("user {uid} erased"))
        }
        Command::RevokeSessions(_) => {
            let revoked = store.revoke_user_sessions(&uid, now, RevokeReason::Admin)?;
            done(
                "sessions_revoked",
                json!({ "sessions_revoked": revoked.len() }),
                format!("{} session(s) of user {uid} revoked", revoked.len()),
            )
        }
        Command::Stats => unreachable!("answered above"),
    })
}

/// `user show`: the account, its live sessions and its last logins.
fn show(store: &dyn UserStore, account: &Account, now: i64) -> Result<Outcome, Error> {
    let sessions = store.list_sessions(&account.uid, now)?;
    let logins = store.list_logins(&account.uid, SHOWN_LOGINS)?;
    let status = if account.disabled {
        "disabled"
    } else {
        "active"
    };
    let value = json!({
        "user_id": account.uid,
        "openid": account.openid,
        "unionid": account.unionid,
        "status": status,
        "erase_at": account.erase_at.map(rfc3339),
        "profile": {
            "nickName": account.profile.nick_name,
            "avatarUrl": account.profile.avatar_url,
            "gender": account.profile.gender,
            "phone_bound": account.has_phone,
        },
        "sessions": sessions.iter().map(|s| json!({
            "id": s.id,
            "created_at": rfc3339(s.created_at),
            "last_used_at": rfc3339(s.last_used_at),
            "expires_at": rfc3339(s.expires_at),
            "ip": s.ip,
            "user_agent": s.user_agent,
        })).collect::<Vec<_>>(),
        "logins": logins.iter().map(|l| json!({
            "at": rfc3339(l.at),
            "kind": l.kind,
            "session_id": l.session_id,
            "ip": l.ip,
            "user_agent": l.user_agent,
        })).collect::<Vec<_>>(),
    });
    let mut text = format!(
        "user_id:  {}\nopenid:   {}\nunionid:  {}\nstatus:   {status}\ndeletion: {}\nnickname: {}\navatar:   {}\ngender:   {}\nphone:    {}\n",
        account.uid,
        account.openid,
        account.unionid.as_deref().unwrap_or("-"),
        account
            .erase_at
            .map_or("-".to_string(), |at| format!("scheduled for {}", rfc3339(at))),
        account.profile.nick_name.as_deref().unwrap_or("-"),
        account.profile.avatar_url.as_deref().unwrap_or("-"),
        account
            .profile
            .gender
            .map_or("-".to_string(), |g| g.to_string()),
        if account.has_phone { "bound" } else { "-" },
    );
    text.push_str(&format!("sessions ({} live):\n", sessions.len()));
    for s in &sessions {
        text.push_str(&format!(
            "  {}  since {}  last used {}  {}  {}\n",
            s.id,
            rfc3339(s.created_at),
            rfc3339(s.last_used_at),
            s.ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("-"),
        ));
    }
    text.push_str(&format!("last logins ({}):\n", logins.len()));
    for l in &logins {
        text.push_str(&format!(
            "  {}  {:<7}  {}  {}  {}\n",
            rfc3339(l.at),
            l.kind,
            l.session_id,
            l.ip.as_deref().unwrap_or("-"),
            l.user_agent.as_deref().unwrap_or("-"),
        ));
    }
    Ok(Outcome::Done(value, text.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_parse_and_anything_else_is_a_usage_error() {
        let cases: &[(&str, Option<(Command, bool)>)] = &[
            ("user show o-1", Some((Command::Show("o-1".into()), false))),
            (
                "--json user show o-1",
                Some((Command::Show("o-1".into()), true)),
            ),
            (
                "user disable u",
                Some((Command::Disable("u".into()), false)),
            ),
            (
                "user enable u --json",
                Some((Command::Enable("u".into()), true)),
            ),
            ("user delete u", Some((Command::Delete("u".into()), false))),
            (
                "sessions revoke u",
                Some((Command::RevokeSessions("u".into()), false)),
            ),
            ("stats", Some((Command::Stats, false))),
            ("", None),
            ("user show", None),
            ("user show a b", None),
            ("user erase u", None),
            ("stats --verbose", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(&args(line)).ok(), *expected, "{line:?}");
        }
    }
}
