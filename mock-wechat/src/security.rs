//! How the mock decides content-security verdicts, since it has no model to judge text or
//! images: text is risky or to be reviewed when it contains a configured word, and an
//! image's verdict is whatever a test set for the next checks of its openid (`pass` when
//! none was set). Also the fault switches that make `msg_sec_check` and
//! `media_check_async` fail, which take the place of the failure codes other APIs read from
//! their `code`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::code::Fault;
use crate::sync::lock;

/// The label WeChat gives content without a problem.
const PASS_LABEL: u32 = 100;

/// The label of risky and to-be-reviewed content. WeChat has several (20002 porn,
/// 20006 crime, …); one is enough for a client, which must act on `suggest`.
const RISK_LABEL: u32 = 20001;

/// How many openids can have verdicts waiting; cleared whole when full, like the mock's
/// other memories.
const VERDICTS_LIMIT: usize = 100_000;

/// WeChat's `suggest`: what to do with the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggest {
    /// Publish it.
    Pass,
    /// Refuse it.
    Risky,
    /// A person should look at it.
    Review,
}

impl Suggest {
    /// `pass`, `risky` or `review`, as in WeChat's answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Suggest::Pass => "pass",
            Suggest::Risky => "risky",
            Suggest::Review => "review",
        }
    }

    /// The `label` the mock answers with it: 100 (normal) for `pass`, 20001 otherwise.
    pub fn label(self) -> u32 {
        match self {
            Suggest::Pass => PASS_LABEL,
            Suggest::Risky | Suggest::Review => RISK_LABEL,
        }
    }
}

/// What the next media check of an openid does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaVerdict {
    /// Push this verdict.
    Suggest(Suggest),
    /// Push nothing, as when WeChat never answers (it promises an answer within 30 minutes).
    Timeout,
}

impl MediaVerdict {
    /// `pass`, `risky`, `review` or `timeout`, as `/mock/media_check` takes them.
    pub(crate) fn parse(text: &str) -> Option<MediaVerdict> {
        Some(match text {
            "pass" => MediaVerdict::Suggest(Suggest::Pass),
            "risky" => MediaVerdict::Suggest(Suggest::Risky),
            "review" => MediaVerdict::Suggest(Suggest::Review),
            "timeout" => MediaVerdict::Timeout,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MediaVerdict::Suggest(suggest) => suggest.as_str(),
            MediaVerdict::Timeout => "timeout",
        }
    }
}

/// The verdict on a text, and the word that decided it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TextVerdict {
    pub(crate) suggest: Suggest,
    pub(crate) keyword: Option<String>,
}

/// The two content-security APIs, each with its own fault switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecApi {
    MsgSecCheck,
    MediaCheckAsync,
}

/// A fault switch: `None` (off) or the fault with the code text that asked for it (shown
/// back by `/mock`).
pub(crate) type Switch = Option<(String, Fault)>;

