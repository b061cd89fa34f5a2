//! What `wxlogin-bench` (`make bench`) and `wxlogin-drill` (`make drill`) share, written once:
//! child processes that are stopped when dropped, free ports, the run's database, Ctrl-C
//! handling and bounded waits, a raw HTTP client, `/proc` readings and the Markdown report.
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
