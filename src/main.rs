//! The `wxlogin` binary: read the configuration, build the app (which opens the store), serve
//! until SIGTERM or SIGINT, then drain requests in flight and exit 0. `wxlogin admin …` runs the
//! operator's command instead (`wxlogin::admin`).

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::process::ExitCode;

fn main() -> ExitCode {
    wxlogin::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("admin") {
        return wxlogin::admin::main(&args[1..]);
    }

    let config = match wxlogin::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            log::error!("configuration: {message}");
            return ExitCode::from(2);
        }
    };
    for warning in config.startup_warnings() {
        log::warn!("{warning}");
    }
    // Registered before serving, so a signal during start-up is not lost.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("cannot handle SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "starting: bind={} max_connections={} upstream={} database={:?}",
        config.bind,
        config.max_connections,
        config.wechat.api_base,
        config.database_url
    );
    let drain = config.drain_timeout;
    let server =
        match wxlogin::App::build(&config).and_then(|app| wxlogin::Server::serve(&config, app)) {
            Ok(server) => server,
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
    log::info!("listening on {}", server.url());
    // Wait for a signal, or for the listener to die, which no request can ever report.
    let signal = loop {
        if let Some(signal) = signals.pending().next() {
            break Some(signal);
        }
        if server.listener_failed() {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    match signal {
        Some(signal) => log::info!(
            "received signal {signal}: no new connections; draining requests in flight for up to {drain:?}"
        ),
        None => log::error!(
            "the listener failed and accepts no more connections; exiting so that the supervisor restarts the service"
        ),
    }
    let drained = server.shutdown();
    if drained && signal.is_some() {
        log::info!("stopped cleanly");
    }
    if signal.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