/// Comma-separated words, trimmed, empty ones dropped (so an empty list clears the words).
pub(crate) fn parse_words(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The settings `/mock` calls change at run time.
pub(crate) struct Security {
    inner: Mutex<Inner>,
}

struct Inner {
    risky: Vec<String>,
    review: Vec<String>,
    msg_fault: Switch,
    media_fault: Switch,
    /// The verdict waiting for an openid and how many more checks it applies to (≥ 1).
    verdicts: HashMap<String, (MediaVerdict, u32)>,
}

impl Security {
    pub(crate) fn new(risky: Vec<String>, review: Vec<String>) -> Security {
        Security {
            inner: Mutex::new(Inner {
                risky,
                review,
                msg_fault: None,
                media_fault: None,
                verdicts: HashMap::new(),
            }),
        }
    }

    /// Risky when `content` contains a risky word, else review when it contains a review
    /// word, else pass. Case is ignored, so that `FUCK` is caught like `fuck`.
    pub(crate) fn check_text(&self, content: &str) -> TextVerdict {
        let content = content.to_lowercase();
        let inner = lock(&self.inner);
        let found = |words: &[String]| {
            words
                .iter()
                .find(|word| content.contains(&word.to_lowercase()))
                .cloned()
        };
        if let Some(word) = found(&inner.risky) {
            return TextVerdict {
                suggest: Suggest::Risky,
                keyword: Some(word),
            };
        }
        if let Some(word) = found(&inner.review) {
            return TextVerdict {
                suggest: Suggest::Review,
                keyword: Some(word),
            };
        }
        TextVerdict {
            suggest: Suggest::Pass,
            keyword: None,
        }
    }

    /// Replaces the risky words, the review words, or both (`None` keeps a list).
    pub(crate) fn set_words(&self, risky: Option<Vec<String>>, review: Option<Vec<String>>) {
        let mut inner = lock(&self.inner);
        if let Some(risky) = risky {
            inner.risky = risky;
        }
        if let Some(review) = review {
            inner.review = review;
        }
    }

    /// The risky words and the review words.
    pub(crate) fn words(&self) -> (Vec<String>, Vec<String>) {
        let inner = lock(&self.inner);
        (inner.risky.clone(), inner.review.clone())
    }

    /// Makes every following call to `api` answer `fault` (`None`: answer normally).
    pub(crate) fn set_fault(&self, api: SecApi, fault: Switch) {
        let mut inner = lock(&self.inner);
        match api {
            SecApi::MsgSecCheck => inner.msg_fault = fault,
            SecApi::MediaCheckAsync => inner.media_fault = fault,
        }
    }

    pub(crate) fn fault(&self, api: SecApi) -> Switch {
        let inner = lock(&self.inner);
        match api {
            SecApi::MsgSecCheck => inner.msg_fault.clone(),
            SecApi::MediaCheckAsync => inner.media_fault.clone(),
        }
    }

    /// The next `times` media checks of `openid` get `verdict`, replacing any set before;
    /// `times` 0 forgets it.
    pub(crate) fn set_media_verdict(&self, openid: &str, verdict: MediaVerdict, times: u32) {
        let mut inner = lock(&self.inner);
        if times == 0 {
            inner.verdicts.remove(openid);
            return;
        }
        if inner.verdicts.len() >= VERDICTS_LIMIT && !inner.verdicts.contains_key(openid) {
            log::warn!(
                "forgetting the media verdicts of {} openids (limit reached)",
                inner.verdicts.len()
            );
            inner.verdicts.clear();
        }
        inner.verdicts.insert(openid.to_owned(), (verdict, times));
    }

    /// The verdict of a new media check of `openid`, using one of those set for it; `pass`
    /// when none is left.
    pub(crate) fn next_media_verdict(&self, openid: &str) -> MediaVerdict {
        let mut inner = lock(&self.inner);
        let Some((verdict, times)) = inner.verdicts.get_mut(openid) else {
            return MediaVerdict::Suggest(Suggest::Pass);
        };
        let verdict = *verdict;
        *times -= 1;
        if *times == 0 {
            inner.verdicts.remove(openid);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn text_with_a_risky_word_is_risky_before_review() {
        let security = Security::new(words(&["赌博", "fuck"]), words(&["review-me"]));
        let verdict = security.check_text("来赌博吧 review-me");
        assert_eq!(verdict.suggest, Suggest::Risky);
        assert_eq!(verdict.keyword.as_deref(), Some("赌博"));
        assert_eq!(security.check_text("What the FUCK").suggest, Suggest::Risky);
        let review = security.check_text("please Review-Me");
        assert_eq!(review.suggest, Suggest::Review);
        assert_eq!(review.keyword.as_deref(), Some("review-me"));
        let pass = security.check_text("小明 Alice");
        assert_eq!(pass.suggest, Suggest::Pass);
        assert_eq!(pass.keyword, None);
    }

    #[test]
    fn words_can_be_replaced_one_list_at_a_time() {
        let security = Security::new(words(&["bad"]), words(&["meh"]));
        security.set_words(None, Some(Vec::new()));
        assert_eq!(security.check_text("meh").suggest, Suggest::Pass);
        assert_eq!(security.check_text("bad").suggest, Suggest::Risky);
        security.set_words(Some(words(&["worse"])), None);
        assert_eq!(security.check_text("bad").suggest, Suggest::Pass);
        assert_eq!(security.words(), (words(&["worse"]), Vec::new()));
    }

    #[test]
    fn media_verdicts_apply_to_the_next_checks_of_one_openid() {
        let security = Security::new(Vec::new(), Vec::new());
        let pass = MediaVerdict::Suggest(Suggest::Pass);
        let risky = MediaVerdict::Suggest(Suggest::Risky);
        assert_eq!(security.next_media_verdict("oA"), pass);
        security.set_media_verdict("oA", risky, 2);
        assert_eq!(security.next_media_verdict("oB"), pass);
        assert_eq!(security.next_media_verdict("oA"), risky);
        assert_eq!(security.next_media_verdict("oA"), risky);
        assert_eq!(security.next_media_verdict("oA"), pass);
        security.set_media_verdict("oA", MediaVerdict::Timeout, 5);
        security.set_media_verdict("oA", risky, 0);
        assert_eq!(security.next_media_verdict("oA"), pass);
    }

    #[test]
    fn media_verdicts_parse_from_their_names() {
        for name in ["pass", "risky", "review", "timeout"] {
            assert_eq!(MediaVerdict::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(MediaVerdict::parse("Pass"), None);
        assert_eq!(Suggest::Pass.label(), 100);
        assert_eq!(Suggest::Risky.label(), 20001);
    }
}
