//! The console's HTTP side: the router, who is asking (a session cookie,
//! or a trusted proxy's user header), the CSRF check on every POST, and
//! the handlers that turn a request into a store read or a workflow step.
//!
//! Rules every handler keeps (OWASP ASVS 4.0, V3 and V4):
//! - Nothing changes on GET (a link scanner or a prefetch fetches every
//!   URL); every change is a POST with the session's CSRF token, or 403
//!   and nothing changed.
//! - The session cookie is `HttpOnly`, `SameSite=Strict`, `Secure` under
//!   TLS, and a fresh random id at each login (no fixation); the store
//!   keeps only its hash.
//! - Every response carries a strict Content-Security-Policy (no script
//!   at all, styles from the console itself) and is not cached.
//! - `viewer` reads; only `dpo` decides, sees message bodies and
//!   recipient lists. The check is here, not only in the page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use crate::config::{Config, ConsoleAuth};
use crate::incident::Workflow;
use crate::incident::notify::ART33_DEADLINE;
use crate::incident::quarantine::{self, By, ReleaseAs};
use crate::incident::store::{
    self, Class, ConsoleSession, HoldState, Incident, RegisterFilter, Step, StoreError,
};
use crate::templates::Lang;

use super::auth::{self, Role, Throttle};
use super::pages::{self, Ctx, Detail, FilterForm, Viewer};
use super::tls::ClientAddr;
use super::words::{W, negotiate, w};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "bccguard_session";
/// The language cookie's name (set by the switch).
pub const LANG_COOKIE: &str = "bccguard_lang";
/// Rows per page of the queue and the register: a screenful on a laptop,
/// and a bounded query whatever the register holds.
pub const PAGE_SIZE: usize = 50;
/// The overview counts incidents of this many days.
pub const OVERVIEW_DAYS: i64 = 7;
/// A disclosure stays on the overview this long past its deadline
/// (flagged overdue), as in `bccguard_incident_deadline_seconds`.
pub const OVERDUE_SHOWN: i64 = 86400;
/// At most this many disclosures on the overview (the register has all).
pub const OVERVIEW_DISCLOSED: usize = 100;

/// The policy every response carries: no script from anywhere, styles and
/// images from the console only, forms only to itself, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the handlers share.
pub struct Console {
    /// The register, the quarantine and the configuration in force.
    pub wf: Workflow,
    /// Failed logins per user and per address.
    pub throttle: Throttle,
    /// Served over TLS: the cookie gets `Secure`.
    pub tls: bool,
}

type Shared = Arc<Console>;

/// The console's router.
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/lang/{lang}", get(set_lang))
        .route("/static/console.css", get(css))
        .route("/held", get(held))
        .route("/incidents", get(incidents))
        .route("/incidents.csv", get(incidents_csv))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/report", get(report))
        .route("/incidents/{id}/message", get(message))
        .route("/incidents/{id}/recipients.csv", get(recipients_csv))
        .route("/incidents/{id}/release", post(release))
        .route("/incidents/{id}/drop", post(drop_held))
        .route("/incidents/{id}/note", post(note))
        .route("/incidents/{id}/notified", post(notified))
        .route(
            "/release/{id}/{token}",
            get(sender_page).post(sender_decide),
        )
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// The headers of every response.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

/// A cookie's value from the request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The reader's language: the switch's cookie, else the browser's.
fn lang(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            negotiate(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        })
}

/// A request's context for the pages.
fn ctx<'a>(cfg: &'a Config, headers: &HeaderMap) -> Ctx<'a> {
    Ctx {
        lang: lang(headers),
        zone: &cfg.incidents.timezone,
        now: crate::clock::now() as i64,
    }
}

