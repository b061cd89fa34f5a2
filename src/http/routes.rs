//! The routes: one [`Route`] per path, which gives its metric label, the methods it takes (the
//! `Allow` header of a 405), its body limit and its handlers; then the handlers and the typed
//! answers they send.
//!
//! Adding an endpoint means adding a variant: `Route::of` and `Route::spec` are exhaustive
//! matches, so a route cannot be dispatched without a label or listed without a handler.

use super::request::{self, body_kind, header_value, read_body, read_fields, BodyKind};
use crate::account::Deletion;
use crate::app::App;
use crate::avatar;
use crate::clock::rfc3339;
use crate::error::Error;
use crate::history;
use crate::login::LoginRequest;
use crate::phone::PhoneService;
use crate::profile;
use crate::session::{ClientInfo, TokenPair};
use crate::store::{AvatarState, LoginEntry, SessionInfo};
use crate::token::Identity;
use crate::user::{PhoneNumber, User};
use serde::Serialize;
use tiny_http::Request;

/// Where uploaded avatars are served: `/avatars/<sha256>.<ext>`.
const AVATAR_PREFIX: &str = "/avatars/";
/// Where WeChat fetches a pending avatar for its check: `/media/<token>`.
const MEDIA_PREFIX: &str = "/media/";
/// One of the caller's sessions: `/api/me/sessions/<id>`.
const SESSION_PREFIX: &str = "/api/me/sessions/";

/// The label of a path no route has, so logs and metrics never carry arbitrary client paths.
pub const UNMATCHED: &str = "(unmatched)";

/// Every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Refresh,
    Logout,
    LogoutAll,
    Me,
    Sessions,
    Session,
    Deletion,
    Logins,
    Verify,
    Jwks,
    AvatarUpload,
    AvatarFile,
    Phone,
    Push,
    Media,
    Health,
    Ready,
    Metrics,
}

/// A handler: the request in, the answer out. It takes the request id for its own log lines.
type Handler = fn(&App, &mut Request, &str) -> Result<Reply, Error>;

/// What a route is: its fixed label, its `Allow` list, and a handler per method.
struct Spec {
    label: &'static str,
    allow: &'static str,
    handlers: &'static [(&'static str, Handler)],
}

impl Route {
    /// Every route, for what must list them all (the OpenAPI document's test): a new variant goes
    /// here too.
    pub const ALL: [Route; 19] = [
        Route::Login,
        Route::Refresh,
        Route::Logout,
        Route::LogoutAll,
        Route::Me,
        Route::Sessions,
        Route::Session,
        Route::Deletion,
        Route::Logins,
        Route::Verify,
        Route::Jwks,
        Route::AvatarUpload,
        Route::AvatarFile,
        Route::Phone,
        Route::Push,
        Route::Media,
        Route::Health,
        Route::Ready,
        Route::Metrics,
    ];

