//! Where a conformance test keeps its repository: opening a place twice gives the same durable
//! state (a reopen), and each test gets places of its own.

use std::sync::Arc;

use ferrojob::server::Repo;
use ferrojob_store::{LogOptions, LogStore, MemoryStore, Store};

/// A place a repository lives in.
pub trait Place {
    /// Opens the repository (again): the previous handle must be dropped first.
    fn open(&self) -> Repo;
    /// The key-value store underneath, for the log store's own checks (`None` elsewhere).
    fn store(&self) -> Option<Arc<dyn Store>>;
    /// Which implementation, for failure messages.
    fn name(&self) -> &'static str;
}

/// The log store's repository over one MemoryStore.
struct Memory(Arc<dyn Store>);

impl Place for Memory {
    fn open(&self) -> Repo {
        Repo::open(Arc::clone(&self.0)).unwrap()
    }
    fn store(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::clone(&self.0))
    }
    fn name(&self) -> &'static str {
        "memory"
    }
}

/// The log store's repository over a LogStore directory (reopened from disk).
struct Log(tempfile::TempDir);

impl Place for Log {
    fn open(&self) -> Repo {
        let opts = LogOptions {
            background_compaction: false,
            ..LogOptions::default()
        };
        Repo::open(Arc::new(LogStore::open(self.0.path(), opts).unwrap())).unwrap()
    }
    fn store(&self) -> Option<Arc<dyn Store>> {
        None
    }
    fn name(&self) -> &'static str {
        "log store"
    }
}

/// Runs `check` against every implementation, each in a fresh place.
pub fn each_repository(check: impl Fn(&dyn Place)) {
    check(&Memory(Arc::new(MemoryStore::new())));
    check(&Log(tempfile::tempdir().unwrap()));
    #[cfg(feature = "postgres")]
    check(&postgres::Database::create());
}

#[cfg(feature = "postgres")]
pub mod postgres {
    //! A fresh PostgreSQL database per test.

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use ferrojob::server::{PgRepo, Repo};
    use ferrojob_store::Store;

    /// The server the tests use (trust authentication), without a database name.
    pub fn server_url() -> String {
        std::env::var("FERROJOB_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
    }

    fn admin(sql: String) {
        execute_on("postgres", sql);
    }

    /// Runs `sql` on database `db` of the test server.
    pub fn execute_on(db: &str, sql: String) {
        let url = format!("{}/{db}", server_url());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL must answer at {url} for the repository tests: {e}")
                });
            tokio::spawn(conn);
            client.batch_execute(&sql).await.unwrap();
        });
    }

    /// Runs `sql` on database `db` and answers its rows as text (`None` for NULL).
    pub fn query_on(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = format!("{}/{db}", server_url());
        let sql = sql.to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut out = Vec::new();
            for m in client.simple_query(&sql).await.unwrap() {
                if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
                    out.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    );
                }
            }
            out
        })
    }

    /// A database created for one test and dropped when this goes.
    pub struct Database {
        pub name: String,
    }

    impl Database {
        pub fn create() -> Database {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let name = format!(
                "ferrojob_test_{}_{}_{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            admin(format!("CREATE DATABASE {name}"));
            Database { name }
        }

        pub fn url(&self) -> String {
            format!("{}/{}", server_url(), self.name)
        }
    }

    impl Drop for Database {
        fn drop(&mut self) {
            admin(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }

    impl super::Place for Database {
        fn open(&self) -> Repo {
            Repo::new(Arc::new(PgRepo::open(&self.url()).unwrap()))
        }
        fn store(&self) -> Option<Arc<dyn Store>> {
            None
        }
        fn name(&self) -> &'static str {
            "postgres"
        }
    }
}
