//! The `mock-wechat` program: runs the mock WeChat API configured from `MOCK_WECHAT_*`
//! environment variables until the process is killed, for `make run` and manual testing.

use std::process::ExitCode;

use mock_wechat::{MockConfig, MockWechat};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match MockConfig::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("mock-wechat: {message}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockWechat::start(config.clone()) {
        Ok(mock) => mock,
        Err(err) => {
            eprintln!("mock-wechat: cannot listen on {}: {err}", config.bind);
            return ExitCode::from(1);
        }
    };
    // The config's Debug output hides the secret.
    log::info!("listening on {} ({})", mock.addr(), mock.base_url());
    log::info!("{config:?}");
    // The workers do everything; keep `mock` alive until the process is killed.
    loop {
        std::thread::park();
    }
}
