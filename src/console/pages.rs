//! The console's pages as HTML: pure functions from what the store holds
//! to markup, one per page, so each can be tested without a server. maud
//! escapes every interpolated value: a subject, a display name or an
//! address from a mail is only ever text (the XSS a register of other
//! people's mail invites). No page has a script or an inline style; forms
//! post to the same origin with the session's CSRF token.

use maud::{DOCTYPE, Markup, html};

use crate::incident::notify::deadline;
use crate::incident::report::{local, step_local};
use crate::incident::store::{Class, HoldState, Incident, RegisterFilter, Step};
use crate::templates::Lang;

use super::words::{W, w};

/// Who is looking, as the pages need it.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The console user.
    pub name: String,
    /// `dpo` or `viewer`.
    pub role: &'static str,
    /// May release, drop and record (the `dpo` role).
    pub may_decide: bool,
    /// The session's CSRF token, for every form.
    pub csrf: String,
}

/// What every page knows: the language, the zone for times, now.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The reader's language.
    pub lang: Lang,
    /// `incidents.timezone`.
    pub zone: &'a jiff::tz::TimeZone,
    /// Unix seconds.
    pub now: i64,
}

impl Ctx<'_> {
    fn t(&self, word: W) -> &'static str {
        w(self.lang, word)
    }

    fn time(&self, t: i64) -> String {
        local(self.zone, t)
    }
}

/// Seconds as the console shows a span: `2 d 3 h`, `5 h 12 min`, `40 min`.
pub fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::De => "de",
        Lang::En => "en",
    }
}