    /// The route of a path (without its query), if any.
    pub fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/api/wxuser" => Route::Login,
            "/api/token/refresh" => Route::Refresh,
            "/api/logout" => Route::Logout,
            "/api/logout/all" => Route::LogoutAll,
            "/api/me" => Route::Me,
            "/api/me/sessions" => Route::Sessions,
            "/api/me/deletion" => Route::Deletion,
            "/api/me/logins" => Route::Logins,
            "/auth/verify" => Route::Verify,
            "/.well-known/jwks.json" => Route::Jwks,
            "/api/me/avatar" => Route::AvatarUpload,
            "/api/phone" => Route::Phone,
            "/wechat/push" => Route::Push,
            "/healthz" => Route::Health,
            "/readyz" => Route::Ready,
            "/metrics" => Route::Metrics,
            p if p.starts_with(AVATAR_PREFIX) => Route::AvatarFile,
            p if p.starts_with(MEDIA_PREFIX) => Route::Media,
            p if p.starts_with(SESSION_PREFIX) => Route::Session,
            _ => return None,
        })
    }

    fn spec(self) -> Spec {
        let (label, allow, handlers): (_, _, &'static [(&'static str, Handler)]) = match self {
            Route::Login => ("/api/wxuser", "POST", &[("POST", login)]),
            Route::Refresh => ("/api/token/refresh", "POST", &[("POST", refresh)]),
            Route::Logout => ("/api/logout", "POST", &[("POST", logout)]),
            Route::LogoutAll => ("/api/logout/all", "POST", &[("POST", logout_all)]),
            Route::Me => ("/api/me", "GET, PUT", &[("GET", me), ("PUT", update_me)]),
            Route::Sessions => ("/api/me/sessions", "GET", &[("GET", sessions)]),
            Route::Session => (
                "/api/me/sessions/{id}",
                "DELETE",
                &[("DELETE", revoke_session)],
            ),
            Route::Deletion => (
                "/api/me/deletion",
                "GET, POST, DELETE",
                &[
                    ("GET", deletion),
                    ("POST", request_deletion),
                    ("DELETE", cancel_deletion),
                ],
            ),
            Route::Logins => ("/api/me/logins", "GET", &[("GET", logins)]),
            Route::Verify => (
                "/auth/verify",
                "GET, HEAD",
                &[("GET", verify), ("HEAD", verify)],
            ),
            Route::Jwks => (
                "/.well-known/jwks.json",
                "GET, HEAD",
                &[("GET", jwks), ("HEAD", jwks)],
            ),
            Route::AvatarUpload => ("/api/me/avatar", "POST", &[("POST", upload_avatar)]),
            Route::AvatarFile => (
                "/avatars/{file}",
                "GET, HEAD",
                &[("GET", serve_avatar), ("HEAD", serve_avatar)],
            ),
            Route::Phone => ("/api/phone", "POST", &[("POST", phone)]),
            Route::Push => (
                "/wechat/push",
                "GET, POST",
                &[("GET", push_url_check), ("POST", push)],
            ),
            Route::Media => (
                "/media/{token}",
                "GET, HEAD",
                &[("GET", serve_media), ("HEAD", serve_media)],
            ),
            Route::Health => (
                "/healthz",
                "GET, HEAD",
                &[("GET", health), ("HEAD", health)],
            ),
            Route::Ready => ("/readyz", "GET, HEAD", &[("GET", ready), ("HEAD", ready)]),
            Route::Metrics => ("/metrics", "GET", &[("GET", metrics)]),
        };
        Spec {
            label,
            allow,
            handlers,
        }
    }

    /// A fixed label per route, for logs and metrics.
    pub fn label(self) -> &'static str {
        self.spec().label
    }

    /// The path as an OpenAPI path template (`/avatars/{file}`): the label.
    pub fn path_template(self) -> &'static str {
        self.spec().label
    }

    /// The methods the route takes, in its `Allow` order.
    pub fn methods(self) -> Vec<&'static str> {
        self.spec().handlers.iter().map(|(m, _)| *m).collect()
    }

    /// The largest body this route reads: tiny_http's connection threads refuse a longer one
    /// before its handler runs.
    pub fn body_limit(self, default: usize) -> usize {
        match self {
            Route::AvatarUpload => avatar::MAX_UPLOAD_BODY_BYTES,
            _ => default,
        }
    }

    /// Whether the route is limited per client address: the ones that cost a WeChat call or a
    /// database write for anyone who asks (see `ratelimit`).
    fn limited_per_client(self) -> bool {
        matches!(self, Route::Login | Route::Refresh | Route::Phone)
    }

    /// Runs the handler for the request's method, or refuses it with the methods that exist.
    /// A limited route's client limit is checked first, before its body is read.
    pub fn handle(self, app: &App, request: &mut Request, id: &str) -> Result<Reply, Error> {
        let spec = self.spec();
        let method = request.method().as_str();
        let Some((_, handler)) = spec.handlers.iter().find(|(m, _)| *m == method) else {
            return Err(Error::MethodNotAllowed { allow: spec.allow });
        };
        if self.limited_per_client() {
            if let Some(ip) = request::client_ip(request) {
                app.limits.client(spec.label, ip)?;
            }
        }
        handler(app, request, id)
    }
}

