//! The cluster phase (issue 11; `--only cluster`): three wxlogin nodes with one `JWT_SECRET` on
//! one MariaDB database, behind nginx, and one node killed with SIGKILL while clients log in
//! through nginx. Then it checks what "no lost login" means for a client: every login answered
//! 200 has its user row and its session, and its token is accepted by every node left; every
//! other answer is a clean status (no hang) that the client can retry, and is few (the logins
//! the dead node had in flight). And "no token accepted after its logout": a sample of sessions
//! logged out through nginx has its refresh tokens refused at once and its access tokens
//! refused by every node left within `WXLOGIN_REVOCATION_DELAY`. MariaDB is never stopped here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use mysql::prelude::Queryable;
use ureq::http::Response;
use ureq::{Agent, Body};

use wxlogin_tools::bounded;
use wxlogin_tools::children::{describe_exit, ChildProc};
use wxlogin_tools::database::connect;
use wxlogin_tools::markdown::{short, Table};
use wxlogin_tools::ports::free_port;
use wxlogin_tools::signals::check_interrupt;

use crate::drill::{random_hex, start_mock, Paths, WxloginEnv, READY_LIMIT};
use crate::load::Answer;
use crate::report::{label, Check, Verdict};
use crate::{mariadb, nginx};

/// The nodes, and which one is killed (the middle one of nginx's round robin).
const NODES: usize = 3;
const KILLED: usize = 1;
/// Clients logging in through nginx, each at most one login per period (≤ 200 logins/s in
/// all): enough that the killed node has logins in flight, little enough for two cores.
const CLIENTS: usize = 6;
const PERIOD: Duration = Duration::from_millis(30);
/// How long the clients log in before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_secs(3);
const AFTER_KILL: Duration = Duration::from_secs(4);
/// A request with no answer within this is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The nodes' `WXLOGIN_REVOCATION_DELAY`: short, so the phase stays short.
const REVOCATION_DELAY: Duration = Duration::from_secs(1);
/// How much later than the delay a revoked token may still be accepted somewhere (the time
/// it takes to look at every node once), and the bound on waiting for it.
const REVOCATION_SLACK: Duration = Duration::from_secs(1);
const REVOCATION_LIMIT: Duration = Duration::from_secs(5);
/// How many sessions are logged out, and how many others must still be accepted after.
const LOGOUTS: usize = 50;
/// Largest answer body read.
const BODY_LIMIT: u64 = 64 * 1024;

/// What the phase found: its table (with a line on its setup) and its checks.
pub struct Cluster {
    pub table: String,
    pub checks: Vec<Check>,
}

/// A session a login (or its retry) got: the tokens, and the ids the access token names.
#[derive(Clone)]
struct Session {
    access: String,
    refresh: String,
    uid: String,
    sid: String,
}

/// One login through nginx.
struct Login {
    code: String,
    sent_at: Instant,
    latency: Duration,
    answer: Answer,
    /// For a 200 whose answer carried readable tokens.
    session: Option<Session>,
}

/// A keep-alive client for plain HTTP with every wait bounded, reading error answers as
/// answers.
fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_TIMEOUT))
        .timeout_connect(Some(Duration::from_secs(2)))
        .max_redirects(0)
        .build()
        .into()
}

/// An exchange's answer, with the body read (so the connection is reused) and returned.
fn answered(result: Result<Response<Body>, ureq::Error>) -> (Answer, String) {
    match result {
        Ok(mut response) => {
            let body = response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string()
                .unwrap_or_default();
            (Answer::Status(response.status().as_u16()), body)
        }
        Err(ureq::Error::Timeout(_)) => (Answer::Timeout, String::new()),
        Err(_) => (Answer::Failed, String::new()),
    }
}

fn login(agent: &Agent, base: &str, code: &str) -> Login {
    let sent_at = Instant::now();
    let (answer, body) = answered(
        agent
            .post(format!("{base}/api/wxuser"))
            .send_form([("code", code)]),
    );
    Login {
        code: code.to_owned(),
        sent_at,
        latency: sent_at.elapsed(),
        answer,
        session: (answer == Answer::Status(200))
            .then(|| session_of(&body))
            .flatten(),
    }
}

