//! Structured log fields, from a processor's `TaskContext` logger to the log API and the text
//! download, on an in-process server and worker over 127.0.0.1.

use std::time::{Duration, Instant};

use ferrojob::api::{CreateApp, JobBody, LogQuery, RunJob};
use ferrojob::client::Client;
use ferrojob::launch::{launch, LaunchConfig};
use ferrojob::model::{InstanceStatus, LogLevel};
use ferrojob::time_expression::TimeExpressionType;
use ferrojob::worker::{ProcessResult, TaskContext, Worker, WorkerConfig};
use ferrojob_transport::message::LogLevel as WireLevel;

const APP: &str = "fields";
const SECRET: &str = "fields-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processors_fields_are_stored_listed_and_printed() {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = launch(LaunchConfig::new(None, any, any)).await.unwrap();
    let api = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )
    .unwrap();
    let app = CreateApp {
        name: APP.into(),
        secret: SECRET.into(),
    };
    api.create_app(&app).await.unwrap();
    let config = WorkerConfig::new(server.transport_addr(), APP, SECRET);
    let _worker = Worker::builder(config)
        .basic("report", |ctx: TaskContext| async move {
            let log = ctx.logger();
            log.log_fields(WireLevel::Debug, "dropped at the worker", [("k", "v")]);
            log.log_fields(
                WireLevel::Info,
                "batch done",
                [("rows", "12"), ("table", "orders")],
            );
            ProcessResult::ok("done")
        })
        .start()
        .await
        .unwrap();
    let job = api
        .create_job(
            APP,
            &JobBody::new("report", TimeExpressionType::Api, "", "report"),
        )
        .await
        .unwrap()
        .id;
    let run = RunJob {
        params: String::new(),
        delay_ms: 0,
    };
    let id = api.run_job(APP, job, &run).await.unwrap().instance_id;

    // Polls with a generous deadline; nothing asserts a duration.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let i = api.get_instance(APP, id).await.unwrap();
        let v = api
            .instance_log(APP, id, LogQuery::default())
            .await
            .unwrap();
        if i.status == InstanceStatus::Succeed && !v.lines.is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "no log line: {i:?} {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The job's level is INFO (the default): the DEBUG line never left the worker.
    assert_eq!(view.lines.len(), 1, "{view:?}");
    let line = &view.lines[0];
    assert_eq!(line.level, LogLevel::Info);
    assert_eq!(line.content, "batch done");
    assert_eq!(line.attempt, 1);
    let fields: Vec<(&str, &str)> = line
        .fields
        .iter()
        .map(|f| (f.key.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(fields, [("rows", "12"), ("table", "orders")]);
    let text = api.instance_log_text(APP, id).await.unwrap();
    assert!(
        text.ends_with("INFO  [attempt 1] batch done {rows=12, table=orders}\n"),
        "{text}"
    );
}
