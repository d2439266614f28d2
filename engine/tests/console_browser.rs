//! The web console in a real headless Chromium, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`), against a real in-process server and two workers: sign in, see the
//! overview refresh with no layout shift, and Tab to the navigation; create a tagged CRON job
//! and see its preview follow the expression, the zone and the app's calendars (an unknown
//! calendar refused under its field); find it by its tag; run it now and watch the instance
//! page (htmx polling) reach SUCCEED and its log appear; start a long `sleep` run from its
//! job's page with params, see its page refresh with no layout shift, and stop it from its
//! page; run it with a delay and cancel the waiting run; delete a job after its confirmation;
//! stop a worker and see the workers page show it lost; type a workflow with a decision into
//! the editor and see its DAG previewed, create it, open its editor and its delete
//! confirmation, run it, and see the taken branch coloured SUCCEED and the other SKIPPED on
//! the run's DAG; check at phone width that no page scrolls sideways, that every link and
//! control takes the keyboard focus and that every field has a label; sign out and be sent
//! back to the sign-in page. A screenshot of each page goes to `target/console-screenshots/`
//! on every run.
//!
//! Without `chromedriver` and `chromium` on this machine the test says so and passes, unless
//! `FERROJOB_BROWSER_TESTS=require` (set by `.ci/run`, which installs both): then it fails.
//! `FERROJOB_CHROMEDRIVER` and `FERROJOB_CHROMIUM` name other binaries.
//!
//! The WebDriver client is the few commands this test needs, over `reqwest`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrojob::api::{CreateApp, JobBody};
use ferrojob::client::Client;
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{ProcessResult, TaskContext, Worker, WorkerConfig};
use serde_json::{json, Value};

const APP: &str = "browser";
const SECRET: &str = "browser-secret-0123";
/// How long the test waits for the browser or the server.
const WAIT: Duration = Duration::from_secs(30);
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn binary(env: &str, default: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(default))
        .find(|p| p.is_file())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

/// Standard base64 (what WebDriver screenshots are) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// One WebDriver session.
struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
}