/// The tokens of a login answer and the `sub` and `sid` of its access token (read without
/// checking the signature: the nodes check it).
fn session_of(body: &str) -> Option<Session> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    let access = answer.get("access_token")?.as_str()?.to_owned();
    let refresh = answer.get("refresh_token")?.as_str()?.to_owned();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(access.split('.').nth(1)?)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(Session {
        uid: claims.get("sub")?.as_str()?.to_owned(),
        sid: claims.get("sid")?.as_str()?.to_owned(),
        access,
        refresh,
    })
}

/// `GET /auth/verify` on `base` with the session's access token: 204 accepted, 401 refused.
fn verify(agent: &Agent, base: &str, session: &Session) -> Answer {
    answered(
        agent
            .get(format!("{base}/auth/verify"))
            .header("Authorization", format!("Bearer {}", session.access))
            .call(),
    )
    .0
}

/// `POST /api/token/refresh` on `base` with the session's refresh token.
fn refresh(agent: &Agent, base: &str, session: &Session) -> Answer {
    answered(
        agent
            .post(format!("{base}/api/token/refresh"))
            .send_form([("refresh_token", session.refresh.as_str())]),
    )
    .0
}

/// `POST /api/logout` on `base` with the session's access token.
fn logout(agent: &Agent, base: &str, session: &Session) -> Answer {
    answered(
        agent
            .post(format!("{base}/api/logout"))
            .header("Authorization", format!("Bearer {}", session.access))
            .send_empty(),
    )
    .0
}

/// Sets the flag when dropped: the clients stop also when the phase fails half-way.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One client's loop: a login with a fresh code every [`PERIOD`] (no catching up after a slow
/// answer) until `stop`.
fn drive(base: &str, client: usize, run_id: &str, stop: &AtomicBool, logins: &Mutex<Vec<Login>>) {
    let agent = agent();
    let mut next = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(5)));
            continue;
        }
        next = (next + PERIOD).max(now);
        n += 1;
        let done = login(&agent, base, &format!("k{client}_{n}.{run_id}"));
        logins.lock().unwrap_or_else(|e| e.into_inner()).push(done);
    }
}