/// A handler's answer.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Headers beyond the ones every answer gets.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &impl Serialize) -> Reply {
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            body: serde_json::to_vec(body).expect("answers serialize"),
            headers: vec![("Cache-Control", "no-store".into())],
        }
    }

    fn ok(body: &impl Serialize) -> Reply {
        Reply::json(200, body)
    }

    /// The answer to a failed request: its status, JSON body and extra headers.
    pub fn error(error: &Error) -> Reply {
        let mut reply = Reply::json(error.status(), &error.body());
        reply.headers.extend(error.headers());
        reply
    }
}

/// `{"status":200,"message":…}`: the probes' answer.
#[derive(Serialize)]
struct MessageAnswer {
    status: u16,
    message: &'static str,
}

/// The login's answer; `messages` (plural) and `token` (`Bearer <access>`) are the field names
/// the original client reads; the rest is OAuth 2.0's token response.
#[derive(Serialize)]
struct LoginAnswer {
    status: u16,
    token: String,
    messages: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<ProfileAnswer>,
    /// Only while a deletion is pending, so the client can offer to cancel it.
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion: Option<DeletionView>,
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
}

impl LoginAnswer {
    fn new(tokens: TokenPair, messages: &'static str, profile: Option<ProfileAnswer>) -> Self {
        LoginAnswer {
            status: 200,
            token: format!("Bearer {}", tokens.access_token),
            messages,
            profile,
            deletion: None,
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
            refresh_expires_in: tokens.refresh_expires_in,
        }
    }
}

/// A deletion's state: `none`, `scheduled` (with `erase_at`, RFC 3339) or `erased`.
#[derive(Serialize)]
struct DeletionView {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    erase_at: Option<String>,
}

impl From<Deletion> for DeletionView {
    fn from(deletion: Deletion) -> Self {
        let (state, erase_at) = match deletion {
            Deletion::None => ("none", None),
            Deletion::Scheduled { erase_at } => ("scheduled", Some(rfc3339(erase_at))),
            Deletion::Erased => ("erased", None),
        };
        DeletionView { state, erase_at }
    }
}

/// The answer of the `/api/me/deletion` endpoints.
#[derive(Serialize)]
struct DeletionAnswer {
    status: u16,
    deletion: DeletionView,
}

fn deletion_reply(deletion: Deletion) -> Reply {
    let status = match deletion {
        Deletion::Scheduled { .. } => 202,
        Deletion::None | Deletion::Erased => 200,
    };
    Reply::json(
        status,
        &DeletionAnswer {
            status,
            deletion: deletion.into(),
        },
    )
}

#[derive(Serialize)]
struct LoginsAnswer {
    status: u16,
    logins: Vec<LoginView>,
}

/// One login or refresh as the user sees it; `current` marks the caller's session.
#[derive(Serialize)]
struct LoginView {
    at: String,
    kind: String,
    session_id: String,
    current: bool,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl LoginView {
    fn new(entry: LoginEntry, caller: &Identity) -> LoginView {
        LoginView {
            at: rfc3339(entry.at),
            kind: entry.kind,
            current: entry.session_id == caller.sid,
            session_id: entry.session_id,
            ip: entry.ip,
            user_agent: entry.user_agent,
        }
    }
}

/// `POST /api/logout/all`'s answer: how many sessions it ended.
#[derive(Serialize)]
struct LogoutAllAnswer {
    status: u16,
    message: &'static str,
    revoked: usize,
}

#[derive(Serialize)]
struct SessionsAnswer {
    status: u16,
    sessions: Vec<SessionView>,
}

/// A live session as the user sees it; times in RFC 3339, `current` marks the caller's.
#[derive(Serialize)]
struct SessionView {
    id: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    current: bool,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl SessionView {
    fn new(session: SessionInfo, caller: &Identity) -> SessionView {
        SessionView {
            current: session.id == caller.sid,
            id: session.id,
            created_at: rfc3339(session.created_at),
            last_used_at: rfc3339(session.last_used_at),
            expires_at: rfc3339(session.expires_at),
            user_agent: session.user_agent,
            ip: session.ip,
        }
    }
}

/// What became of the profile a login carried.
#[derive(Serialize)]
struct ProfileAnswer {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
struct PhoneAnswer<'a> {
    status: u16,
    phone: &'a PhoneNumber,
}

#[derive(Serialize)]
struct UserAnswer<'a> {
    status: u16,
    user: UserView<'a>,
}

/// The user as every profile endpoint shows it, with WeChat's field names; absent values are
/// `null`, not missing, so clients can rely on every key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView<'a> {
    openid: &'a str,
    unionid: Option<&'a str>,
    nick_name: Option<&'a str>,
    avatar_url: Option<&'a str>,
    gender: Option<i64>,
    phone_number: Option<&'a str>,
    pure_phone_number: Option<&'a str>,
    country_code: Option<&'a str>,
    /// Where the last uploaded avatar stands (`active`, `pending`, `rejected`); `null` when
    /// the user never uploaded one.
    avatar_state: Option<&'static str>,
}