impl Browser {
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method, url);
        if !body.is_null() {
            req = req.json(&body);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, Value::Null).await
    }

    async fn open(&self, base: &str, path: &str) {
        self.post("/url", json!({ "url": format!("{base}{path}") }))
            .await;
    }

    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or("").to_owned()
    }

    /// The first element matching `css`, waiting for it to appear.
    async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .post("/element", json!({ "using": "css selector", "value": css }))
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "no {css}: {found}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        let text = self.get(&format!("/element/{id}/text")).await;
        text.as_str().unwrap_or("").to_owned()
    }

    /// Waits until the text of `css` satisfies `ok` (the page may be replaced meanwhile).
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .post("/element", json!({ "using": "css selector", "value": css }))
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                let text = self.get(&format!("/element/{id}/text")).await;
                if let Some(text) = text.as_str().filter(|t| ok(t)) {
                    return text.to_owned();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} never matched; page at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn exec(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Counts the live part's refreshes and the layout shifts from now on (Chromium's
    /// Layout Instability API), then waits for `swaps` refreshes: the shifts they caused.
    async fn layout_shift_over_refreshes(&self, swaps: u64) -> f64 {
        self.exec(
            "window.__swaps = 0; window.__shift = 0; \
             document.addEventListener('htmx:afterSwap', () => { window.__swaps += 1; }); \
             new PerformanceObserver(list => { for (const e of list.getEntries()) { \
                 if (!e.hadRecentInput) { window.__shift += e.value; } } }) \
                 .observe({ type: 'layout-shift' });",
        )
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.exec("return window.__swaps;").await.as_u64() < Some(swaps) {
            assert!(tokio::time::Instant::now() < deadline, "no live refresh");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.exec("return window.__shift;").await.as_f64().unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let data = self.get("/screenshot").await;
        let png = base64_decode(data.as_str().unwrap_or(""));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn close(self) {
        self.command(reqwest::Method::DELETE, "", Value::Null).await;
    }
}

/// Starts chromedriver on a free port and a headless session in it.
async fn start_browser(driver: &Path, chromium: &Path) -> (tokio::process::Child, Browser) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = ferrojob::https::HttpsRoots::public().client().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = match http.get(format!("{base}/status")).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .map(|v| v["value"]["ready"] == true),
            Err(_) => None,
        };
        if ready == Some(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,800"],
        },
    }}});
    let answer: Value = http
        .post(format!("{base}/session"))
        .json(&caps)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = answer["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {answer}"));
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser {
        session: format!("{base}/session/{session}"),
        http,
        shots,
    };
    (child, browser)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_creates_runs_and_stops_jobs_and_signs_out() {
    let required = std::env::var("FERROJOB_BROWSER_TESTS").is_ok_and(|v| v == "require");
    let (Some(driver), Some(chromium)) = (
        binary("FERROJOB_CHROMEDRIVER", "chromedriver"),
        binary("FERROJOB_CHROMIUM", "chromium"),
    ) else {
        assert!(!required, "chromedriver or chromium is missing");
        eprintln!("console_browser: no chromedriver/chromium here; the browser test did not run");
        return;
    };

    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    // The browser signs in with the app's secret: the compatibility mode.
    let mut config = LaunchConfig::new(None, any, any);
    config.app_secret_tokens = true;
    let server = launch(config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let api = Client::new(&base, server.admin_token()).unwrap();
    let app = CreateApp {
        name: APP.into(),
        secret: SECRET.into(),
    };
    api.create_app(&app).await.unwrap();
    let mut workers = Vec::new();
    for tag in ["blue", "green"] {
        let mut config = WorkerConfig::new(server.transport_addr(), APP, SECRET);
        config.tags = vec![tag.to_owned()];
        let worker = Worker::builder(config)
            .builtins()
            .basic("say", |ctx: TaskContext| async move {
                ctx.logger().info(format!("saying {}", ctx.params()));
                ProcessResult::ok(format!("said {}", ctx.params()))
            })
            .start()
            .await
            .unwrap();
        workers.push(worker);
    }
    let (_driver, b) = start_browser(&driver, &chromium).await;

    // Sign in.
    b.open(&base, "/jobs").await;
    assert!(b.url().await.ends_with("/login"));
    b.screenshot("login").await;
    b.type_into("input[name=app]", APP).await;
    b.type_into("input[name=token]", SECRET).await;
    b.click("form[action='/login'] button").await;
    b.wait_text("h1", |t| t == "Overview").await;
    b.wait_text("main", |t| t.contains("Workers online")).await;
    // The server has just started: its counts hold since then, shown as the browser's HH:MM.
    b.wait_text("#counted-since", |t| {
        t.starts_with("Counted by the server since ") && !t.contains("UTC")
    })
    .await;
    b.screenshot("overview").await;
    // The overview refreshes itself without moving anything on the page.
    let shift = b.layout_shift_over_refreshes(1).await;
    assert!(
        shift <= 0.0,
        "the overview's refresh shifted the layout by {shift}"
    );
    // The first Tab reaches the navigation.
    let tab = json!({ "type": "key", "id": "keyboard", "actions": [
        { "type": "keyDown", "value": "\u{E004}" }, { "type": "keyUp", "value": "\u{E004}" } ] });
    b.post("/actions", json!({ "actions": [tab] })).await;
    let focused = b
        .exec("return document.activeElement.getAttribute('href');")
        .await;
    assert_eq!(
        focused,
        json!("/"),
        "the first Tab goes to the Overview link"
    );

    // A CRON job: the preview follows the expression as it is typed.
    b.open(&base, "/jobs/new").await;
    b.type_into("input[name=name]", "every minute <b>").await;
    b.type_into("input[name=processor]", "say").await;
    b.type_into("input[name=tags]", "demo, minutely").await;
    b.type_into("input[name=time_expression]", "0 * * * * ?")
        .await;
    b.type_into("input[name=time_zone]", "Asia/Tokyo").await;
    let preview = b.wait_text("#preview", |t| t.contains("+09:00")).await;
    assert_eq!(preview.matches("+09:00").count(), 5, "{preview}");
    b.type_into("input[name=time_expression]", "0 * * * * ?x")
        .await;
    b.wait_text("#preview", |t| t.contains("Time expression:"))
        .await;
    b.find("input[name=time_expression][aria-invalid=true]")
        .await;
    b.screenshot("job-preview-error").await;
    b.type_into("input[name=time_expression]", "0 * * * * ?")
        .await;
    b.wait_text("#preview", |t| t.contains("Next 5 fire times"))
        .await;
    b.find("input[name=time_expression][aria-invalid=false]")
        .await;
    // The app's calendars skip their dates in the preview; an unknown one is refused under
    // its field (the error slots are swapped in out of band).
    let today = chrono::Utc::now().date_naive();
    let closed = ferrojob::api::CalendarBody {
        time_zone: None,
        excluded: vec![format!("{today}..{}", today + chrono::Days::new(1))],
        description: String::new(),
    };
    api.put_calendar(APP, "closed", &closed).await.unwrap();
    b.type_into("input[name=calendars]", "closed").await;
    b.wait_text("#preview", |t| t.contains("Skipped by the calendars"))
        .await;
    b.screenshot("job-preview-calendar").await;
    b.type_into("input[name=calendars]", "closed, nope").await;
    b.wait_text("#error-calendars", |t| t.contains("no calendar \"nope\""))
        .await;
    b.find("input[name=calendars][aria-invalid=true]").await;
    b.find("input[name=time_expression][aria-invalid=false]")
        .await;
    // (WebDriver's clear fires no `input` event: the field is retyped rather than emptied.)
    b.type_into("input[name=calendars]", "closed").await;
    b.find("input[name=calendars][aria-invalid=false]").await;
    b.wait_text("#preview", |t| t.contains("Next 5 fire times"))
        .await;
    b.screenshot("job-new").await;
    b.click("form.job button[type=submit]").await;
    b.wait_text("h1", |t| t.starts_with("Job ")).await;
    b.screenshot("job").await;

    // It is listed, its name as text, and found by its tag.
    b.open(&base, "/jobs?tag=minutely").await;
    let table = b
        .wait_text("table", |t| t.contains("every minute <b>"))
        .await;
    assert!(table.contains("CRON") && table.contains("demo"), "{table}");
    assert!(table.contains("except closed"), "{table}");
    b.screenshot("jobs").await;

    // Run it now; the instance page follows it to SUCCEED.
    b.click("td a[href^='/jobs/']").await;
    b.wait_text("h1", |t| t.starts_with("Job ")).await;
    b.type_into("form.inline input[name=params]", "from the browser")
        .await;
    b.click("form.inline button").await;
    b.wait_text("h1", |t| t.starts_with("Instance ")).await;
    b.wait_text("#live .badge", |t| t == "SUCCEED").await;
    assert!(b.text("#live").await.contains("from the browser"));
    // Its start on the worker is shown beside its dispatch and finish.
    let started = b
        .exec(
            "return [...document.querySelectorAll('#live dt')].some(dt => \
             dt.textContent === 'Started' && dt.nextElementSibling.querySelector('time'));",
        )
        .await;
    assert_eq!(started, json!(true), "no start time on the instance page");
    // The log is shipped beside the report: a finished page shows it once it has arrived.
    let instance_url = b.url().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !b.text("#live").await.contains("saying from the browser") {
        assert!(tokio::time::Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.post("/url", json!({ "url": instance_url })).await;
    }
    b.screenshot("instance").await;

    // A long run, started from its job's page with its params, and stopped from its page.
    let body = JobBody::new("long sleep", TimeExpressionType::Api, "", "sleep");
    let job = api.create_job(APP, &body).await.unwrap().id;
    b.open(&base, &format!("/jobs/{}", job.0)).await;
    b.type_into("form.inline input[name=params]", "600000")
        .await;
    b.click("form.inline button").await;
    b.wait_text("h1", |t| t.starts_with("Instance ")).await;
    b.wait_text("#live .badge", |t| t == "RUNNING").await;
    assert!(b.text("#live").await.contains("600000"));
    b.screenshot("instance-running").await;
    // Its page refreshes itself while it runs, without moving anything on the page.
    let shift = b.layout_shift_over_refreshes(2).await;
    assert!(
        shift <= 0.0,
        "the live refresh shifted the layout by {shift}"
    );
    b.click("form[action$='/stop'] button").await;
    b.wait_text("#live .badge", |t| t == "STOPPED").await;
    b.screenshot("instance-stopped").await;
    // A run with a delay waits; it is canceled from its page before it is dispatched.
    b.open(&base, &format!("/jobs/{}", job.0)).await;
    b.type_into("form.inline input[name=delay_ms]", "600000")
        .await;
    b.click("form.inline button").await;
    b.wait_text("h1", |t| t.starts_with("Instance ")).await;
    b.wait_text("#live .badge", |t| t == "WAITING_DISPATCH")
        .await;
    b.click("form[action$='/cancel'] button").await;
    b.wait_text("#live .badge", |t| t == "CANCELED").await;
    b.screenshot("instance-canceled").await;
    // Deleting it asks first.
    b.open(&base, &format!("/jobs/{}/delete", job.0)).await;
    b.wait_text("main", |t| t.contains("Delete job long sleep"))
        .await;
    b.screenshot("job-delete").await;
    b.click("form[action$='/delete'] button.danger").await;
    b.wait_text("h1", |t| t == "Jobs").await;

    b.open(&base, "/workers").await;
    b.wait_text("table", |t| t.contains("blue") && t.contains("green"))
        .await;
    // One worker stops: the page, refreshing itself, moves it to the lost table.
    if let Some(green) = workers.pop() {
        green.shutdown().await;
    }
    b.wait_text("table.lost", |t| t.contains("green") && t.contains("lost"))
        .await;
    b.screenshot("workers").await;
    b.open(&base, "/instances").await;
    b.wait_text("table", |t| t.contains("STOPPED") && t.contains("SUCCEED"))
        .await;
    b.screenshot("instances").await;

    // A workflow typed into the editor, its DAG previewed, created, run with init params;
    // the run's page colours the decision's branch.
    let mut ids = Vec::new();
    for name in ["extract", "load", "report"] {
        let body = JobBody::new(name, TimeExpressionType::Api, "", "noop");
        ids.push(api.create_job(APP, &body).await.unwrap().id.0);
    }
    let [extract, load, report] = ids[..] else {
        unreachable!()
    };
    let definition = format!(
        r#"{{"name": "nightly etl", "time_expression_type": "API", "nodes": [
  {{"id": 1, "job_id": {extract}}},
  {{"id": 2, "type": "DECISION", "expression": "go == true"}},
  {{"id": 3, "job_id": {load}}},
  {{"id": 4, "job_id": {report}}}],
 "edges": [{{"from": 1, "to": 2}}, {{"from": 2, "to": 3, "property": "true"}},
           {{"from": 2, "to": 4, "property": "false"}}]}}"#
    );
    b.open(&base, "/workflows/new").await;
    b.type_into("#definition", "{ not json").await;
    b.wait_text("#dag-preview", |t| t.starts_with("Definition:"))
        .await;
    b.type_into("#definition", &definition).await;
    b.wait_text("#dag-preview", |t| t.contains("4 nodes, 3 edges; valid."))
        .await;
    b.find("#dag-preview svg.dag g[data-node='4']").await;
    b.screenshot("workflow-editor").await;
    b.click("form.workflow button[type=submit]").await;
    b.wait_text("h1", |t| t.starts_with("Workflow ")).await;
    b.find("svg.dag g.kind-DECISION").await;
    b.screenshot("workflow").await;
    let workflow_url = b.url().await;
    // Its editor shows the stored definition and its DAG; its delete asks first.
    b.open(&workflow_url, "/edit").await;
    b.wait_text("#dag-preview", |t| t.contains("4 nodes, 3 edges; valid."))
        .await;
    b.screenshot("workflow-edit").await;
    b.open(&workflow_url, "/delete").await;
    b.wait_text("main", |t| t.contains("Delete workflow nightly etl"))
        .await;
    b.screenshot("workflow-delete").await;
    b.post("/url", json!({ "url": workflow_url })).await;
    b.wait_text("h1", |t| t.starts_with("Workflow ")).await;
    b.type_into("form.run input[name=init_params]", r#"{"go": true}"#)
        .await;
    b.click("form.run button").await;
    b.wait_text("h1", |t| t.starts_with("Workflow instance "))
        .await;
    b.wait_text("#live dd .badge", |t| t == "SUCCEED").await;
    b.find("svg.dag g.st-SUCCEED[data-node='3']").await;
    b.find("svg.dag g.st-SKIPPED[data-node='4']").await;
    b.screenshot("workflow-instance").await;
    let run_url = b.url().await;
    b.open(&base, "/workflows").await;
    b.wait_text("table", |t| t.contains("nightly etl")).await;
    b.screenshot("workflows").await;
    b.open(&base, "/workflow-instances").await;
    b.wait_text("table", |t| t.contains("SUCCEED")).await;
    b.screenshot("workflow-instances").await;

    // Phone width: no page scrolls sideways (wide tables and DAGs scroll in their own box).
    b.post("/window/rect", json!({ "width": 390, "height": 844 }))
        .await;
    let pages = [
        ("overview", format!("{base}/")),
        ("jobs", format!("{base}/jobs")),
        ("job-new", format!("{base}/jobs/new")),
        ("instance", instance_url),
        ("workflows", format!("{base}/workflows")),
        ("workflow-editor", format!("{base}/workflows/new")),
        ("workflow-instance", run_url),
        ("workers", format!("{base}/workers")),
    ];
    for (name, url) in pages {
        b.post("/url", json!({ "url": url })).await;
        b.find("main h1").await;
        let fits = b
            .post(
                "/execute/sync",
                json!({
                    "script": "return [document.documentElement.scrollWidth, window.innerWidth];",
                    "args": [],
                }),
            )
            .await;
        let (scroll, inner) = (fits[0].as_u64().unwrap(), fits[1].as_u64().unwrap());
        assert!(
            scroll <= inner,
            "{name} is {scroll} px wide in a {inner} px window"
        );
        // Keyboard: every link and control (the DAGs' node links too) takes the focus.
        let unreachable = b
            .exec(
                "return [...document.querySelectorAll('a[href], button, input, select, textarea')] \
                 .filter(e => e.type !== 'hidden' && !e.disabled && e.tabIndex < 0) \
                 .map(e => e.outerHTML.slice(0, 80));",
            )
            .await;
        assert_eq!(unreachable, json!([]), "{name}: not keyboard reachable");
        // Every field has a name a screen reader reads: a label, or an aria-label.
        let unlabelled = b
            .exec(
                "return [...document.querySelectorAll('input, select, textarea')] \
                 .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label')) \
                 .map(e => e.outerHTML.slice(0, 80));",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "{name}: fields without a label");
        b.screenshot(&format!("phone-{name}")).await;
    }

    // Sign out: pages send back to the sign-in page.
    b.click("form[action='/logout'] button").await;
    b.wait_text("h1", |t| t == "ferrojob console").await;
    b.open(&base, "/jobs").await;
    assert!(b.url().await.ends_with("/login"));
    b.screenshot("signed-out").await;

    b.close().await;
    for w in workers {
        w.shutdown().await;
    }
    server.shutdown().await;
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aA=="), b"h");
    assert_eq!(base64_decode(""), b"");
}
