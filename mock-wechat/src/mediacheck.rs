//! The asynchronous half of `media_check_async`, as WeChat does it after answering: a
//! while later it fetches the image from `media_url`, then pushes the verdict to the
//! mini-program's push URL, signed (and in safe mode encrypted), retrying a few times when
//! the receiver does not take it. Each check runs on its own thread, which `stop` joins.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::http::{self, Url};
use crate::push;
use crate::security::MediaVerdict;
use crate::state::State;

/// The largest image fetched: WeChat's limit for media checks.
const MEDIA_LIMIT: usize = 10 * 1024 * 1024;

/// Pushes tried per verdict: the first and three retries, as WeChat retries three times.
const PUSH_ATTEMPTS: u32 = 4;

/// The pause before a retry. Short, so that a test of a failing receiver stays quick.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// One media check under way.
pub(crate) struct Job {
    pub(crate) trace_id: String,
    pub(crate) media_url: String,
    pub(crate) verdict: MediaVerdict,
}

/// Starts `job` on its own thread; false when too many checks are under way or no thread
/// could be started (the caller answers errcode -1).
pub(crate) fn start(state: &Arc<State>, job: Job) -> bool {
    let for_thread = Arc::clone(state);
    let started = state.start_check(move || {
        thread::Builder::new()
            .name("mock-wechat-media-check".to_owned())
            .spawn(move || run(&for_thread, &job))
    });
    match started {
        Ok(started) => started,
        Err(err) => {
            log::error!("media_check_async: cannot start a check: {err}");
            false
        }
    }
}

/// Waits the configured delay, fetches the media, pushes the verdict. Gives up quietly at
/// any step when the mock is stopping.
fn run(state: &State, job: &Job) {
    let trace = &job.trace_id;
    if !state.shutdown.sleep(state.config.media_check_delay) {
        return;
    }
    match fetch(&job.media_url) {
        Ok(bytes) => log::info!("media check {trace}: fetched {bytes} bytes"),
        Err(why) => {
            // WeChat documents no push for media it cannot fetch; the check just never ends.
            log::warn!("media check {trace}: cannot fetch media_url ({why}); no verdict pushed");
            return;
        }
    }
    let suggest = match job.verdict {
        MediaVerdict::Suggest(suggest) => suggest,
        MediaVerdict::Timeout => {
            log::info!("media check {trace}: set to time out; no verdict pushed");
            return;
        }
    };
    let Some(url) = &state.push_url else {
        log::warn!(
            "media check {trace}: {} but no push URL is configured (MOCK_WECHAT_PUSH_URL)",
            suggest.as_str()
        );
        return;
    };
    let event = push::media_check_event(&state.config.appid, trace, suggest);
    for attempt in 1..=PUSH_ATTEMPTS {
        let outcome = state
            .push_keys
            .seal(&event)
            .map_err(|err| err.to_string())
            .and_then(|push| {
                http::post_json(&url.with_query(&push.query), &push.body)
                    .map_err(|err| err.to_string())
            });
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                log::info!("media check {trace}: pushed {}", suggest.as_str());
                state.count_push();
                return;
            }
            Ok(status) => log::warn!("media check {trace}: push {attempt} answered {status}"),
            Err(why) => log::warn!("media check {trace}: push {attempt} failed: {why}"),
        }
        if attempt < PUSH_ATTEMPTS && !state.shutdown.sleep(RETRY_PAUSE) {
            return;
        }
    }
    log::warn!("media check {trace}: gave up pushing after {PUSH_ATTEMPTS} attempts");
}

/// GETs the media as WeChat's checker would: the number of bytes of a 2xx answer.
fn fetch(media_url: &str) -> Result<usize, String> {
    let url = Url::parse(media_url).ok_or("not a plain http:// URL")?;
    match http::get(&url, MEDIA_LIMIT) {
        Ok((status, body)) if (200..300).contains(&status) => Ok(body.len()),
        Ok((status, _)) => Err(format!("HTTP {status}")),
        Err(err) => Err(err.to_string()),
    }
}