/// The phase: servers up, load, kill, checks; everything stopped and the database dropped at
/// the end, on errors too.
pub fn run(paths: &Paths) -> Result<Cluster, String> {
    let commands_log = paths.logs.join("commands.log");
    nginx::ensure_installed(&commands_log)?;
    mariadb::ensure_running(&commands_log)?;
    let db = mariadb::create_database()?;
    let tmp = tempfile::Builder::new()
        .prefix("wxlogin-drill-cluster-")
        .tempdir()
        .map_err(|e| format!("no temporary folder: {e}"))?;
    let mock_port = free_port()?;
    let _mock = start_mock(paths, mock_port, 0)?;
    let env = WxloginEnv {
        paths,
        mock_port,
        database_url: db.url(),
        jwt_secret: random_hex(32)?,
        extra: vec![(
            "WXLOGIN_REVOCATION_DELAY",
            format!("{}s", REVOCATION_DELAY.as_secs()),
        )],
    };
    let mut nodes: Vec<(u16, ChildProc)> = Vec::new();
    for i in 0..NODES {
        let port = free_port()?;
        nodes.push((port, env.start(&format!("node{i}"), port, "/readyz")?));
    }
    let ports: Vec<u16> = nodes.iter().map(|(port, _)| *port).collect();
    let front_port = free_port()?;
    let access_log = paths.logs.join("cluster-nginx-access.log");
    let mut balancer = nginx::start_balancer(
        tmp.path(),
        front_port,
        &ports,
        &access_log,
        &paths.logs.join("cluster-nginx-error.log"),
    )?;
    let front = format!("http://127.0.0.1:{front_port}");
    let probe = agent();
    balancer.wait_ready(READY_LIMIT, || {
        answered(probe.get(format!("{front}/healthz")).call()).0 == Answer::Status(200)
    })?;
    println!(
        "cluster: nodes :{} (database {}), nginx :{front_port}; {CLIENTS} clients through nginx, \
         node{KILLED} killed -9 after {}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" :"),
        db.name().unwrap_or_default(),
        short(BEFORE_KILL)
    );

    // The load, and the kill in the middle of it.
    let run_id = random_hex(4)?;
    let stop = AtomicBool::new(false);
    let logins = Mutex::new(Vec::new());
    let (killed_at, exit) = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for client in 0..CLIENTS {
            let (front, run_id, stop, logins) = (&front, &run_id, &stop, &logins);
            scope.spawn(move || drive(front, client, run_id, stop, logins));
        }
        bounded::sleep(BEFORE_KILL)?;
        let killed_at = Instant::now();
        let exit = nodes[KILLED].1.kill();
        bounded::sleep(AFTER_KILL)?;
        Ok::<_, String>((killed_at, exit))
    })?;
    let mut logins = logins.into_inner().unwrap_or_else(|e| e.into_inner());
    logins.sort_by_key(|l| l.sent_at);
    let survivors: Vec<String> = ports
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != KILLED)
        .map(|(_, port)| format!("http://127.0.0.1:{port}"))
        .collect();

    let mut checks = vec![Check {
        verdict: Verdict::Info,
        text: format!(
            "cluster: node{KILLED} (of {NODES}) killed with SIGKILL {} into the load: {}; nginx \
             sent the logins to {}",
            short(BEFORE_KILL),
            exit.map_or("no exit status".into(), describe_exit),
            spread(&access_log, &ports)
        ),
    }];
    checks.push(failures_check(&logins, killed_at));
    checks.push(recovery_check(&logins, killed_at));

    // The failed logins retried once with their codes, as a client whose answer was lost would:
    // at once, side by side, and no more than one per client (more already failed the check).
    let retries: Vec<Login> = std::thread::scope(|scope| {
        let threads: Vec<_> = logins
            .iter()
            .filter(|l| l.answer != Answer::Status(200))
            .take(CLIENTS)
            .map(|l| scope.spawn(|| login(&agent(), &front, &l.code)))
            .collect();
        threads.into_iter().filter_map(|t| t.join().ok()).collect()
    });
    checks.push(retry_check(&retries));

    let sessions: Vec<&Session> = logins
        .iter()
        .chain(&retries)
        .filter_map(|l| l.session.as_ref())
        .collect();
    let unreadable = logins
        .iter()
        .chain(&retries)
        .filter(|l| l.answer == Answer::Status(200) && l.session.is_none())
        .count();
    checks.push(rows_check(&db.url(), &sessions, unreadable)?);
    checks.push(verify_check(&survivors, &sessions)?);
    checks.extend(logout_checks(&front, &survivors, &sessions)?);

    // Every node left is still the process it was.
    let mut dead = Vec::new();
    for (i, (_, node)) in nodes.iter_mut().enumerate() {
        if i != KILLED {
            if let Some(status) = node.exit_status() {
                dead.push(format!("node{i} {}", describe_exit(status)));
            }
        }
    }
    checks.push(check(
        dead.is_empty(),
        format!(
            "cluster: the {} other nodes are still running: {}",
            NODES - 1,
            if dead.is_empty() {
                "yes".into()
            } else {
                dead.join(", ")
            }
        ),
    ));
    Ok(Cluster {
        table: table(&logins, killed_at),
        checks,
    })
}

fn check(passed: bool, text: String) -> Check {
    let verdict = if passed { Verdict::Pass } else { Verdict::Fail };
    Check { verdict, text }
}