/// An HTML page with a status.
fn html(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A short page for a refusal.
fn refusal(cfg: &Config, headers: &HeaderMap, status: StatusCode, word: W) -> Response {
    let c = ctx(cfg, headers);
    html(status, pages::message(&c, None, word, w(c.lang, word)))
}

/// The logged-in user of a request with its session, or the response
/// that sends the browser to the login (or refuses it).
struct Who {
    viewer: Viewer,
    role: Role,
    session: ConsoleSession,
    /// The cookie's token: the CSRF token is derived from it.
    token: String,
}

async fn who(c: &Shared, headers: &HeaderMap, peer: SocketAddr) -> Result<Who, Response> {
    who_at(c, headers, peer, "/").await
}

/// [`who`] for a request to `uri` (where `auth: header` comes back to).
async fn who_at(
    c: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
    uri: &str,
) -> Result<Who, Response> {
    let cfg = c.wf.config();
    let now = crate::clock::now() as i64;
    let token = cookie(headers, SESSION_COOKIE).map(str::to_string);
    let from_session = match &token {
        Some(t) => {
            let key = auth::session_key(t);
            store::call(&c.wf.store, move |s| s.session(&key, now))
                .await
                .map_err(|e| store_down(&cfg, headers, &e))?
        }
        None => None,
    };
    if cfg.console.auth == ConsoleAuth::Header {
        // The proxy's word counts only from the proxy, and only for a
        // user the table knows; a session of another user is not reused.
        let trusted = cfg
            .console
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer.ip().to_canonical()));
        let named = headers
            .get(cfg.console.header_name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let Some(name) = named.filter(|_| trusted) else {
            return Err(refusal(&cfg, headers, StatusCode::FORBIDDEN, W::Forbidden));
        };
        let name = auth::normalize_user_name(name).unwrap_or_default();
        if let (Some((session, user)), Some(t)) = (from_session, token)
            && user.name == name
        {
            return Ok(to_who(session, &user, t));
        }
        // No session of this user yet: the proxy logged them in; the
        // console opens its own (for the CSRF token) and comes back.
        return Err(header_login(c, &cfg, headers, &name, peer, uri).await);
    }
    match (from_session, token) {
        (Some((session, user)), Some(t)) => Ok(to_who(session, &user, t)),
        _ => Err(Redirect::to("/login").into_response()),
    }
}

fn to_who(session: ConsoleSession, user: &store::User, token: String) -> Who {
    let role = user.role;
    Who {
        viewer: Viewer {
            name: user.name.clone(),
            role: role.as_str(),
            may_decide: role.may_decide(),
            csrf: auth::csrf_token(&token),
        },
        role,
        session,
        token,
    }
}

/// `auth: header`: the proxy named a user the console has no session of.
/// A name the user table does not know is refused; a known one gets a
/// fresh session and is sent back to where it was going.
async fn header_login(
    c: &Shared,
    cfg: &Config,
    headers: &HeaderMap,
    name: &str,
    peer: SocketAddr,
    uri: &str,
) -> Response {
    let key = name.to_string();
    let user = match store::call(&c.wf.store, move |s| s.user(&key)).await {
        Ok(u) => u,
        Err(e) => return store_down(cfg, headers, &e),
    };
    let Some(user) = user else {
        c.wf.metrics.console_login("failed");
        tracing::warn!(user = %name, client = %peer.ip(), "console: the proxy named a user the console does not know");
        return refusal(cfg, headers, StatusCode::FORBIDDEN, W::Forbidden);
    };
    match open_session(c, cfg, &user, peer).await {
        Ok(cookie) => {
            // Only a path of ours: never an absolute URL from the request.
            let back = if uri.starts_with('/') && !uri.starts_with("//") {
                uri
            } else {
                "/"
            };
            ([(header::SET_COOKIE, cookie)], Redirect::to(back)).into_response()
        }
        Err(e) => store_down(cfg, headers, &e),
    }
}

/// A fresh session for `user` (a new random id at every login: no
/// fixation); returns its Set-Cookie value.
async fn open_session(
    c: &Shared,
    cfg: &Config,
    user: &store::User,
    peer: SocketAddr,
) -> Result<String, StoreError> {
    let now = crate::clock::now() as i64;
    let token = auth::new_session_token();
    let session = ConsoleSession {
        key: auth::session_key(&token),
        user: user.name.clone(),
        csrf: None,
        created_at: now,
        expires_at: now + cfg.console.session_ttl.as_secs() as i64,
        client: Some(peer.ip().to_canonical().to_string()),
    };
    store::call(&c.wf.store, move |s| s.create_session(&session)).await?;
    c.wf.metrics.console_login("ok");
    tracing::info!(user = %user.name, client = %peer.ip(), "console login");
    Ok(format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        cfg.console.session_ttl.as_secs(),
        if c.tls { "; Secure" } else { "" }
    ))
}

fn store_down(cfg: &Config, headers: &HeaderMap, e: &StoreError) -> Response {
    tracing::error!("console: store: {e}");
    refusal(cfg, headers, StatusCode::SERVICE_UNAVAILABLE, W::BadRequest)
}