impl<'a> UserView<'a> {
    fn new(user: &'a User, avatar_state: Option<AvatarState>) -> Self {
        let phone = user.phone.as_ref();
        UserView {
            avatar_state: avatar_state.map(AvatarState::as_str),
            openid: &user.openid,
            unionid: user.unionid.as_deref(),
            nick_name: user.profile.nick_name.as_deref(),
            avatar_url: user.profile.avatar_url.as_deref(),
            gender: user.profile.gender,
            phone_number: phone.map(|p| p.phone_number.as_str()),
            pure_phone_number: phone.map(|p| p.pure_phone_number.as_str()),
            country_code: phone.map(|p| p.country_code.as_str()),
        }
    }
}

/// The user as every profile endpoint answers it, with their avatar's state.
fn user_reply(app: &App, user: &User) -> Result<Reply, Error> {
    let state = app.store.avatar_state(&user.openid)?;
    Ok(Reply::ok(&UserAnswer {
        status: 200,
        user: UserView::new(user, state),
    }))
}

/// `POST /api/me/avatar`'s answer: the user, and the state of the image just uploaded.
#[derive(Serialize)]
struct UploadAnswer<'a> {
    status: u16,
    user: UserView<'a>,
    avatar: UploadState,
}

#[derive(Serialize)]
struct UploadState {
    state: &'static str,
}

/// The one authentication of every protected endpoint: the bearer token verified, and its
/// session still standing.
fn authenticate(app: &App, request: &Request) -> Result<Identity, Error> {
    app.sessions
        .authenticate(header_value(request, "Authorization"))
}

/// The client's address as sessions and the login history record it: the IP alone (a port
/// changes with every connection and says nothing about who logged in).
fn client_ip_text(request: &Request) -> String {
    request::client_ip(request).map_or_else(|| "-".into(), |ip| ip.to_string())
}

/// Who is logging in or refreshing, for the session and the login history.
fn client_info<'r>(request: &'r Request, ip: &'r str) -> ClientInfo<'r> {
    ClientInfo {
        user_agent: header_value(request, "User-Agent").unwrap_or(""),
        ip,
    }
}

/// `POST /api/wxuser`: a `wx.login()` code (and optional profile) in, a session's tokens out.
fn login(app: &App, request: &mut Request, id: &str) -> Result<Reply, Error> {
    let login = LoginRequest::from_fields(read_fields(request, app.max_body_bytes)?)?;
    let ip = client_ip_text(request);
    let client = client_info(request, &ip);
    let outcome = app.login.login(&login, client)?;
    let rejection = outcome.profile.rejection();
    if let Some(why) = rejection {
        log::info!("{id} /api/wxuser profile rejected, stored profile kept: {why}");
    }
    let profile = ProfileAnswer {
        status: outcome.profile.label(),
        reason: rejection,
    };
    let mut answer = LoginAnswer::new(outcome.tokens, "login succeeded", Some(profile));
    answer.deletion = outcome
        .erase_at
        .map(|erase_at| Deletion::Scheduled { erase_at }.into());
    Ok(Reply::ok(&answer))
}

