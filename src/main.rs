//! The `wxlogin` binary: read the configuration, open the store, serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    wxlogin::logging::init();

    let config = match wxlogin::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            log::error!("configuration: {message}");
            return ExitCode::from(2);
        }
    };
    if config.jwt_secret_generated {
        log::warn!(
            "JWT_SECRET is not set: using a random key because the upstream is a local mock ({}); tokens will not survive a restart",
            config.wechat.api_base
        );
    }
    log::info!(
        "starting: bind={} threads={} upstream={} database={:?}",
        config.bind,
        config.threads,
        config.wechat.api_base,
        config.database_url
    );
    match wxlogin::Server::start(config) {
        Ok(server) => {
            log::info!("listening on {}", server.url());
            server.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
