//! Durable instance rows per second through each driver, with the write shape of
//! `server::pg`'s writer: one transaction per batch, one multi-row `INSERT … SELECT … FROM
//! unnest(arrays) ON CONFLICT DO UPDATE` per batch. And, as the baseline, one transaction per
//! row (how a scheduler that writes each state change on its own uses the database).
//!
//! `FERROJOB_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) names the server;
//! a database `ferrojob_driver_bench` is created and dropped.

use std::time::Instant;

const BATCHES: usize = 200;
const ROWS: usize = 1000;
const SINGLE: usize = 2000;

const TABLE: &str = "CREATE TABLE instances (id bigint PRIMARY KEY, app_id bigint NOT NULL, \
    job_id bigint NOT NULL, run bigint NOT NULL, status text NOT NULL, final boolean NOT NULL, \
    trigger_time bigint NOT NULL, finished_time bigint, worker text, record bytea NOT NULL)";
const UPSERT: &str =
    "INSERT INTO instances (id, app_id, job_id, run, status, final, trigger_time, \
    finished_time, worker, record) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], \
    $4::bigint[], $5::text[], $6::boolean[], $7::bigint[], $8::bigint[], $9::text[], $10::bytea[]) \
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, final = EXCLUDED.final, \
    finished_time = EXCLUDED.finished_time, worker = EXCLUDED.worker, record = EXCLUDED.record";
const ONE: &str = "INSERT INTO instances (id, app_id, job_id, run, status, final, trigger_time, \
    finished_time, worker, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, record = EXCLUDED.record";

struct Cols {
    id: Vec<i64>,
    app: Vec<i64>,
    job: Vec<i64>,
    run: Vec<i64>,
    status: Vec<String>,
    fin: Vec<bool>,
    trigger: Vec<i64>,
    finished: Vec<Option<i64>>,
    worker: Vec<Option<String>>,
    record: Vec<Vec<u8>>,
}

fn cols(first: i64, n: usize) -> Cols {
    let ids: Vec<i64> = (first..first + n as i64).collect();
    Cols {
        app: ids.iter().map(|_| 1).collect(),
        job: ids.iter().map(|i| i % 100).collect(),
        run: ids.clone(),
        status: ids
            .iter()
            .map(|_| "WAITING_WORKER_RECEIVE".to_owned())
            .collect(),
        fin: ids.iter().map(|_| false).collect(),
        trigger: ids.iter().map(|i| 1_700_000_000_000 + i).collect(),
        finished: ids.iter().map(|_| None).collect(),
        worker: ids
            .iter()
            .map(|_| Some("127.0.0.1:27777".to_owned()))
            .collect(),
        record: ids.iter().map(|_| vec![7u8; 160]).collect(),
        id: ids,
    }
}

async fn tokio_postgres_run(url: &str) -> (f64, f64) {
    let (mut c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute("DROP TABLE IF EXISTS instances")
        .await
        .unwrap();
    c.batch_execute(TABLE).await.unwrap();
    let stmt = c.prepare(UPSERT).await.unwrap();
    let t = Instant::now();
    for b in 0..BATCHES {
        let k = cols((b * ROWS) as i64, ROWS);
        let tx = c.transaction().await.unwrap();
        tx.execute(
            &stmt,
            &[
                &k.id,
                &k.app,
                &k.job,
                &k.run,
                &k.status,
                &k.fin,
                &k.trigger,
                &k.finished,
                &k.worker,
                &k.record,
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let batched = (BATCHES * ROWS) as f64 / t.elapsed().as_secs_f64();
    let one = c.prepare(ONE).await.unwrap();
    let t = Instant::now();
    for i in 0..SINGLE {
        let k = cols(10_000_000 + i as i64, 1);
        let tx = c.transaction().await.unwrap();
        tx.execute(
            &one,
            &[
                &k.id[0],
                &k.app[0],
                &k.job[0],
                &k.run[0],
                &k.status[0],
                &k.fin[0],
                &k.trigger[0],
                &k.finished[0],
                &k.worker[0],
                &k.record[0],
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    (batched, SINGLE as f64 / t.elapsed().as_secs_f64())
}

async fn sqlx_run(url: &str) -> (f64, f64) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("DROP TABLE IF EXISTS instances")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(TABLE).execute(&mut c).await.unwrap();
    let t = Instant::now();
    for b in 0..BATCHES {
        let k = cols((b * ROWS) as i64, ROWS);
        let mut tx = c.begin().await.unwrap();
        sqlx::query(UPSERT)
            .bind(k.id)
            .bind(k.app)
            .bind(k.job)
            .bind(k.run)
            .bind(k.status)
            .bind(k.fin)
            .bind(k.trigger)
            .bind(k.finished)
            .bind(k.worker)
            .bind(k.record)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let batched = (BATCHES * ROWS) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..SINGLE {
        let k = cols(10_000_000 + i as i64, 1);
        let mut tx = c.begin().await.unwrap();
        sqlx::query(ONE)
            .bind(k.id[0])
            .bind(k.app[0])
            .bind(k.job[0])
            .bind(k.run[0])
            .bind(&k.status[0])
            .bind(k.fin[0])
            .bind(k.trigger[0])
            .bind(k.finished[0])
            .bind(&k.worker[0])
            .bind(&k.record[0])
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    (batched, SINGLE as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = std::env::var("FERROJOB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let (admin, conn) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute("DROP DATABASE IF EXISTS ferrojob_driver_bench")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE ferrojob_driver_bench")
        .await
        .unwrap();
    let url = format!("{server}/ferrojob_driver_bench");
    println!(
        "rows/s (durable: one COMMIT per batch of {ROWS}, or per row), 3 rounds each, alternating"
    );
    for round in 1..=3 {
        let (tb, ts) = tokio_postgres_run(&url).await;
        let (sb, ss) = sqlx_run(&url).await;
        println!(
            "round {round}: tokio-postgres batched {tb:>9.0}  per-row {ts:>7.0} | sqlx batched {sb:>9.0}  per-row {ss:>7.0} | batched ratio tokio-postgres/sqlx {:.2}",
            tb / sb
        );
    }
    admin
        .batch_execute("DROP DATABASE IF EXISTS ferrojob_driver_bench WITH (FORCE)")
        .await
        .unwrap();
}