/// `POST /api/token/refresh`: a refresh token (JSON or form field `refresh_token`) in, a new
/// pair out. Never calls WeChat.
fn refresh(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let token = read_fields(request, app.max_body_bytes)?
        .take("refresh_token")?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Error::BadRequest("refresh_token is missing".into()))?;
    let ip = client_ip_text(request);
    let client = client_info(request, &ip);
    let tokens = app.sessions.refresh(token.trim(), client, |uid| {
        Ok(app.limits.user(Route::Refresh.label(), uid)?)
    })?;
    Ok(Reply::ok(&LoginAnswer::new(
        tokens,
        "token refreshed",
        None,
    )))
}

/// `POST /api/logout`: ends the caller's session.
fn logout(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    app.sessions.logout(&identity)?;
    Ok(Reply::ok(&MessageAnswer {
        status: 200,
        message: "logged out",
    }))
}

/// `POST /api/logout/all`: ends every session of the caller's user.
fn logout_all(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let revoked = app.sessions.logout_all(&identity)?;
    Ok(Reply::ok(&LogoutAllAnswer {
        status: 200,
        message: "logged out of every session",
        revoked,
    }))
}

/// `GET /api/me/sessions`: the caller's live sessions.
fn sessions(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let sessions = app
        .sessions
        .list(&identity)?
        .into_iter()
        .map(|session| SessionView::new(session, &identity))
        .collect();
    Ok(Reply::ok(&SessionsAnswer {
        status: 200,
        sessions,
    }))
}

/// `DELETE /api/me/sessions/{id}`: ends one of the caller's sessions (404 for anyone else's).
fn revoke_session(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let session_id = request::path(request)[SESSION_PREFIX.len()..].to_string();
    app.sessions.revoke(&identity, &session_id)?;
    Ok(Reply::ok(&MessageAnswer {
        status: 200,
        message: "session revoked",
    }))
}

/// `POST /api/me/deletion`: the caller asks for their account's deletion, with a fresh
/// `wx.login()` code as proof of presence (JSON or form field `code`).
fn request_deletion(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let code = read_fields(request, app.max_body_bytes)?.code("wx.login()")?;
    let deletion = app.accounts.request_deletion(&identity, &code)?;
    Ok(deletion_reply(deletion))
}

/// `GET /api/me/deletion`: the caller's pending deletion, if any.
fn deletion(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let deletion = app.accounts.deletion(&identity)?;
    Ok(deletion_reply(deletion))
}

/// `DELETE /api/me/deletion`: cancels the caller's pending deletion.
fn cancel_deletion(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let deletion = app.accounts.cancel_deletion(&identity)?;
    Ok(deletion_reply(deletion))
}

/// `GET /api/me/logins`: the caller's latest logins and refreshes.
fn logins(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let logins = history::recent(&*app.store, &identity)?
        .into_iter()
        .map(|entry| LoginView::new(entry, &identity))
        .collect();
    Ok(Reply::ok(&LoginsAnswer {
        status: 200,
        logins,
    }))
}

/// `GET /auth/verify`, for a proxy's forward auth (nginx `auth_request`): 204 with the caller's
/// identity in headers for the app behind the proxy, or 401 with the bearer challenge.
fn verify(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let identity = authenticate(app, request)?;
    let mut headers = vec![
        ("Cache-Control", "no-store".to_string()),
        ("X-Wx-User-Id", identity.uid),
        ("X-Wx-Openid", identity.openid),
        ("X-Wx-Session-Id", identity.sid),
    ];
    if let Some(unionid) = identity.unionid {
        headers.push(("X-Wx-Unionid", unionid));
    }
    Ok(Reply {
        status: 204,
        content_type: "text/plain; charset=utf-8",
        body: Vec::new(),
        headers,
    })
}

/// `GET /.well-known/jwks.json`: every public key that verifies our access tokens. Cacheable:
/// a rotation publishes the next key before it signs anything.
fn jwks(app: &App, _request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let mut reply = Reply::ok(&app.tokens.jwks());
    reply.headers = vec![("Cache-Control", "public, max-age=300".into())];
    Ok(reply)
}