/// A POST's CSRF check: the form's token against the session's, in
/// constant time. Without it, 403 and nothing changes.
fn csrf(who: &Who, presented: &str) -> bool {
    auth::csrf_ok(&who.token, presented)
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::CSS,
    )
}

async fn set_lang(Path(l): Path<String>) -> Response {
    let Some(l) = Lang::parse(&l) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let code = match l {
        Lang::De => "de",
        Lang::En => "en",
    };
    // A preference, not a change of anything the console keeps.
    (
        [(
            header::SET_COOKIE,
            format!("{LANG_COOKIE}={code}; Path=/; SameSite=Strict; Max-Age=31536000"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

async fn login_form(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let cfg = c.wf.config();
    html(StatusCode::OK, pages::login(&ctx(&cfg, &headers), None))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cfg = c.wf.config();
    let page = |status, e| html(status, pages::login(&ctx(&cfg, &headers), Some(e)));
    let now = std::time::Instant::now();
    let ip = peer.ip().to_canonical();
    let name = auth::normalize_user_name(f.user.trim()).unwrap_or_default();
    if let Err(retry) = c.throttle.check(&name, ip, now) {
        c.wf.metrics.console_login("throttled");
        tracing::warn!(user = %name, client = %ip, retry_after = retry.as_secs(), "console login throttled");
        let mut r = page(StatusCode::TOO_MANY_REQUESTS, W::LoginThrottled);
        if let Ok(v) = HeaderValue::from_str(&retry.as_secs().to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let key = name.clone();
    let user = match store::call(&c.wf.store, move |s| s.user(&key)).await {
        Ok(u) => u,
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    // Argon2 is slow by design: off the runtime threads.
    let password = f.password;
    let checked = tokio::task::spawn_blocking(move || match user {
        Some(u) if auth::verify_password(&password, &u.password_hash) => Some(u),
        Some(_) => None,
        None => {
            auth::verify_unknown_user(&password);
            None
        }
    })
    .await
    .ok()
    .flatten();
    let Some(user) = checked else {
        c.throttle.failed(&name, ip, now);
        c.wf.metrics.console_login("failed");
        tracing::warn!(user = %name, client = %ip, "console login failed");
        return page(StatusCode::UNAUTHORIZED, W::LoginFailed);
    };
    c.throttle.succeeded(&name, ip);
    match open_session(&c, &cfg, &user, peer).await {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
        Err(e) => store_down(&cfg, &headers, &e),
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    if !csrf(&who, &f.csrf) {
        return refusal(&cfg, &headers, StatusCode::FORBIDDEN, W::Forbidden);
    }
    let key = who.session.key.clone();
    if let Err(e) = store::call(&c.wf.store, move |s| s.delete_session(&key)).await {
        return store_down(&cfg, &headers, &e);
    }
    let gone = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, gone)], Redirect::to("/login")).into_response()
}

async fn overview(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let cx = ctx(&cfg, &headers);
    let since = cx.now - OVERVIEW_DAYS * 86400;
    // The disclosures whose deadline is ahead or passed less than a day
    // ago: what the overview counts down (older ones are in the register).
    let open = RegisterFilter {
        class: Some(Class::Disclosed),
        since: Some(cx.now - ART33_DEADLINE - OVERDUE_SHOWN),
        ..RegisterFilter::default()
    };
    let read = store::call(&c.wf.store, move |s| {
        let tally = s.tally(i64::MAX)?;
        let week = s.count_by_class(since)?;
        let done = s.incidents_with_step(AUTHORITY_NOTIFIED)?;
        let (open, _) = s.register(&open, 0, OVERVIEW_DISCLOSED)?;
        let disclosed = open
            .into_iter()
            .map(|i| {
                let d = done.contains(&i.record.id);
                (i, d)
            })
            .collect();
        Ok((tally, week, disclosed))
    })
    .await;
    let (tally, week, disclosed) = match read {
        Ok(v) => v,
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    let count = |class| {
        week.iter()
            .find(|(k, _)| *k == class)
            .map_or(0, |(_, n)| *n)
    };
    let o = pages::Overview {
        waiting: tally.waiting,
        oldest: tally.oldest_held_at,
        retention: cfg.quarantine.retention.as_secs() as i64,
        disclosed,
        week: [Class::Prevented, Class::Disclosed, Class::Allowed]
            .into_iter()
            .map(|k| (k, count(k)))
            .collect(),
    };
    html(StatusCode::OK, pages::overview(&cx, &who.viewer, &o))
}

/// The step that marks a disclosed incident reported to the authority.
pub const AUTHORITY_NOTIFIED: &str = "authority notified";
/// The step that marks the people concerned informed (Art. 34).
pub const PEOPLE_INFORMED: &str = "people informed";

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    page: Option<usize>,
}

fn pages_of(total: usize) -> usize {
    total.div_ceil(PAGE_SIZE).max(1)
}

async fn held(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let mut all = match store::call(&c.wf.store, |s| s.held()).await {
        Ok(v) => v,
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    // Newest first, as the queue reads.
    all.reverse();
    let pages = pages_of(all.len());
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let items: Vec<Incident> = all
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    let retention = cfg.quarantine.retention.as_secs() as i64;
    let cx = ctx(&cfg, &headers);
    html(
        StatusCode::OK,
        pages::held(&cx, &who.viewer, &items, retention, page, pages),
    )
}

#[derive(Deserialize, Default)]
struct RegisterQuery {
    #[serde(default)]
    class: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    page: Option<usize>,
}

impl RegisterQuery {
    fn form(&self) -> FilterForm {
        FilterForm {
            class: self.class.clone(),
            action: self.action.clone(),
            sender: self.sender.clone(),
            from: self.from.clone(),
            until: self.until.clone(),
        }
    }
}

async fn incidents(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let form = q.form();
    let filter = form.filter(&cfg.incidents.timezone);
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1) * PAGE_SIZE;
    let read = store::call(&c.wf.store, move |s| s.register(&filter, offset, PAGE_SIZE)).await;
    let (items, total) = match read {
        Ok(v) => v,
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    let cx = ctx(&cfg, &headers);
    html(
        StatusCode::OK,
        pages::incidents(
            &cx,
            &who.viewer,
            &form,
            &items,
            total,
            page,
            pages_of(total),
        ),
    )
}

/// One CSV field: quoted, and a leading `=`, `+`, `-`, `@` (a formula in
/// a spreadsheet: CSV injection, OWASP) neutralised with a `'`, since a
/// subject comes from whoever sent the mail.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The register as CSV, one incident a line (the filtered view; every
/// page of it): the documentation Art. 33(5) asks for.
pub fn register_csv(items: &[Incident]) -> String {
    let mut out = String::from(
        "id,recorded_at,class,action,hold,rule,visible_external,external_domains,envelope_recipients,sender,subject,disclosed_at,deadline\r\n",
    );
    for i in items {
        let r = &i.record;
        let fields = [
            r.id.clone(),
            crate::clock::rfc3339(i.recorded_at),
            i.class.as_str().into(),
            r.action.clone(),
            i.hold.map_or("", HoldState::as_str).into(),
            r.rule.clone(),
            r.visible_external.to_string(),
            r.external_domains.to_string(),
            r.envelope_recipients.to_string(),
            r.header_from.clone().unwrap_or_else(|| r.mail_from.clone()),
            r.subject.clone().unwrap_or_default(),
            i.disclosed_at
                .map(crate::clock::rfc3339)
                .unwrap_or_default(),
            crate::incident::notify::deadline(i)
                .map(crate::clock::rfc3339)
                .unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The register export reads it in pages of this many, so a large
/// register is never one query result in memory twice.
const CSV_BATCH: usize = 1000;

async fn incidents_csv(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    if let Err(r) = who(&c, &headers, peer).await {
        return r;
    }
    let cfg = c.wf.config();
    let filter = q.form().filter(&cfg.incidents.timezone);
    let read = store::call(&c.wf.store, move |s| {
        let mut all = Vec::new();
        loop {
            let (page, total) = s.register(&filter, all.len(), CSV_BATCH)?;
            let done = page.is_empty() || all.len() + page.len() >= total;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    })
    .await;
    match read {
        Ok(items) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"bccguard-incidents.csv\"",
                ),
            ],
            register_csv(&items),
        )
            .into_response(),
        Err(e) => store_down(&cfg, &headers, &e),
    }
}

/// The header section of a message, as the policy read it
/// ([`crate::message::headers::scan`]; a held message passed its size
/// limit already).
fn header_section(message: &[u8]) -> String {
    let end = crate::message::headers::scan(message, usize::MAX).map_or(message.len(), |h| h.end);
    String::from_utf8_lossy(&message[..end]).into_owned()
}

async fn incident(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    // The DPO's notice links here: `auth: header` comes back to it.
    let here = format!(
        "/incidents/{}",
        form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    let who = match who_at(&c, &headers, peer, &here).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let key = id.clone();
    let read = store::call(&c.wf.store, move |s| {
        let i = s.incident(&key)?;
        let steps = s.steps(&key)?;
        let held = match i.hold {
            Some(HoldState::Held | HoldState::Releasing) => Some(s.held_message(&key)?),
            _ => None,
        };
        let kept = s.affected(&key)?.addresses.len();
        Ok((i, steps, held, kept))
    })
    .await;
    let (i, steps, held, kept) = match read {
        Ok(v) => v,
        Err(StoreError::NotFound(_)) => {
            return refusal(&cfg, &headers, StatusCode::NOT_FOUND, W::NotFound);
        }
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    let detail = Detail {
        headers: held.map(|h| header_section(&h.message)),
        kept,
    };
    let cx = ctx(&cfg, &headers);
    html(
        StatusCode::OK,
        pages::incident(&cx, &who.viewer, &i, &steps, &detail),
    )
}

#[derive(Deserialize, Default)]
struct LangQuery {
    #[serde(default)]
    lang: String,
}

async fn report(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let key = id.clone();
    let read = store::call(&c.wf.store, move |s| {
        Ok((s.incident(&key)?, s.steps(&key)?, s.affected(&key)?))
    })
    .await;
    let (i, steps, kept) = match read {
        Ok(v) => v,
        Err(StoreError::NotFound(_)) => {
            return refusal(&cfg, &headers, StatusCode::NOT_FOUND, W::NotFound);
        }
        Err(e) => return store_down(&cfg, &headers, &e),
    };
    let mut cx = ctx(&cfg, &headers);
    if let Some(l) = Lang::parse(&q.lang) {
        cx.lang = l;
    }
    let draft = crate::incident::report::draft(&cfg, &i, &steps, &kept, cx.now, cx.lang);
    html(StatusCode::OK, pages::report(&cx, &who.viewer, &id, &draft))
}

async fn message(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    if !who.role.may_see_recipients() {
        return refusal(&cfg, &headers, StatusCode::FORBIDDEN, W::Forbidden);
    }
    match store::call(&c.wf.store, move |s| s.held_message(&id)).await {
        // Plain text with nosniff: a message's HTML is never rendered.
        Ok(h) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            String::from_utf8_lossy(&h.message).into_owned(),
        )
            .into_response(),
        Err(StoreError::NotFound(_) | StoreError::NotHeld { .. }) => {
            refusal(&cfg, &headers, StatusCode::NOT_FOUND, W::NotFound)
        }
        Err(e) => store_down(&cfg, &headers, &e),
    }
}

async fn recipients_csv(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match who(&c, &headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    if !who.role.may_see_recipients() {
        return refusal(&cfg, &headers, StatusCode::FORBIDDEN, W::Forbidden);
    }
    let step = Step::now(
        &who.viewer.name,
        "recipients viewed",
        "affected addresses downloaded in the console",
    );
    let key = id.clone();
    let read = store::call(&c.wf.store, move |s| {
        let kept = s.affected(&key)?;
        if !kept.addresses.is_empty() {
            s.add_step(&key, &step)?;
        }
        Ok(kept)
    })
    .await;
    match read {
        Ok(kept) if !kept.addresses.is_empty() => {
            let mut out = String::from("address\r\n");
            for a in &kept.addresses {
                out.push_str(&csv_field(a));
                out.push_str("\r\n");
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"affected-addresses.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Ok(_) | Err(StoreError::NotFound(_)) => {
            refusal(&cfg, &headers, StatusCode::NOT_FOUND, W::NotFound)
        }
        Err(e) => store_down(&cfg, &headers, &e),
    }
}

/// A decision's common start: the user, the CSRF token, the role.
async fn decider(
    c: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
    token: &str,
) -> Result<Who, Response> {
    let who = who(c, headers, peer).await?;
    let cfg = c.wf.config();
    if !csrf(&who, token) || !who.role.may_decide() {
        return Err(refusal(&cfg, headers, StatusCode::FORBIDDEN, W::Forbidden));
    }
    Ok(who)
}

/// Back to the incident after a decision.
fn back(id: &str) -> Response {
    Redirect::to(&format!("/incidents/{id}")).into_response()
}

#[derive(Deserialize)]
struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    how: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

async fn release(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ReleaseForm>,
) -> Response {
    let who = match decider(&c, &headers, peer, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let how = match f.how.as_str() {
        "bcc" => ReleaseAs::Bcc,
        "split" => ReleaseAs::Split,
        // An original starts the 72 hours: a written reason and the
        // second confirmation, or nothing happens.
        "original" if !f.reason.trim().is_empty() && f.confirm == "yes" => ReleaseAs::Original,
        _ => return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest),
    };
    if how == ReleaseAs::Original {
        let step = Step::now(
            &who.viewer.name,
            "note",
            format!("reason for releasing the original: {}", f.reason.trim()),
        );
        let key = id.clone();
        if let Err(e) = store::call(&c.wf.store, move |s| s.add_step(&key, &step)).await {
            return store_down(&cfg, &headers, &e);
        }
    }
    let done = quarantine::release_by(&c.wf.store, &cfg, &id, how, &who.viewer.name, By::Console)
        .await
        .map(|r| r.summary);
    decided(&c, &cfg, &headers, &who, &id, how.as_str(), done)
}

/// A console decision's answer: back to the incident (the workflow woken
/// for the notices the decision queued), or the page saying why not.
fn decided(
    c: &Shared,
    cfg: &Config,
    headers: &HeaderMap,
    who: &Who,
    id: &str,
    what: &str,
    done: Result<String, quarantine::QuarantineError>,
) -> Response {
    match done {
        Ok(summary) => {
            tracing::info!(incident = %id, user = %who.viewer.name, what, summary = %summary, "decided in the console");
            c.wf.wake.notify_one();
            back(id)
        }
        Err(e) => {
            tracing::warn!(incident = %id, user = %who.viewer.name, what, "console decision: {e}");
            let cx = ctx(cfg, headers);
            html(
                StatusCode::CONFLICT,
                pages::message(&cx, Some(&who.viewer), W::Record, &e.to_string()),
            )
        }
    }
}

async fn drop_held(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let who = match decider(&c, &headers, peer, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let done = quarantine::drop_by(&c.wf.store, &cfg, &id, &who.viewer.name, By::Console)
        .await
        .map(|()| "deleted".to_string());
    decided(&c, &cfg, &headers, &who, &id, "drop", done)
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

/// The longest note kept: a paragraph, not a document store.
pub const MAX_NOTE: usize = 4000;

async fn note(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Response {
    let who = match decider(&c, &headers, peer, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let text = f.text.trim();
    if text.is_empty() || text.len() > MAX_NOTE {
        return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest);
    }
    add_step(
        &c,
        &cfg,
        &headers,
        &id,
        Step::now(&who.viewer.name, "note", text),
    )
    .await
}

async fn add_step(c: &Shared, cfg: &Config, headers: &HeaderMap, id: &str, step: Step) -> Response {
    let key = id.to_string();
    match store::call(&c.wf.store, move |s| {
        s.incident(&key)?;
        s.add_step(&key, &step)
    })
    .await
    {
        Ok(()) => back(id),
        Err(StoreError::NotFound(_)) => refusal(cfg, headers, StatusCode::NOT_FOUND, W::NotFound),
        Err(e) => store_down(cfg, headers, &e),
    }
}

#[derive(Deserialize)]
struct NotifiedForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    date: String,
    #[serde(default)]
    reference: String,
}

async fn notified(
    State(c): State<Shared>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<NotifiedForm>,
) -> Response {
    let who = match decider(&c, &headers, peer, &f.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let step_name = match f.kind.as_str() {
        "authority" => AUTHORITY_NOTIFIED,
        "people" => PEOPLE_INFORMED,
        _ => return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest),
    };
    let Ok(date) = f.date.trim().parse::<jiff::civil::Date>() else {
        return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest);
    };
    let reference = f.reference.trim();
    if reference.len() > MAX_NOTE {
        return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest);
    }
    let detail = if reference.is_empty() {
        format!("on {date}")
    } else {
        format!("on {date}, reference {reference}")
    };
    add_step(
        &c,
        &cfg,
        &headers,
        &id,
        Step::now(&who.viewer.name, step_name, detail),
    )
    .await
}

/// The sender's link, checked: the incident, still held, and the link
/// made for its sender; else the page that says why.
async fn sender_incident(
    c: &Shared,
    headers: &HeaderMap,
    id: &str,
    token: &str,
) -> Result<Incident, Response> {
    use crate::incident::sender_link::{self, LinkError};
    let cfg = c.wf.config();
    let now = crate::clock::now() as i64;
    let invalid = |word| refusal(&cfg, headers, StatusCode::FORBIDDEN, word);
    if cfg.quarantine.sender_release.is_empty() {
        return Err(invalid(W::LinkInvalid));
    }
    let key = id.to_string();
    let read = store::call(&c.wf.store, move |s| {
        Ok((s.incident(&key)?, s.key(sender_link::KEY_NAME)?))
    })
    .await;
    let (i, secret) = match read {
        Ok(v) => v,
        Err(StoreError::NotFound(_)) => return Err(invalid(W::LinkInvalid)),
        Err(e) => return Err(store_down(&cfg, headers, &e)),
    };
    match sender_link::verify(&secret, id, &i.record.mail_from, token, now) {
        Ok(()) => {}
        Err(LinkError::Bad) => return Err(invalid(W::LinkInvalid)),
        Err(LinkError::Expired) => {
            return Err(refusal(&cfg, headers, StatusCode::GONE, W::LinkExpired));
        }
    }
    if i.hold != Some(HoldState::Held) {
        return Err(refusal(
            &cfg,
            headers,
            StatusCode::CONFLICT,
            W::NoLongerHeld,
        ));
    }
    Ok(i)
}

/// What the sender may do with `cfg`: the configured releases, and discard.
fn sender_offers(cfg: &Config) -> Vec<&'static str> {
    use crate::policy::Action;
    let mut offers: Vec<&'static str> = cfg
        .quarantine
        .sender_release
        .iter()
        .map(|a| if *a == Action::Bcc { "bcc" } else { "split" })
        .collect();
    offers.push("discard");
    offers
}

/// GET of the sender's link: only shows the page (link scanners fetch
/// every URL of a mail).
async fn sender_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
) -> Response {
    let i = match sender_incident(&c, &headers, &id, &token).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    let cx = ctx(&cfg, &headers);
    let path = crate::incident::sender_link::path(&id, &token);
    html(
        StatusCode::OK,
        pages::sender_release(&cx, &i, &path, &sender_offers(&cfg)),
    )
}

#[derive(Deserialize)]
struct SenderForm {
    how: String,
}

/// POST of the sender's link: the decision, recorded under the sender's
/// address as "via sender link".
async fn sender_decide(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
    Form(f): Form<SenderForm>,
) -> Response {
    let i = match sender_incident(&c, &headers, &id, &token).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let cfg = c.wf.config();
    if !sender_offers(&cfg).contains(&f.how.as_str()) {
        return refusal(&cfg, &headers, StatusCode::BAD_REQUEST, W::BadRequest);
    }
    let sender = i.record.mail_from.clone();
    let done = match f.how.as_str() {
        "discard" => quarantine::drop_by(&c.wf.store, &cfg, &id, &sender, By::Sender).await,
        how => {
            let how = if how == "bcc" {
                ReleaseAs::Bcc
            } else {
                ReleaseAs::Split
            };
            quarantine::release_by(&c.wf.store, &cfg, &id, how, &sender, By::Sender)
                .await
                .map(|_| ())
        }
    };
    let cx = ctx(&cfg, &headers);
    match done {
        Ok(()) => {
            tracing::info!(incident = %id, sender = %sender, how = %f.how, "decided by the sender's link");
            c.wf.wake.notify_one();
            html(
                StatusCode::OK,
                pages::message(&cx, None, W::SenderTitle, w(cx.lang, W::SenderDone)),
            )
        }
        Err(e) => {
            tracing::warn!(incident = %id, "sender link: {e}");
            html(
                StatusCode::CONFLICT,
                pages::message(&cx, None, W::SenderTitle, &e.to_string()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_from_a_subject_stays_text_in_the_export() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_field("Termin, Montag"), "\"Termin, Montag\"");
        assert_eq!(csv_field("-1"), "\"'-1\"");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bccguard_session=tok; bccguard_lang=en"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(lang(&h), Lang::En);
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        assert_eq!(
            header_section(b"Subject: x\r\nTo: a@b\r\n\r\nbody\r\n"),
            "Subject: x\r\nTo: a@b\r\n"
        );
        assert_eq!(header_section(b"Subject: x\r\n"), "Subject: x\r\n");
    }
}
