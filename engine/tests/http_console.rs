//! The web console over HTTP against a real in-process server (`launch`, MemoryStore) on
//! 127.0.0.1: sign-in with good and bad tokens, the session cookie's flags, CSRF refusals,
//! app isolation, escaping of user-provided names, and a job created through the form, listed
//! and run on a real worker until its instance page shows SUCCEED.

use std::time::Duration;

use ferrojob::api::{CreateApp, JobBody, RunJob};
use ferrojob::client::Client;
use ferrojob::launch::{launch, LaunchConfig, RunningServer};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{Worker, WorkerConfig};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;

const APP_A: &str = "console-a";
const SECRET_A: &str = "secret-of-app-a-01";
const APP_B: &str = "console-b";
const SECRET_B: &str = "secret-of-app-b-01";
/// How long a test waits for something the server does asynchronously.
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    server: RunningServer,
    base: String,
    http: reqwest::Client,
    api: Client,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(false).await
    }

    async fn start_with(secure_cookies: bool) -> Harness {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = LaunchConfig::new(None, any, any);
        config.secure_cookies = secure_cookies;
        // Sessions sign in with the apps' secrets: the compatibility mode.
        config.app_secret_tokens = true;
        let server = launch(config).await.unwrap();
        let base = format!("http://{}", server.http_addr());
        let api = Client::new(&base, server.admin_token()).unwrap();
        for (name, secret) in [(APP_A, SECRET_A), (APP_B, SECRET_B)] {
            let app = CreateApp {
                name: name.into(),
                secret: secret.into(),
            };
            api.create_app(&app).await.unwrap();
        }
        let http = ferrojob::https::HttpsRoots::public()
            .client_builder()
            .unwrap()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            server,
            base,
            http,
            api,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` with the session cookie `session` (if any): status, `Location`, body.
    async fn get(&self, path: &str, session: Option<&str>) -> (StatusCode, String, String) {
        let mut req = self.http.get(self.url(path));
        if let Some(s) = session {
            req = req.header(COOKIE, format!("ferrojob_session={s}"));
        }
        answer(req.send().await.unwrap()).await
    }

    /// POST a urlencoded form to `path` with `cookie` as the `Cookie` header.
    async fn post(
        &self,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let resp = self
            .http
            .post(self.url(path))
            .header(COOKIE, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// POST with a session's cookie and its CSRF token added to `fields`.
    async fn post_as(
        &self,
        s: &Signed,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let mut all = vec![("_csrf", s.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &format!("ferrojob_session={}", s.id), &all)
            .await
    }

    /// Signs in through the form: the raw answer of `POST /login`.
    async fn sign_in_raw(&self, app: &str, token: &str) -> reqwest::Response {
        let page = self.http.get(self.url("/login")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let login_cookie = set_cookie(&page, "ferrojob_login").unwrap();
        let csrf = csrf_in(&page.text().await.unwrap());
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("_csrf", csrf.as_str()), ("app", app), ("token", token)])
            .finish();
        self.http
            .post(self.url("/login"))
            .header(COOKIE, format!("ferrojob_login={login_cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Signs in and reads the session's CSRF token from the overview.
    async fn sign_in(&self, app: &str, token: &str) -> Signed {
        let resp = self.sign_in_raw(app, token).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in refused");
        let id = set_cookie(&resp, "ferrojob_session").unwrap();
        let (status, _, page) = self.get("/", Some(&id)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        Signed {
            csrf: csrf_in(&page),
            id,
        }
    }

    async fn job_id(&self, app: &str, name: &str) -> ferrojob::ids::JobId {
        let body = JobBody::new(name, TimeExpressionType::Api, "", "noop");
        self.api.create_job(app, &body).await.unwrap().id
    }
}

/// A signed-in browser: its session cookie and CSRF token.
struct Signed {
    id: String,
    csrf: String,
}

async fn answer(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, location, resp.text().await.unwrap())
}

/// The value `resp` sets for cookie `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie_line(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or("")
        .to_owned()
}

/// The first `_csrf` hidden field's value in `html`.
fn csrf_in(html: &str) -> String {
    let marker = r#"name="_csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF field") + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_takes_the_admin_token_or_the_apps_secret_only() {
    let h = Harness::start().await;
    for (app, token) in [
        (APP_A, "wrong"),
        (APP_A, SECRET_B),
        ("no-such-app", SECRET_A),
        (APP_A, ""),
    ] {
        let resp = h.sign_in_raw(app, token).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{app} {token}");
        assert_eq!(set_cookie(&resp, "ferrojob_session"), None);
    }
    // The sign-in form itself needs its double-submit token.
    let (status, _, _) = h
        .post(
            "/login",
            "",
            &[("_csrf", "x"), ("app", APP_A), ("token", SECRET_A)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let resp = h.sign_in_raw(APP_A, SECRET_A).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let line = set_cookie_line(&resp, "ferrojob_session");
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Strict"), "{line}");
    assert!(line.contains("Path=/"), "{line}");
    assert!(!line.contains("Secure"), "plain HTTP: {line}");

    let admin = h.sign_in(APP_B, h.server.admin_token()).await;
    let (status, _, page) = h.get("/", Some(&admin.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(APP_B) && page.contains("(admin)"), "{page}");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_when_configured() {
    let h = Harness::start_with(true).await;
    let page = h.http.get(h.url("/login")).send().await.unwrap();
    let line = set_cookie_line(&page, "ferrojob_login");
    assert!(
        line.contains("; Secure") && line.contains("HttpOnly"),
        "{line}"
    );
    let resp = h.sign_in_raw(APP_A, SECRET_A).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let line = set_cookie_line(&resp, "ferrojob_session");
    assert!(line.contains("; Secure"), "{line}");
    assert!(
        line.contains("SameSite=Strict") && line.contains("HttpOnly"),
        "{line}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_sign_out_ends_it() {
    let h = Harness::start().await;
    for path in [
        "/",
        "/jobs",
        "/jobs/new",
        "/instances",
        "/workers",
        "/instances/1",
        "/workflows",
        "/workflows/new",
        "/workflows/1",
        "/workflow-instances",
        "/workflow-instances/1",
    ] {
        let (status, location, _) = h.get(path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location, "/login", "{path}");
        let (status, _, _) = h.get(path, Some("forged-session")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
    }
    // A live refresh without a session is told to go to the sign-in page.
    let resp = h
        .http
        .get(h.url("/overview/live"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["hx-redirect"], "/login");
    let s = h.sign_in(APP_A, SECRET_A).await;
    // Every page renders for an app with nothing in it.
    for path in [
        "/",
        "/overview/live",
        "/jobs",
        "/jobs/new",
        "/instances",
        "/workers",
        "/workflows",
        "/workflows/new",
        "/workflow-instances",
    ] {
        let (status, _, page) = h.get(path, Some(&s.id)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
    }
    // Sign-out is a form too: without the token it is refused and the session stays.
    let (status, _, _) = h
        .post("/logout", &format!("ferrojob_session={}", s.id), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.get("/", Some(&s.id)).await.0, StatusCode::OK);
    let (status, location, _) = h.post_as(&s, "/logout", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    let (status, location, _) = h.get("/jobs", Some(&s.id)).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_post_needs_the_sessions_csrf_token() {
    let h = Harness::start().await;
    let s = h.sign_in(APP_A, SECRET_A).await;
    let other = h.sign_in(APP_A, SECRET_A).await;
    assert_ne!(s.csrf, other.csrf);
    let job = h.job_id(APP_A, "existing").await.0;
    let cookie = format!("ferrojob_session={}", s.id);
    let fields = [
        ("name", "made-by-a-forged-form"),
        ("time_expression_type", "API"),
        ("processor", "noop"),
    ];
    let job_path = format!("/jobs/{job}");
    let paths = [
        "/jobs",
        &format!("{job_path}/run"),
        &format!("{job_path}/disable"),
        &format!("{job_path}/delete"),
        job_path.as_str(),
    ];
    for path in paths {
        // No token, an empty one, another session's, and a wrong one.
        let (status, _, _) = h.post(path, &cookie, &fields).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        for token in ["", other.csrf.as_str(), "0123"] {
            let mut with = vec![("_csrf", token)];
            with.extend_from_slice(&fields);
            let (status, _, _) = h.post(path, &cookie, &with).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} with {token:?}");
        }
    }
    // Nothing happened.
    let jobs = h.api.list_jobs(APP_A, &Default::default()).await.unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert!(jobs.items[0].body.enabled);
    let instances = h
        .api
        .list_instances(APP_A, &Default::default())
        .await
        .unwrap();
    assert!(instances.items.is_empty());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_session_never_sees_another_apps_data() {
    let h = Harness::start().await;
    let job_b = h.job_id(APP_B, "only-in-b").await;
    let run_b = h
        .api
        .run_job(APP_B, job_b, &RunJob::default())
        .await
        .unwrap()
        .instance_id
        .0;
    h.job_id(APP_A, "only-in-a").await;
    let s = h.sign_in(APP_A, SECRET_A).await;
    let job_b_id = job_b.0;
    let (_, _, jobs) = h.get("/jobs", Some(&s.id)).await;
    assert!(
        jobs.contains("only-in-a") && !jobs.contains("only-in-b"),
        "{jobs}"
    );
    let (_, _, instances) = h.get("/instances", Some(&s.id)).await;
    assert!(
        !instances.contains(&format!("/instances/{run_b}\"")),
        "{instances}"
    );
    for path in [
        format!("/jobs/{job_b_id}"),
        format!("/jobs/{job_b_id}/delete"),
        format!("/instances/{run_b}"),
        format!("/instances/{run_b}/live"),
    ] {
        let (status, _, page) = h.get(&path, Some(&s.id)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains("only-in-b"), "{path}: {page}");
    }
    for path in [
        format!("/jobs/{job_b_id}/run"),
        format!("/jobs/{job_b_id}/disable"),
        format!("/jobs/{job_b_id}/delete"),
        format!("/instances/{run_b}/stop"),
    ] {
        let (status, _, _) = h.post_as(&s, &path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(h.api.get_job(APP_B, job_b).await.unwrap().body.enabled);
    // An app-secret session cannot switch apps; an admin session can.
    let (status, _, _) = h.post_as(&s, "/switch-app", &[("app", APP_B)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = h.sign_in(APP_A, h.server.admin_token()).await;
    let (status, location, _) = h.post_as(&admin, "/switch-app", &[("app", APP_B)]).await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (_, _, jobs_b) = h.get("/jobs", Some(&admin.id)).await;
    assert!(
        jobs_b.contains("only-in-b") && !jobs_b.contains("only-in-a"),
        "{jobs_b}"
    );
    assert!(h.get("/jobs", Some(&s.id)).await.2.contains("only-in-a"));
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_created_through_the_form_is_listed_escaped_and_runs_to_succeed() {
    let h = Harness::start().await;
    let worker = Worker::builder(WorkerConfig::new(
        h.server.transport_addr(),
        APP_A,
        SECRET_A,
    ))
    .builtins()
    .start()
    .await
    .unwrap();
    let s = h.sign_in(APP_A, SECRET_A).await;

    // The live preview: five fire times for a good expression, the error for a bad one.
    let cron = [
        ("time_expression_type", "CRON"),
        ("time_expression", "0 */5 * * * ?"),
        ("time_zone", "Europe/Paris"),
    ];
    let (status, _, preview) = h.post_as(&s, "/jobs/preview", &cron).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(preview.matches("<li>").count(), 5, "{preview}");
    assert!(
        preview.contains("+01:00") || preview.contains("+02:00"),
        "{preview}"
    );
    let bad = [
        ("time_expression_type", "CRON"),
        ("time_expression", "61 * * * * ?"),
    ];
    let (_, _, preview) = h.post_as(&s, "/jobs/preview", &bad).await;
    assert!(preview.contains("class=\"error\""), "{preview}");

    // A refused form comes back with the message and what was typed.
    let (status, _, page) = h
        .post_as(
            &s,
            "/jobs",
            &[
                ("name", "keep-me"),
                ("time_expression_type", "CRON"),
                ("time_expression", "nope"),
                ("processor", "noop"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("keep-me") && page.contains("class=\"error\""),
        "{page}"
    );

    let name = "<script>alert(1)</script>";
    let (status, location, _) = h
        .post_as(
            &s,
            "/jobs",
            &[
                ("name", name),
                ("time_expression_type", "API"),
                ("processor", "noop"),
                ("params", "p&q"),
                ("timeout_ms", "5000"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let id: u64 = location.strip_prefix("/jobs/").unwrap().parse().unwrap();
    let stored = h
        .api
        .get_job(APP_A, ferrojob::ids::JobId(id))
        .await
        .unwrap();
    assert_eq!(stored.body.name, name);
    assert_eq!(stored.body.params, "p&q");
    assert_eq!(stored.body.timeout_ms, 5000);

    let (_, _, list) = h.get("/jobs?q=SCRIPT", Some(&s.id)).await;
    assert!(
        list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{list}"
    );
    assert!(!list.contains(name), "the name must render as text");
    let (_, _, none) = h.get("/jobs?q=nothing-like-it", Some(&s.id)).await;
    assert!(none.contains("No jobs match."), "{none}");
    let (_, _, edit) = h.get(&location, Some(&s.id)).await;
    assert!(!edit.contains(name) && edit.contains("p&amp;q"), "{edit}");

    // Disable and enable through the table's buttons.
    let (status, _, _) = h.post_as(&s, &format!("/jobs/{id}/disable"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let job = ferrojob::ids::JobId(id);
    assert!(!h.api.get_job(APP_A, job).await.unwrap().body.enabled);
    h.post_as(&s, &format!("/jobs/{id}/enable"), &[]).await;
    assert!(h.api.get_job(APP_A, job).await.unwrap().body.enabled);

    // Run now; the instance page shows it reach SUCCEED.
    let (status, location, _) = h
        .post_as(
            &s,
            &format!("/jobs/{id}/run"),
            &[("params", "from the <i>console</i>")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let instance = location.strip_prefix("/instances/").unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, live) = h
            .get(&format!("/instances/{instance}/live"), Some(&s.id))
            .await;
        assert_eq!(status, StatusCode::OK, "{live}");
        if live.contains("st-SUCCEED") {
            assert!(live.contains("from the &lt;i&gt;console"), "{live}");
            assert!(!live.contains("<i>"), "{live}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not SUCCEED: {live}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Final: the fragment stops polling (at once with a log, a few seconds after the finish
    // without one: log lines may land just after the final report).
    let instance_live = format!("/instances/{instance}/live");
    wait_live(&h, &s, &instance_live, |l| !l.contains("hx-trigger")).await;
    let (_, _, page) = h.get(&format!("/instances?job_id={id}"), Some(&s.id)).await;
    assert!(page.contains(&format!("/instances/{instance}\"")), "{page}");
    let (_, _, overview) = h.get("/", Some(&s.id)).await;
    assert!(overview.contains("1 ok"), "{overview}");
    // The server started just now: its counts hold since then.
    assert!(
        overview.contains("Counted by the server since "),
        "{overview}"
    );
    let (_, _, workers) = h.get("/workers", Some(&s.id)).await;
    assert!(workers.contains(worker.address()), "{workers}");

    // Delete asks first, then deletes.
    let (status, _, confirm) = h.get(&format!("/jobs/{id}/delete"), Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Delete job"), "{confirm}");
    let (status, location, _) = h.post_as(&s, &format!("/jobs/{id}/delete"), &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/jobs")
    );
    assert!(h.api.get_job(APP_A, job).await.is_err());
    worker.shutdown().await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_from_the_binary() {
    let h = Harness::start().await;
    for (name, kind, needle) in [
        ("htmx.min.js", "text/javascript", "htmx"),
        ("console.js", "text/javascript", "datetime"),
        ("console.css", "text/css", "--ok"),
    ] {
        let resp = h
            .http
            .get(h.url(&format!("/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{name}: {ct}");
        assert!(resp.text().await.unwrap().contains(needle), "{name}");
    }
    let (status, _, _) = h.get("/assets/../Cargo.toml", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = h.http.get(h.url("/login")).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = resp.text().await.unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    h.server.shutdown().await;
}

/// Polls the live fragment at `path` until `done` accepts it.
async fn wait_live(h: &Harness, s: &Signed, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, live) = h.get(path, Some(&s.id)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {live}");
        if done(&live) {
            return live;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {live}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number at the end of a `Location` such as `/workflows/7`.
fn tail_id(location: &str) -> u64 {
    location.rsplit('/').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_drawn_edited_run_stopped_and_coloured_by_status() {
    let h = Harness::start().await;
    let worker = Worker::builder(WorkerConfig::new(
        h.server.transport_addr(),
        APP_A,
        SECRET_A,
    ))
    .builtins()
    .start()
    .await
    .unwrap();
    let s = h.sign_in(APP_A, SECRET_A).await;
    let extract = h.job_id(APP_A, "extract <x>").await.0;
    let load = h.job_id(APP_A, "load").await.0;
    let report = h.job_id(APP_A, "report").await.0;
    let definition = |name: &str| {
        format!(
            r#"{{"name":{name:?},"time_expression_type":"API","nodes":[
            {{"id":1,"job_id":{extract}}},
            {{"id":2,"type":"DECISION","expression":"go == true"}},
            {{"id":3,"job_id":{load}}},
            {{"id":4,"job_id":{report}}}],
            "edges":[{{"from":1,"to":2}},{{"from":2,"to":3,"property":"true"}},
                     {{"from":2,"to":4,"property":"false"}}]}}"#
        )
    };

    // The editor's preview: the DAG for a valid text, the error for a bad one.
    let (status, _, preview) = h
        .post_as(
            &s,
            "/workflows/preview",
            &[("definition", &definition("w"))],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(preview.matches("<g class=\"node").count(), 4, "{preview}");
    assert!(preview.contains(">true</text>") && preview.contains(">false</text>"));
    let cycle = definition("w").replace(r#"{"from":1,"to":2}"#, r#"{"from":3,"to":1}"#);
    let cycle = cycle.replace(r#""edges":["#, r#""edges":[{"from":1,"to":2},"#);
    let (_, _, preview) = h
        .post_as(&s, "/workflows/preview", &[("definition", &cycle)])
        .await;
    assert!(
        preview.contains("class=\"error\"") && preview.contains("cycle"),
        "{preview}"
    );
    let unknown_job = definition("w").replace(&format!(":{report}}}"), ":999999}");
    let (_, _, preview) = h
        .post_as(&s, "/workflows/preview", &[("definition", &unknown_job)])
        .await;
    assert!(preview.contains("does not exist"), "{preview}");

    // A refused create keeps the text and shows why.
    let (status, _, page) = h
        .post_as(&s, "/workflows", &[("definition", &unknown_job)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("does not exist") && page.contains("999999"),
        "{page}"
    );
    let (status, _, page) = h.post_as(&s, "/workflows", &[("definition", "{")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");

    // Created through the form; the page draws the DAG, names escaped.
    let name = "<script>alert(2)</script>";
    let (status, location, page) = h
        .post_as(&s, "/workflows", &[("definition", &definition(name))])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let wf = tail_id(&location);
    let (status, _, page) = h.get(&location, Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains(name) && page.contains("&lt;script&gt;alert(2)"),
        "{page}"
    );
    assert!(
        page.contains("<svg") && page.contains("extract &lt;x&gt;"),
        "{page}"
    );
    assert_eq!(page.matches("<g class=\"node").count(), 4, "{page}");
    assert!(
        page.contains("class=\"node kind-DECISION st-DEF\""),
        "{page}"
    );
    assert!(
        page.contains(&format!("<a href=\"/jobs/{load}\">")),
        "{page}"
    );
    let (_, _, list) = h.get("/workflows?q=SCRIPT", Some(&s.id)).await;
    assert!(
        list.contains(&format!("/workflows/{wf}\"")) && !list.contains(name),
        "{list}"
    );
    let (_, _, none) = h.get("/workflows?q=nothing-like-it", Some(&s.id)).await;
    assert!(none.contains("No workflows match."), "{none}");

    // Edited: the editor holds the stored definition; a save replaces it.
    let (status, _, edit) = h.get(&format!("/workflows/{wf}/edit"), Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        edit.contains("&quot;DECISION&quot;") && !edit.contains("null"),
        "{edit}"
    );
    let (status, location, _) = h
        .post_as(
            &s,
            &format!("/workflows/{wf}"),
            &[("definition", &definition("nightly"))],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, format!("/workflows/{wf}").as_str())
    );
    let stored = h
        .api
        .get_workflow(APP_A, ferrojob::ids::WorkflowId(wf))
        .await
        .unwrap();
    assert_eq!(stored.body.name, "nightly");
    let (status, _, _) = h
        .post_as(
            &s,
            &format!("/workflows/{wf}"),
            &[("definition", &unknown_job)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Run now with init params; the decision takes the true branch; node 4 is skipped.
    let (status, _, _) = h
        .post_as(
            &s,
            &format!("/workflows/{wf}/run"),
            &[("init_params", "not json")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, location, _) = h
        .post_as(
            &s,
            &format!("/workflows/{wf}/run"),
            &[("init_params", r#"{"go": true}"#)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let run = tail_id(&location);
    let live = wait_live(&h, &s, &format!("/workflow-instances/{run}/live"), |l| {
        l.contains("<dd><span class=\"badge st-SUCCEED\">")
    })
    .await;
    assert!(
        live.contains(r#"class="node kind-DECISION st-SUCCEED" data-node="2""#),
        "{live}"
    );
    assert!(
        live.contains(r#"class="node kind-JOB st-SUCCEED" data-node="3""#),
        "{live}"
    );
    assert!(
        live.contains(r#"class="node kind-JOB st-SKIPPED" data-node="4""#),
        "{live}"
    );
    assert!(live.contains("&quot;go&quot;: true"), "the context: {live}");
    assert!(
        !live.contains("hx-trigger"),
        "a finished run stops polling: {live}"
    );
    let (status, _, page) = h.get(&location, Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Workflow instance"), "{page}");
    let (_, _, runs) = h
        .get(
            &format!("/workflow-instances?workflow_id={wf}"),
            Some(&s.id),
        )
        .await;
    assert!(
        runs.contains(&format!("/workflow-instances/{run}\"")),
        "{runs}"
    );
    let (_, _, detail) = h.get(&format!("/workflows/{wf}"), Some(&s.id)).await;
    assert!(
        detail.contains(&format!("/workflow-instances/{run}\"")),
        "{detail}"
    );

    // A failing node: marked successful from the page, then the run retried.
    let broken = h
        .api
        .create_job(
            APP_A,
            &JobBody::new("broken", TimeExpressionType::Api, "", "no-such-processor"),
        )
        .await
        .unwrap()
        .id
        .0;
    let failing = format!(
        r#"{{"name":"failing","time_expression_type":"API","nodes":[{{"id":1,"job_id":{broken}}},{{"id":2,"job_id":{load}}}],"edges":[{{"from":1,"to":2}}]}}"#
    );
    let (_, location, _) = h
        .post_as(&s, "/workflows", &[("definition", &failing)])
        .await;
    let failing_wf = tail_id(&location);
    let (_, location, _) = h
        .post_as(&s, &format!("/workflows/{failing_wf}/run"), &[])
        .await;
    let failed_run = tail_id(&location);
    let live_path = format!("/workflow-instances/{failed_run}/live");
    let live = wait_live(&h, &s, &live_path, |l| {
        l.contains("<dd><span class=\"badge st-FAILED\">")
    })
    .await;
    assert!(
        live.contains(r#"class="node kind-JOB st-FAILED" data-node="1""#),
        "{live}"
    );
    assert!(live.contains("/retry\""), "{live}");
    let mark = format!("/workflow-instances/{failed_run}/nodes/1/mark-success");
    assert!(live.contains(&format!("action=\"{mark}\"")), "{live}");
    let (status, location, _) = h.post_as(&s, &mark, &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (
            StatusCode::SEE_OTHER,
            format!("/workflow-instances/{failed_run}").as_str()
        )
    );
    // The node passes; the run stays FAILED until it is retried, which runs node 2 only.
    let (_, _, live) = h.get(&live_path, Some(&s.id)).await;
    assert!(
        live.contains(r#"class="node kind-JOB st-SUCCEED" data-node="1""#),
        "{live}"
    );
    let (status, _, _) = h
        .post_as(&s, &format!("/workflow-instances/{failed_run}/retry"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    wait_live(&h, &s, &live_path, |l| {
        l.contains("<dd><span class=\"badge st-SUCCEED\">")
    })
    .await;

    // A long run, stopped from its page, then retried.
    let sleep = h
        .api
        .create_job(
            APP_A,
            &JobBody::new("nap", TimeExpressionType::Api, "", "sleep"),
        )
        .await
        .unwrap()
        .id
        .0;
    let long = format!(
        r#"{{"name":"long","time_expression_type":"API","nodes":[{{"id":1,"job_id":{sleep},"params":"600000"}}]}}"#
    );
    let (_, location, _) = h.post_as(&s, "/workflows", &[("definition", &long)]).await;
    let long_wf = tail_id(&location);
    let (_, location, _) = h
        .post_as(&s, &format!("/workflows/{long_wf}/run"), &[])
        .await;
    let long_run = tail_id(&location);
    let live_path = format!("/workflow-instances/{long_run}/live");
    let live = wait_live(&h, &s, &live_path, |l| {
        l.contains("st-RUNNING\" data-node=\"1\"")
    })
    .await;
    assert!(
        live.contains("hx-trigger=\"every 2s\""),
        "a running run polls: {live}"
    );
    let (status, _, _) = h
        .post_as(&s, &format!("/workflow-instances/{long_run}/stop"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    wait_live(&h, &s, &live_path, |l| {
        l.contains("<dd><span class=\"badge st-STOPPED\">")
    })
    .await;
    let (status, _, _) = h
        .post_as(&s, &format!("/workflow-instances/{long_run}/retry"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    wait_live(&h, &s, &live_path, |l| {
        l.contains("st-RUNNING\" data-node=\"1\"")
    })
    .await;
    h.post_as(&s, &format!("/workflow-instances/{long_run}/stop"), &[])
        .await;
    let (status, _, _) = h
        .post_as(&s, &format!("/workflow-instances/{long_run}/pause"), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another app's session sees none of it.
    let other = h.sign_in(APP_B, SECRET_B).await;
    for path in [
        format!("/workflows/{wf}"),
        format!("/workflows/{wf}/edit"),
        format!("/workflow-instances/{run}"),
        format!("/workflow-instances/{run}/live"),
    ] {
        let (status, _, page) = h.get(&path, Some(&other.id)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains("nightly"), "{path}: {page}");
    }
    for path in [
        format!("/workflows/{wf}/run"),
        format!("/workflows/{wf}/delete"),
        format!("/workflow-instances/{run}/retry"),
    ] {
        let (status, _, _) = h.post_as(&other, &path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, _, list) = h.get("/workflows", Some(&other.id)).await;
    assert!(list.contains("No workflows match."), "{list}");
    // Forms need the CSRF token.
    let cookie = format!("ferrojob_session={}", s.id);
    for path in [
        format!("/workflows/{wf}/run"),
        format!("/workflows/{wf}/delete"),
        "/workflows".to_owned(),
    ] {
        let (status, _, _) = h
            .post(&path, &cookie, &[("definition", &definition("forged"))])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }

    // Delete asks first; the run's page still draws its nodes, without edges.
    let (status, _, confirm) = h.get(&format!("/workflows/{wf}/delete"), Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Delete workflow"), "{confirm}");
    let (status, location, _) = h.post_as(&s, &format!("/workflows/{wf}/delete"), &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/workflows")
    );
    let (status, _, page) = h
        .get(&format!("/workflow-instances/{run}"), Some(&s.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("The workflow was deleted"), "{page}");
    assert_eq!(page.matches("<g class=\"node").count(), 4, "{page}");
    worker.shutdown().await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_goes_away_is_shown_lost() {
    let h = Harness::start().await;
    let mut config = WorkerConfig::new(h.server.transport_addr(), APP_A, SECRET_A);
    config.tags = vec!["<blue>".to_owned()];
    let worker = Worker::builder(config).builtins().start().await.unwrap();
    let address = worker.address().to_owned();
    let s = h.sign_in(APP_A, SECRET_A).await;
    let other = h.sign_in(APP_B, SECRET_B).await;
    let online = wait_live(&h, &s, "/workers", |p| p.contains(&address)).await;
    assert!(
        online.contains("&lt;blue&gt;") && online.contains(">online<"),
        "{online}"
    );
    assert!(online.contains("No worker was lost."), "{online}");
    assert!(online.contains("hx-get=\"/workers/live\""), "{online}");
    assert!(online.contains("<td class=\"running\">0</td>"), "{online}");
    // A long run on it is counted on its row.
    let body = JobBody::new("nap", TimeExpressionType::Api, "", "sleep");
    let job = h.api.create_job(APP_A, &body).await.unwrap().id;
    let run = RunJob {
        params: "600000".into(),
        delay_ms: 0,
    };
    let instance = h.api.run_job(APP_A, job, &run).await.unwrap().instance_id;
    wait_live(&h, &s, "/workers/live", |p| {
        p.contains("<td class=\"running\">1</td>")
    })
    .await;
    h.api.stop_instance(APP_A, instance).await.unwrap();
    worker.shutdown().await;
    let live = wait_live(&h, &s, "/workers/live", |p| p.contains(">lost<")).await;
    let lost = &live[live.find("<h2>Lost</h2>").unwrap()..];
    assert!(
        lost.contains(&address) && lost.contains("&lt;blue&gt;"),
        "{live}"
    );
    assert!(live.contains("No worker is connected."), "{live}");
    let (_, _, b) = h.get("/workers/live", Some(&other.id)).await;
    assert!(
        b.contains("No worker was lost.") && !b.contains(&address),
        "{b}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_form_sets_tags_and_policies_and_the_table_filters_on_them() {
    let h = Harness::start().await;
    let s = h.sign_in(APP_A, SECRET_A).await;
    let body = JobBody::new("plain", TimeExpressionType::Api, "", "noop");
    let id = h.api.create_job(APP_A, &body).await.unwrap().id;
    let (status, _, page) = h
        .post_as(
            &s,
            &format!("/jobs/{}", id.get()),
            &[
                ("name", "renamed"),
                ("time_expression_type", "API"),
                ("processor", "noop"),
                ("enabled", "on"),
                ("description", "loads the orders"),
                ("tags", "etl, team:data"),
                ("max_instances", "1"),
                ("overlap_policy", "QUEUE"),
                ("log_level", "WARN"),
                ("backoff_shape", "FIXED"),
                ("backoff_initial_delay_ms", "2000"),
                ("backoff_max_delay_ms", "2000"),
                ("alarm_recovered", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let stored = h.api.get_job(APP_A, id).await.unwrap().body;
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.description, "loads the orders");
    assert_eq!(stored.tags, ["etl", "team:data"]);
    assert_eq!(
        stored.overlap_policy,
        ferrojob::policy::OverlapPolicy::Queue
    );
    assert_eq!(stored.log_level, ferrojob::model::LogLevel::Warn);
    assert_eq!(
        stored.retry_backoff,
        ferrojob::policy::RetryBackoff::fixed(2000)
    );
    assert!(stored.alarm.recovered);
    h.job_id(APP_A, "untagged").await;
    let (_, _, page) = h.get("/jobs?tag=team%3Adata", Some(&s.id)).await;
    assert!(
        page.contains("renamed") && !page.contains("untagged"),
        "{page}"
    );
    let (_, _, page) = h
        .get("/jobs?enabled=yes&type=API&q=UNTAG", Some(&s.id))
        .await;
    assert!(
        page.contains("untagged") && !page.contains("renamed"),
        "{page}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_session_keeps_its_tokens_role() {
    use ferrojob::api::{CreateToken, TokenRole};
    let h = Harness::start().await;
    let job = JobBody::new("nightly", TimeExpressionType::Api, "", "noop");
    let id = h.api.create_job(APP_A, &job).await.unwrap().id.get();
    let token = |role| CreateToken {
        name: "console".into(),
        role,
        expires_in_secs: None,
    };
    let read = h
        .api
        .create_token(APP_A, &token(TokenRole::Read))
        .await
        .unwrap()
        .token;
    let operate = h
        .api
        .create_token(APP_A, &token(TokenRole::Operate))
        .await
        .unwrap()
        .token;

    // A `read` token signs in, sees the jobs, and is refused every action with a page that
    // says why.
    let s = h.sign_in(APP_A, &read).await;
    let (status, _, page) = h.get("/jobs", Some(&s.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("nightly") && page.contains("read token"),
        "{page}"
    );
    let (status, _, page) = h.post_as(&s, &format!("/jobs/{id}/run"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        page.contains("`read`") && page.contains("`operate`"),
        "{page}"
    );
    let (status, _, _) = h.post_as(&s, &format!("/jobs/{id}/delete"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An `operate` token runs the job but cannot delete it.
    let s = h.sign_in(APP_A, &operate).await;
    let (status, _, page) = h.post_as(&s, &format!("/jobs/{id}/run"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (status, _, page) = h.post_as(&s, &format!("/jobs/{id}/delete"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("`admin`"), "{page}");
    // A token of app A does not sign in to app B.
    let refused = h.sign_in_raw(APP_B, &operate).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    h.server.shutdown().await;
}