/// `POST /api/phone`: a `getPhoneNumber` button code in, the user's number stored and returned.
fn phone(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    app.limits.user(Route::Phone.label(), &claims.uid)?;
    let code = PhoneService::code(&mut read_fields(request, app.max_body_bytes)?)?;
    let phone = app.phone.bind(&claims.openid, &code)?;
    Ok(Reply::ok(&PhoneAnswer {
        status: 200,
        phone: &phone,
    }))
}

/// `GET /api/me`: the stored profile of the token's user.
fn me(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    // The state first: a verdict landing between the two reads then shows at worst "pending"
    // beside the new image, never "active" beside the old one (a client that sees "active"
    // may trust avatarUrl).
    let state = app.store.avatar_state(&claims.openid)?;
    let user = app.profiles.user(&claims.openid)?;
    Ok(Reply::ok(&UserAnswer {
        status: 200,
        user: UserView::new(&user, state),
    }))
}

/// `PUT /api/me`: the nickname (and gender) the user typed.
fn update_me(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    if !matches!(body_kind(request)?, BodyKind::Json) {
        return Err(Error::UnsupportedMediaType);
    }
    let update = profile::parse_update(&read_body(request, app.max_body_bytes)?)?;
    // A deleted user's token spends no WeChat call.
    app.profiles.user(&claims.openid)?;
    if let Some(nick) = &update.nick_name {
        app.moderation.check_nickname(&claims.openid, nick)?;
    }
    let user = app.profiles.update(&claims.openid, &update)?;
    user_reply(app, &user)
}

/// `POST /api/me/avatar`: the image from `<button open-type="chooseAvatar">`, sent with
/// `wx.uploadFile`. 200 when it is the avatar at once (moderation off, or the image passed
/// before), 202 while WeChat checks it; the per-user limit is taken before the costly decode.
fn upload_avatar(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let claims = authenticate(app, request)?;
    if let Some(limit) = &app.avatar_uploads {
        limit.check(&claims.openid)?;
    }
    let content_type = header_value(request, "Content-Type")
        .unwrap_or("")
        .to_string();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(Error::UnsupportedMediaType);
    }
    let body = read_body(request, avatar::MAX_UPLOAD_BODY_BYTES)?;
    let image = avatar::from_multipart(&content_type, body)?;
    let state = app.moderation.upload(&claims.openid, &image)?;
    let user = app.profiles.user(&claims.openid)?;
    let status = match state {
        AvatarState::Pending => 202,
        AvatarState::Active | AvatarState::Rejected => 200,
    };
    Ok(Reply::json(
        status,
        &UploadAnswer {
            status,
            user: UserView::new(&user, Some(state)),
            avatar: UploadState {
                state: state.as_str(),
            },
        },
    ))
}

/// `GET /wechat/push`: the URL check WeChat's console makes when the push URL is saved; the
/// `echostr` echoed as plain text when the signature holds (401 otherwise).
fn push_url_check(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let echo = app.moderation.url_check(request::query(request))?;
    Ok(plain(200, echo.into_bytes()))
}

/// `POST /wechat/push`: a pushed event, answered `success` (WeChat's expected word) once
/// verified, whether or not it concerned us; 401 and no change when not signed for us.
fn push(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let query = request::query(request).to_string();
    let body = read_body(request, app.max_body_bytes)?;
    app.moderation.receive_push(&query, &body)?;
    Ok(plain(200, b"success".to_vec()))
}

/// A plain-text answer that is never cached.
fn plain(status: u16, body: Vec<u8>) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
        headers: vec![("Cache-Control", "no-store".into())],
    }
}