/// The frame of every page: navigation, the language switch, who is
/// logged in and the logout form.
pub fn frame(ctx: &Ctx<'_>, title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    let other = match ctx.lang {
        Lang::De => "en",
        Lang::En => "de",
    };
    html! {
        (DOCTYPE)
        html lang=(lang_code(ctx.lang)) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · bccguard" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    nav {
                        strong { "bccguard" }
                        @if viewer.is_some() {
                            a href="/" { (ctx.t(W::Overview)) }
                            a href="/held" { (ctx.t(W::Held)) }
                            a href="/incidents" { (ctx.t(W::Incidents)) }
                        }
                        a.lang href={ "/lang/" (other) } { (ctx.t(W::Language)) }
                        @if let Some(v) = viewer {
                            span.who { (v.name) " (" (v.role) ")" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { (ctx.t(W::Logout)) }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The login form; `error` says why the last attempt failed.
pub fn login(ctx: &Ctx<'_>, error: Option<W>) -> Markup {
    let body = html! {
        @if let Some(e) = error { p.error role="alert" { (ctx.t(e)) } }
        form.login method="post" action="/login" {
            label { (ctx.t(W::User)) input type="text" name="user" autocomplete="username" required autofocus; }
            label { (ctx.t(W::Password)) input type="password" name="password" autocomplete="current-password" required; }
            button type="submit" { (ctx.t(W::Login)) }
        }
    };
    frame(ctx, ctx.t(W::Login), None, body)
}

/// What the overview shows.
#[derive(Debug, Default)]
pub struct Overview {
    /// Mail waiting for a decision (held or being released).
    pub waiting: u64,
    /// When the one waiting longest was held (Unix seconds).
    pub oldest: Option<i64>,
    /// `quarantine.retention`, seconds.
    pub retention: i64,
    /// Disclosed incidents of the last days, with whether the authority
    /// has been notified (the step "authority notified").
    pub disclosed: Vec<(Incident, bool)>,
    /// Incidents of the last 7 days by class.
    pub week: Vec<(Class, usize)>,
}

/// `/`: what needs doing now.
pub fn overview(ctx: &Ctx<'_>, viewer: &Viewer, o: &Overview) -> Markup {
    let body = html! {
        section {
            h2 { (ctx.t(W::Waiting)) ": " (o.waiting) }
            @match o.oldest {
                None => p { (ctx.t(W::NothingWaiting)) },
                Some(t) => p {
                    (ctx.t(W::Oldest)) " " (ctx.time(t)) "; "
                    (ctx.t(W::RetentionLeft)) " " (span(t + o.retention - ctx.now))
                    " · " a href="/held" { (ctx.t(W::Held)) }
                },
            }
        }
        section {
            h2 { (ctx.t(W::Disclosed)) }
            @if o.disclosed.is_empty() {
                p { (ctx.t(W::NoDisclosed)) }
            } @else {
                table {
                    thead { tr { th { (ctx.t(W::Record)) } th { (ctx.t(W::Sender)) } th { (ctx.t(W::Deadline)) } th { (ctx.t(W::DeadlineLeft)) } } }
                    tbody {
                        @for (i, done) in &o.disclosed {
                            @let d = deadline(i).unwrap_or(i.recorded_at);
                            @let left = d - ctx.now;
                            tr class=(if *done { "done" } else if left < 0 { "overdue" } else if left < 24 * 3600 { "urgent" } else { "" }) {
                                td { a href={ "/incidents/" (i.record.id) } { (i.record.id) } }
                                td { (sender(i)) }
                                td { (ctx.time(d)) }
                                td {
                                    @if *done { (ctx.t(W::Done)) }
                                    @else if left < 0 { strong { (ctx.t(W::Overdue)) } }
                                    @else { (span(left)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (ctx.t(W::LastWeek)) }
            ul {
                @for (class, n) in &o.week {
                    li { (class_word(ctx, *class)) ": " (n) }
                }
            }
        }
    };
    frame(ctx, ctx.t(W::Overview), Some(viewer), body)
}

fn class_word(ctx: &Ctx<'_>, class: Class) -> &'static str {
    match class {
        Class::Prevented => ctx.t(W::Prevented),
        Class::Disclosed => ctx.t(W::DisclosedClass),
        Class::Allowed => ctx.t(W::Allowed),
    }
}

fn sender(i: &Incident) -> &str {
    i.record
        .header_from
        .as_deref()
        .unwrap_or(&i.record.mail_from)
}

/// Page links: `href` gets `page=N` appended.
fn pager(ctx: &Ctx<'_>, href: &str, page: usize, pages: usize) -> Markup {
    let sep = if href.contains('?') { '&' } else { '?' };
    html! {
        nav.pager {
            @if page > 1 { a rel="prev" href={ (href) (sep) "page=" (page - 1) } { (ctx.t(W::Previous)) } }
            span { (ctx.t(W::PageOf)) " " (page) " / " (pages.max(1)) }
            @if page < pages { a rel="next" href={ (href) (sep) "page=" (page + 1) } { (ctx.t(W::Next)) } }
        }
    }
}

/// `/held`: the queue, newest first.
pub fn held(
    ctx: &Ctx<'_>,
    viewer: &Viewer,
    page_items: &[Incident],
    retention: i64,
    page: usize,
    pages: usize,
) -> Markup {
    let body = html! {
        @if page_items.is_empty() { p { (ctx.t(W::NothingWaiting)) } }
        @else {
            table {
                thead { tr {
                    th { (ctx.t(W::Received)) } th { (ctx.t(W::Sender)) } th { (ctx.t(W::Subject)) }
                    th { (ctx.t(W::External)) } th { (ctx.t(W::Domains)) } th { (ctx.t(W::Rule)) } th { (ctx.t(W::TimeLeft)) }
                } }
                tbody {
                    @for i in page_items {
                        tr {
                            td { a href={ "/incidents/" (i.record.id) } { (ctx.time(i.recorded_at)) } }
                            td { (sender(i)) }
                            td { (i.record.subject.as_deref().unwrap_or("")) }
                            td.num { (i.record.visible_external) }
                            td.num { (i.record.external_domains) }
                            td { (i.record.rule) }
                            td { (span(i.recorded_at + retention - ctx.now)) }
                        }
                    }
                }
            }
            (pager(ctx, "/held", page, pages))
        }
    };
    frame(ctx, ctx.t(W::Held), Some(viewer), body)
}

/// The register's filter as the form and the links carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterForm {
    /// `class`: prevented, disclosed, allowed or empty.
    pub class: String,
    /// `action`.
    pub action: String,
    /// `sender`.
    pub sender: String,
    /// `from` / `until`: dates `YYYY-MM-DD` in the console's zone.
    pub from: String,
    /// See `from`.
    pub until: String,
}

impl FilterForm {
    /// The query string of this filter (for the pager and the CSV link).
    pub fn query(&self) -> String {
        let pairs = [
            ("class", &self.class),
            ("action", &self.action),
            ("sender", &self.sender),
            ("from", &self.from),
            ("until", &self.until),
        ];
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    /// The store's filter; a date that does not parse is ignored (the
    /// form shows it as typed).
    pub fn filter(&self, zone: &jiff::tz::TimeZone) -> RegisterFilter {
        let day = |s: &str, next: bool| -> Option<i64> {
            let date: jiff::civil::Date = s.trim().parse().ok()?;
            let date = if next { date.tomorrow().ok()? } else { date };
            Some(date.to_zoned(zone.clone()).ok()?.timestamp().as_second())
        };
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        RegisterFilter {
            class: Class::parse(self.class.trim()),
            action: some(&self.action),
            sender: some(&self.sender),
            since: day(&self.from, false),
            until: day(&self.until, true),
        }
    }
}

/// `/incidents`: the register, filtered and paged, newest first.
pub fn incidents(
    ctx: &Ctx<'_>,
    viewer: &Viewer,
    form: &FilterForm,
    items: &[Incident],
    total: usize,
    page: usize,
    pages: usize,
) -> Markup {
    let classes = ["prevented", "disclosed", "allowed"];
    let actions = ["reject", "hold", "bcc", "split", "monitor", "allow"];
    let query = form.query();
    let body = html! {
        form.filter method="get" action="/incidents" {
            label { (ctx.t(W::Class))
                select name="class" {
                    option value="" { (ctx.t(W::Any)) }
                    @for c in classes { option value=(c) selected[form.class == c] { (c) } }
                }
            }
            label { (ctx.t(W::Action))
                select name="action" {
                    option value="" { (ctx.t(W::Any)) }
                    @for a in actions { option value=(a) selected[form.action == a] { (a) } }
                }
            }
            label { (ctx.t(W::Sender)) input type="text" name="sender" value=(form.sender); }
            label { (ctx.t(W::From)) input type="date" name="from" value=(form.from); }
            label { (ctx.t(W::Until)) input type="date" name="until" value=(form.until); }
            button type="submit" { (ctx.t(W::Filter)) }
        }
        p {
            (total) " · "
            a href={ "/incidents.csv" @if !query.is_empty() { "?" (query) } } { (ctx.t(W::Export)) }
        }
        table {
            thead { tr {
                th { (ctx.t(W::Received)) } th { (ctx.t(W::Class)) } th { (ctx.t(W::Action)) } th { (ctx.t(W::State)) }
                th { (ctx.t(W::External)) } th { (ctx.t(W::Sender)) } th { (ctx.t(W::Subject)) }
            } }
            tbody {
                @for i in items {
                    tr {
                        td { a href={ "/incidents/" (i.record.id) } { (ctx.time(i.recorded_at)) } }
                        td { (i.class.as_str()) }
                        td { (i.record.action) }
                        td { (i.hold.map_or("-", HoldState::as_str)) }
                        td.num { (i.record.visible_external) }
                        td { (sender(i)) }
                        td { (i.record.subject.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        (pager(ctx, &format!("/incidents{}{}", if query.is_empty() { "" } else { "?" }, query), page, pages))
    };
    frame(ctx, ctx.t(W::Incidents), Some(viewer), body)
}

/// What the incident page shows beyond the record.
#[derive(Debug, Default)]
pub struct Detail {
    /// The header section of the held message (while held).
    pub headers: Option<String>,
    /// How many affected addresses the register keeps.
    pub kept: usize,
}

/// One labelled row of the record.
fn row(label: &str, value: impl maud::Render) -> Markup {
    html! { tr { th { (label) } td { (value) } } }
}

/// `/incidents/{id}`: every field, the timeline, the header section as
/// held, and the decisions the viewer may take.
pub fn incident(
    ctx: &Ctx<'_>,
    viewer: &Viewer,
    i: &Incident,
    steps: &[Step],
    d: &Detail,
) -> Markup {
    let r = &i.record;
    let held = matches!(i.hold, Some(HoldState::Held));
    let id = &r.id;
    let record = serde_json::to_value(r).unwrap_or_default();
    let body = html! {
        table.record {
            (row(ctx.t(W::Class), i.class.as_str()))
            @if let Some(dl) = deadline(i) { (row(ctx.t(W::Deadline), ctx.time(dl))) }
            (row(ctx.t(W::State), i.hold.map_or("-", HoldState::as_str)))
            @if let serde_json::Value::Object(fields) = &record {
                @for (k, v) in fields {
                    tr { th { code { (k) } } td { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) } }
                }
            }
        }
        p { a href={ "/incidents/" (id) "/report?lang=" (lang_code(ctx.lang)) } { (ctx.t(W::Report)) } }
        @if d.kept > 0 && viewer.may_decide {
            p { a href={ "/incidents/" (id) "/recipients.csv" } { (ctx.t(W::RecipientsCsv)) " (" (d.kept) ")" } }
        }
        h2 { (ctx.t(W::Steps)) }
        ol.timeline {
            @for s in steps {
                li { time { (step_local(ctx.zone, s)) } " " strong { (s.step) } " (" (s.actor) "): " (s.detail) }
            }
        }
        @if let Some(h) = &d.headers {
            h2 { (ctx.t(W::Headers)) }
            pre.headers { (h) }
            @if viewer.may_decide { p { a href={ "/incidents/" (id) "/message" } { (ctx.t(W::ShowMessage)) } } }
        }
        @if !viewer.may_decide {
            p.note { (ctx.t(W::ViewerOnly)) }
        } @else {
            @if held {
                section.decide {
                    form method="post" action={ "/incidents/" (id) "/release" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="how" value="bcc";
                        button type="submit" { (ctx.t(W::ReleaseBcc)) }
                    }
                    form method="post" action={ "/incidents/" (id) "/release" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="how" value="split";
                        button type="submit" { (ctx.t(W::ReleaseSplit)) }
                    }
                    form method="post" action={ "/incidents/" (id) "/drop" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { (ctx.t(W::Drop)) }
                    }
                    form.original method="post" action={ "/incidents/" (id) "/release" } {
                        p.warning { (ctx.t(W::OriginalWarning)) }
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        input type="hidden" name="how" value="original";
                        label { (ctx.t(W::OriginalReason)) textarea name="reason" required {} }
                        label.check { input type="checkbox" name="confirm" value="yes" required; (ctx.t(W::OriginalConfirm)) }
                        button type="submit" { (ctx.t(W::ReleaseOriginal)) }
                    }
                }
            }
            section.record-forms {
                form method="post" action={ "/incidents/" (id) "/note" } {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    label { (ctx.t(W::Note)) textarea name="text" required {} }
                    button type="submit" { (ctx.t(W::AddNote)) }
                }
                @if i.class == Class::Disclosed {
                    @for (kind, label) in [("authority", W::AuthorityNotified), ("people", W::PeopleInformed)] {
                        form method="post" action={ "/incidents/" (id) "/notified" } {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            input type="hidden" name="kind" value=(kind);
                            fieldset {
                                legend { (ctx.t(label)) }
                                label { (ctx.t(W::Date)) input type="date" name="date" required; }
                                label { (ctx.t(W::Reference)) input type="text" name="reference"; }
                                button type="submit" { (ctx.t(W::Save)) }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(
        ctx,
        &format!("{} {id}", ctx.t(W::Record)),
        Some(viewer),
        body,
    )
}

/// `/incidents/{id}/report`: the Art. 33 draft, printable.
pub fn report(ctx: &Ctx<'_>, viewer: &Viewer, id: &str, draft: &str) -> Markup {
    let body = html! {
        p.noprint { a href={ "/incidents/" (id) } { (ctx.t(W::Record)) " " (id) } }
        pre.report { (draft) }
    };
    frame(ctx, ctx.t(W::Report), Some(viewer), body)
}

/// `/release/{id}/{token}`: the sender's page for its own held mail. The
/// link is the capability: the forms post back to it, and offer only what
/// `quarantine.sender_release` allows (never the original).
pub fn sender_release(
    ctx: &Ctx<'_>,
    i: &Incident,
    action_path: &str,
    offers: &[&'static str],
) -> Markup {
    let r = &i.record;
    let body = html! {
        p { (ctx.t(W::SenderIntro)) }
        table.record {
            (row(ctx.t(W::Subject), r.subject.as_deref().unwrap_or("")))
            (row(ctx.t(W::Received), ctx.time(i.recorded_at)))
            (row(ctx.t(W::External), r.visible_external))
        }
        section.decide {
            @for how in offers {
                form method="post" action=(action_path) {
                    input type="hidden" name="how" value=(how);
                    button type="submit" {
                        (ctx.t(match *how { "bcc" => W::SenderBcc, "split" => W::SenderSplit, _ => W::SenderDiscard }))
                    }
                }
            }
        }
    };
    frame(ctx, ctx.t(W::SenderTitle), None, body)
}

/// A short page for an error or a confirmation.
pub fn message(ctx: &Ctx<'_>, viewer: Option<&Viewer>, title: W, text: &str) -> Markup {
    frame(
        ctx,
        ctx.t(title),
        viewer,
        html! { p { (text) } p { a href="/" { (ctx.t(W::Overview)) } } },
    )
}

/// The stylesheet: served from `/static/console.css`, so the CSP can
/// forbid inline styles. Small screens get one column; print hides the
/// navigation and the forms.
pub const CSS: &str = r#"
body { font: 16px/1.45 system-ui, sans-serif; margin: 0; color: #1b1b1b; }
header nav { display: flex; flex-wrap: wrap; gap: .8em; align-items: center; padding: .6em 1em; background: #123; color: #fff; }
header a { color: #fff; }
header .who { margin-left: auto; }
main { padding: 1em; max-width: 80em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid #ddd; vertical-align: top; }
td.num { text-align: right; }
tr.urgent td { background: #fde2e1; }
tr.overdue td { background: #f8b4b0; font-weight: bold; }
tr.done td { color: #666; }
form.inline { display: inline; }
form.filter, section.decide, section.record-forms { display: flex; flex-wrap: wrap; gap: .8em; align-items: end; }
label { display: flex; flex-direction: column; gap: .2em; }
label.check { flex-direction: row; }
.error, .warning { color: #a40000; font-weight: bold; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: .8em; }
form.login { display: flex; flex-direction: column; gap: .8em; max-width: 20em; }
@media (max-width: 40em) { table, thead, tbody, tr, th, td { display: block; } thead { display: none; } }
@media print { header, form, .noprint, nav.pager { display: none; } pre { background: none; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(zone: &jiff::tz::TimeZone) -> Ctx<'_> {
        Ctx {
            lang: Lang::De,
            zone,
            now: 1_800_000_000,
        }
    }

    fn viewer(may_decide: bool) -> Viewer {
        Viewer {
            name: "anna".into(),
            role: if may_decide { "dpo" } else { "viewer" },
            may_decide,
            csrf: "tok\"en".into(),
        }
    }

    fn held_incident(subject: &str) -> Incident {
        let mut i = crate::incident::store::sample(Class::Prevented, Some(HoldState::Held));
        i.record.subject = Some(subject.into());
        i.recorded_at = 1_800_000_000 - 3600;
        i
    }

    #[test]
    fn a_subject_from_a_mail_is_text_never_markup() {
        let zone = jiff::tz::TimeZone::UTC;
        let i = held_incident("<script>alert(1)</script>");
        for page in [
            held(
                &ctx(&zone),
                &viewer(true),
                std::slice::from_ref(&i),
                7 * 86400,
                1,
                1,
            ),
            incident(&ctx(&zone), &viewer(true), &i, &[], &Detail::default()),
        ] {
            let html = page.into_string();
            assert!(!html.contains("<script>"), "{html}");
            assert!(
                html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{html}"
            );
            assert!(
                html.contains("value=\"tok&quot;en\""),
                "the token is escaped too"
            );
        }
    }

    #[test]
    fn only_the_dpo_role_gets_the_decisions() {
        let zone = jiff::tz::TimeZone::UTC;
        let i = held_incident("Termine");
        let dpo = incident(&ctx(&zone), &viewer(true), &i, &[], &Detail::default()).into_string();
        assert!(dpo.contains("/release") && dpo.contains("/drop"), "{dpo}");
        assert!(
            dpo.contains("name=\"confirm\""),
            "an original needs the confirmation"
        );
        let reader =
            incident(&ctx(&zone), &viewer(false), &i, &[], &Detail::default()).into_string();
        assert!(
            !reader.contains("/release") && !reader.contains("/drop"),
            "{reader}"
        );
        assert!(reader.contains("Nur Lesen"), "{reader}");
    }

    #[test]
    fn spans_and_filters_read_as_people_write_them() {
        assert_eq!(span(40 * 60), "40 min");
        assert_eq!(span(5 * 3600 + 12 * 60), "5 h 12 min");
        assert_eq!(span(2 * 86400 + 3 * 3600), "2 d 3 h");
        assert_eq!(span(-5), "0 min");
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let form = FilterForm {
            class: "disclosed".into(),
            sender: "a&b".into(),
            from: "2026-12-01".into(),
            until: "2026-12-01".into(),
            ..Default::default()
        };
        let f = form.filter(&berlin);
        assert_eq!(f.class, Some(Class::Disclosed));
        // Midnight in Berlin (UTC+1) to the next midnight.
        assert_eq!(f.since, Some(1_796_079_600));
        assert_eq!(f.until, Some(1_796_079_600 + 86400));
        assert_eq!(
            form.query(),
            "class=disclosed&sender=a%26b&from=2026-12-01&until=2026-12-01"
        );
        assert_eq!(
            FilterForm::default().filter(&berlin),
            RegisterFilter::default()
        );
    }
}
