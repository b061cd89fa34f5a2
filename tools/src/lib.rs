//! What `wxlogin-bench` (`make bench`) and `wxlogin-drill` (`make drill`) share, written once:
//! child processes that are stopped when dropped, free ports, the run's database, Ctrl-C
//! handling and bounded waits, a raw HTTP client, `/proc` readings, the Markdown report, and the
//! settings wxlogin runs with under their load.
//! The two programs are in `src/bin/`. Dependencies between these modules go one way: `bounded`
//! and `children` use `signals`, `children` uses `bounded`; the rest stand alone.

pub mod bounded;
pub mod children;
pub mod database;
pub mod http;
pub mod markdown;
pub mod ports;
pub mod procstat;
pub mod signals;

/// What wxlogin runs without under the bench and the drill: moderation (on by default, it
/// refuses to start without WeChat's push token and calls msgSecCheck per nickname) and the
/// rate limits (per client address and per user: their load comes from one address, logging
/// the same users in over and over). The bench measures the login path, the drill faults; the
/// peer has neither feature.
pub const WXLOGIN_UNDER_LOAD: [(&str, &str); 3] = [
    ("WXLOGIN_MODERATION", "off"),
    ("WXLOGIN_RATE_LIMIT_BURST", "0"),
    ("WXLOGIN_USER_RATE_LIMIT_BURST", "0"),
];