/// `GET /media/<token>`: a pending avatar, for WeChat's checker only. The token is 256 random
/// bits and expires, so the image is not public before it passes; the answer is never cached
/// and, like `/avatars/`, never sniffed or run as a document.
fn serve_media(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let token = &request::path(request)[MEDIA_PREFIX.len()..];
    let (content_type, body) = app.moderation.media(token)?.ok_or(Error::NotFound)?;
    let content_type = match content_type.as_str() {
        "image/png" => "image/png",
        _ => "image/jpeg",
    };
    Ok(Reply {
        status: 200,
        content_type,
        body,
        headers: vec![
            ("Cache-Control", "no-store".into()),
            ("X-Content-Type-Options", "nosniff".into()),
            (
                "Content-Security-Policy",
                "default-src 'none'; sandbox".into(),
            ),
        ],
    })
}

/// `GET /avatars/<sha256>.<ext>`: an uploaded image. Its name is its content, so it never
/// changes: cacheable forever, and its ETag is the hash. A matching `If-None-Match` is answered
/// 304 after a query for the content type only: the image is not read, yet a hash that was
/// never stored (or a wrong extension) is still a 404 rather than a 304 vouching for it.
/// The image is a user's upload shown on other origins: it may be embedded anywhere
/// (`Cross-Origin-Resource-Policy`), but never sniffed as another type or run as a document.
fn serve_avatar(app: &App, request: &mut Request, _id: &str) -> Result<Reply, Error> {
    let file_name = &request::path(request)[AVATAR_PREFIX.len()..];
    let (hash, image_type) = avatar::parse_file_name(file_name).ok_or(Error::NotFound)?;
    let content_type = image_type.content_type();
    let etag = format!("\"{hash}\"");
    let not_modified = header_value(request, "If-None-Match").is_some_and(|v| {
        v.split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    });
    let (status, body) = if not_modified {
        match app.profiles.avatar_type(hash)? {
            Some(stored_type) if stored_type == content_type => (304, Vec::new()),
            _ => return Err(Error::NotFound),
        }
    } else {
        match app.profiles.avatar(hash)? {
            Some((stored_type, bytes)) if stored_type == content_type => (200, bytes),
            _ => return Err(Error::NotFound),
        }
    };
    Ok(Reply {
        status,
        content_type,
        body,
        headers: vec![
            (
                "Cache-Control",
                "public, max-age=31536000, immutable".into(),
            ),
            ("ETag", etag),
            ("X-Content-Type-Options", "nosniff".into()),
            (
                "Content-Security-Policy",
                "default-src 'none'; sandbox".into(),
            ),
            ("Cross-Origin-Resource-Policy", "cross-origin".into()),
        ],
    })
}

/// `GET /healthz`: the process serves requests.
fn health(_app: &App, _request: &mut Request, _id: &str) -> Result<Reply, Error> {
    Ok(Reply::ok(&MessageAnswer {
        status: 200,
        message: "ok",
    }))
}

/// `GET /readyz`: the database answers too.
fn ready(app: &App, _request: &mut Request, _id: &str) -> Result<Reply, Error> {
    app.store.ping()?;
    Ok(Reply::ok(&MessageAnswer {
        status: 200,
        message: "ready",
    }))
}

/// `GET /metrics`: Prometheus' text format.
fn metrics(app: &App, _request: &mut Request, _id: &str) -> Result<Reply, Error> {
    Ok(Reply {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: app.metrics.render(app.store.pool_usage()).into_bytes(),
        headers: vec![("Cache-Control", "no-store".into())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Route; 19] = Route::ALL;

    #[test]
    fn allow_lists_exactly_the_methods_with_handlers() {
        for route in ALL {
            let spec = route.spec();
            let methods: Vec<_> = spec.handlers.iter().map(|(m, _)| *m).collect();
            assert_eq!(spec.allow, methods.join(", "), "{route:?}");
        }
    }

    #[test]
    fn every_route_is_found_by_its_own_label() {
        for route in ALL {
            let path = route
                .label()
                .replace("{file}", "x.png")
                .replace("{id}", "0123abcd");
            assert_eq!(Route::of(&path), Some(route), "{path}");
        }
        assert_eq!(Route::of("/api/wxuser/"), None);
        assert_eq!(Route::of("/api/me/sessions"), Some(Route::Sessions));
        assert_eq!(Route::of("/"), None);
    }
}