/// `200×12 502×3`.
fn breakdown<'a>(answers: impl Iterator<Item = &'a Answer>) -> String {
    let mut counts: BTreeMap<Answer, usize> = BTreeMap::new();
    for answer in answers {
        *counts.entry(*answer).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(answer, n)| format!("{}×{n}", label(*answer)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many requests nginx sent to each node (its access log's `$upstream_addr`), and how many
/// it passed on to another node because the first could not take them.
fn spread(access_log: &std::path::Path, ports: &[u16]) -> String {
    let text = std::fs::read_to_string(access_log).unwrap_or_default();
    let mut per_node = vec![0usize; ports.len()];
    let mut passed_on = 0;
    for line in text.lines().filter(|l| l.starts_with("POST /api/wxuser ")) {
        if line.contains(", ") {
            passed_on += 1;
        }
        let last = line.rsplit([' ', ',']).next().unwrap_or_default();
        if let Some(i) = ports.iter().position(|p| last.ends_with(&format!(":{p}"))) {
            per_node[i] += 1;
        }
    }
    let nodes: Vec<String> = per_node
        .iter()
        .enumerate()
        .map(|(i, n)| format!("node{i} {n}"))
        .collect();
    format!(
        "{} ({passed_on} passed on to another node after the first refused the connection)",
        nodes.join(", ")
    )
}

/// The logins that failed: only what the dead node had in flight (at most one per client),
/// each a clean 502 from nginx, none a hang.
fn failures_check(logins: &[Login], killed_at: Instant) -> Check {
    let failed: Vec<&Login> = logins
        .iter()
        .filter(|l| l.answer != Answer::Status(200))
        .collect();
    let slowest = failed.iter().map(|l| l.latency).max().unwrap_or_default();
    let clean = failed.iter().all(|l| l.answer == Answer::Status(502));
    let after_kill = failed.iter().filter(|l| l.sent_at > killed_at).count();
    check(
        clean && failed.len() <= CLIENTS && slowest < Duration::from_secs(2),
        format!(
            "cluster: {} of {} logins through nginx failed ({}), at most {CLIENTS} allowed (one in \
             flight per client), each a 502, slowest {}; {after_kill} of them sent after the kill",
            failed.len(),
            logins.len(),
            breakdown(failed.iter().map(|l| &l.answer)),
            short(slowest),
        ),
    )
}

/// Logins keep succeeding after the kill: some did, and the last second's all did.
fn recovery_check(logins: &[Login], killed_at: Instant) -> Check {
    let after: Vec<&Login> = logins.iter().filter(|l| l.sent_at > killed_at).collect();
    let ok_after = after
        .iter()
        .filter(|l| l.answer == Answer::Status(200))
        .count();
    let last_sent = logins.iter().map(|l| l.sent_at).max();
    let last_second: Vec<&Login> = logins
        .iter()
        .filter(|l| last_sent.is_some_and(|end| l.sent_at + Duration::from_secs(1) >= end))
        .collect();
    let all_ok =
        !last_second.is_empty() && last_second.iter().all(|l| l.answer == Answer::Status(200));
    check(
        ok_after > 0 && all_ok,
        format!(
            "cluster: logins go on after the kill: {ok_after} of {} answered 200, the last second \
             all 200: {} ({})",
            after.len(),
            if all_ok { "yes" } else { "no" },
            breakdown(last_second.iter().map(|l| &l.answer))
        ),
    )
}

/// The failed logins retried with their codes: a retry is answered, never hangs; a 200 is the
/// same user again (its rows are checked with the others), an error tells the client to get a
/// fresh code. A code the dead node had claimed waits until its claim lapses (wxlogin's wait
/// limit, 2 × `WECHAT_TIMEOUT` + 5 s after the claim), so a retry may take seconds.
fn retry_check(retries: &[Login]) -> Check {
    // 200, or a 4xx such as 401 `40163 code been used` (the dead node had spent the code at
    // WeChat but not recorded who it was): the client then asks wx.login() for a fresh code.
    let unclean = retries
        .iter()
        .filter(|l| !matches!(l.answer, Answer::Status(200 | 400..=499)))
        .count();
    let slowest = retries.iter().map(|l| l.latency).max().unwrap_or_default();
    check(
        unclean == 0,
        format!(
            "cluster: each failed login retried once with its code through nginx: {}, each 200 \
             or a clean 4xx (get a fresh code), slowest {} (a code the dead node had claimed \
             waits until the claim lapses)",
            breakdown(retries.iter().map(|l| &l.answer)),
            short(slowest)
        ),
    )
}

/// Every 200 has its user row and its session (not revoked), in the shared database.
fn rows_check(url: &str, sessions: &[&Session], unreadable: usize) -> Result<Check, String> {
    let mut conn = connect(url)?;
    let uids: HashSet<String> = conn
        .query("SELECT uid FROM wxuser")
        .map_err(|e| format!("SELECT uid FROM wxuser: {e}"))?
        .into_iter()
        .collect();
    let stored: HashMap<String, (String, bool)> = conn
        .query_map(
            "SELECT id, uid, revoked_at IS NULL FROM wx_session",
            |(id, uid, live): (String, String, bool)| (id, (uid, live)),
        )
        .map_err(|e| format!("SELECT … FROM wx_session: {e}"))?
        .into_iter()
        .collect();
    let no_user = sessions.iter().filter(|s| !uids.contains(&s.uid)).count();
    let no_session = sessions
        .iter()
        .filter(|s| stored.get(&s.sid) != Some(&(s.uid.clone(), true)))
        .count();
    Ok(check(
        no_user == 0 && no_session == 0 && unreadable == 0,
        format!(
            "cluster: every 200 has its rows: {} sessions, {no_user} without a user row, \
             {no_session} without a live session row, {unreadable} 200s without readable tokens; \
             {} users and {} sessions stored",
            sessions.len(),
            uids.len(),
            stored.len()
        ),
    ))
}

/// Every 200's access token is accepted by every node left, and its session is then cached
/// as live there (the logout check below relies on that).
fn verify_check(survivors: &[String], sessions: &[&Session]) -> Result<Check, String> {
    let agent = agent();
    let mut refused = Vec::new();
    for node in survivors {
        for session in sessions {
            check_interrupt()?;
            let answer = verify(&agent, node, session);
            if answer != Answer::Status(204) {
                refused.push(answer);
            }
        }
    }
    Ok(check(
        refused.is_empty(),
        format!(
            "cluster: every 200's access token accepted (204) by /auth/verify on each of the {} \
             nodes left: {} checks, {} not accepted ({})",
            survivors.len(),
            sessions.len() * survivors.len(),
            refused.len(),
            breakdown(refused.iter())
        ),
    ))
}

/// Logs out [`LOGOUTS`] sessions through nginx; their refresh tokens must be refused at once
/// on every node, their access tokens on every node and through nginx within the delay, and
/// the other sessions must still be accepted.
fn logout_checks(
    front: &str,
    survivors: &[String],
    sessions: &[&Session],
) -> Result<Vec<Check>, String> {
    let agent = agent();
    let step = (sessions.len() / LOGOUTS).max(1);
    // Spread over the run: logins from before the kill and after it.
    let picked = |i: usize| i.is_multiple_of(step) && i / step < LOGOUTS;
    let pick = |logged_out: bool| -> Vec<&Session> {
        sessions
            .iter()
            .enumerate()
            .filter(|(i, _)| picked(*i) == logged_out)
            .map(|(_, s)| *s)
            .take(LOGOUTS)
            .collect()
    };
    let (out, kept) = (pick(true), pick(false));
    let logouts: Vec<Answer> = out.iter().map(|s| logout(&agent, front, s)).collect();
    let logged_out = Instant::now();

    let mut refreshes = Vec::new();
    for node in survivors {
        refreshes.extend(out.iter().map(|s| refresh(&agent, node, s)));
    }
    let refreshed_within = logged_out.elapsed();

    // Every (node, session) pair polled until refused; each pair's first refusal is final only
    // if the sweep after agrees.
    let mut pending: Vec<(&String, &Session)> = survivors
        .iter()
        .flat_map(|node| out.iter().map(move |s| (node, *s)))
        .collect();
    let pairs = pending.len();
    let mut accepted_first = None;
    let all_refused = bounded::wait_until("logged-out tokens refused", REVOCATION_LIMIT, || {
        pending.retain(|(node, s)| verify(&agent, node, s) != Answer::Status(401));
        accepted_first.get_or_insert(pending.len());
        Ok(pending.is_empty())
    });
    let refused_after = logged_out.elapsed();
    let mut sweep = Vec::new();
    for node in survivors.iter().map(String::as_str).chain([front, front]) {
        sweep.extend(out.iter().map(|s| verify(&agent, node, s)));
    }
    let still_live: Vec<Answer> = kept.iter().map(|s| verify(&agent, front, s)).collect();

    let refused = Answer::Status(401);
    Ok(vec![
        check(
            logouts.iter().all(|a| *a == Answer::Status(200))
                && refreshes.iter().all(|a| *a == refused),
            format!(
                "cluster: {} sessions logged out through nginx ({}); their refresh tokens \
                 refused at once on each node left ({}, all within {} of the logouts)",
                out.len(),
                breakdown(logouts.iter()),
                breakdown(refreshes.iter()),
                short(refreshed_within)
            ),
        ),
        check(
            all_refused.is_ok()
                && refused_after <= REVOCATION_DELAY + REVOCATION_SLACK
                && sweep.iter().all(|a| *a == refused)
                && still_live.iter().all(|a| *a == Answer::Status(204)),
            format!(
                "cluster: no token accepted after its logout: {} of {pairs} (node, token) pairs \
                 still accepted right after the logouts (allowed within \
                 WXLOGIN_REVOCATION_DELAY={}), all refused {} after them; then on each node and \
                 twice through nginx's /auth/verify: {}; {} other sessions still accepted: {}",
                accepted_first.unwrap_or(pairs),
                short(REVOCATION_DELAY),
                match all_refused {
                    Ok(_) => short(refused_after),
                    Err(e) => format!("NOT ({e})"),
                },
                breakdown(sweep.iter()),
                still_live.len(),
                breakdown(still_live.iter())
            ),
        ),
    ])
}

/// The logins before and after the kill, by answer, for the report.
fn table(logins: &[Login], killed_at: Instant) -> String {
    let columns: BTreeSet<Answer> = logins.iter().map(|l| l.answer).collect();
    let labels: Vec<String> = columns.iter().map(|c| label(*c)).collect();
    let mut headers = vec![("cluster", false), ("what was done", false), ("sent", true)];
    headers.extend(labels.iter().map(|l| (l.as_str(), true)));
    headers.extend([("median", true), ("max", true)]);
    let mut table = Table::new(&headers);
    let before = format!(
        "{NODES} nodes behind nginx, {CLIENTS} clients, {} s",
        BEFORE_KILL.as_secs()
    );
    let after = format!(
        "node{KILLED} killed with SIGKILL, {} s more",
        AFTER_KILL.as_secs()
    );
    let parts: [(&str, &str, Vec<&Login>); 3] = [
        (
            "before the kill",
            &before,
            logins.iter().filter(|l| l.sent_at <= killed_at).collect(),
        ),
        (
            "after the kill",
            &after,
            logins.iter().filter(|l| l.sent_at > killed_at).collect(),
        ),
        ("**total**", "", logins.iter().collect()),
    ];
    for (name, what, part) in parts {
        let mut latencies: Vec<Duration> = part.iter().map(|l| l.latency).collect();
        latencies.sort_unstable();
        let mut cells = vec![name.to_owned(), what.to_owned(), part.len().to_string()];
        cells.extend(
            columns
                .iter()
                .map(|c| part.iter().filter(|l| l.answer == *c).count().to_string()),
        );
        cells.push(short(
            latencies
                .get(latencies.len() / 2)
                .copied()
                .unwrap_or_default(),
        ));
        cells.push(short(latencies.last().copied().unwrap_or_default()));
        table.row(cells);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_answer_gives_its_tokens_and_ids() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"u1","sid":"s1","openid":"o"}"#);
        let body =
            format!(r#"{{"status":200,"access_token":"h.{payload}.sig","refresh_token":"r1"}}"#);
        let session = session_of(&body).unwrap();
        assert_eq!(
            (
                session.uid.as_str(),
                session.sid.as_str(),
                session.refresh.as_str()
            ),
            ("u1", "s1", "r1")
        );
        assert!(session_of(r#"{"status":200,"access_token":"h.e30.s"}"#).is_none());
        assert!(session_of("not json").is_none());
    }
}
