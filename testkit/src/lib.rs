//! Countersign's test kit: real services for integration tests, each test on its own.
//!
//! Nothing about PostgreSQL, MariaDB or Redis is mocked. This crate finds the servers (the
//! addresses below, or the `COUNTERSIGN_TEST_*` environment variables), and gives each test its
//! own database or key space, removed again when the handle drops, so parallel and repeated runs
//! do not interfere. When a server cannot be reached the test fails with the command that starts
//! it (`scripts/services.sh` starts or installs all three).
//!
//! Layout:
//! - [`PgDatabase`], [`MySqlDatabase`], [`SqliteFile`]: a fresh database per test.
//! - [`RedisServer`]: a private `redis-server` on a free port, for tests that flush, stop or
//!   restart Redis; [`redis_namespace`] for tests that share the machine's Redis.
//! - [`free_port`], [`unique_name`]: small helpers.
//! - [`slack`]: a fake Slack (Web API, Socket Mode, signed HTTP events) that the real
//!   slack-morphism client and the bot talk to.
//! - [`discord`]: a fake Discord (REST under `/api/v10`, the gateway websocket) that the real
//!   serenity client and the bot talk to.

pub mod discord;
pub mod slack;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

/// Where the machine's PostgreSQL is (override with `COUNTERSIGN_TEST_POSTGRES`).
pub fn postgres_admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Where the machine's MariaDB or MySQL is (override with `COUNTERSIGN_TEST_MYSQL`).
pub fn mysql_admin_url() -> String {
    std::env::var("COUNTERSIGN_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
}

/// Where the machine's Redis is (override with `COUNTERSIGN_TEST_REDIS`).
pub fn redis_url() -> String {
    std::env::var("COUNTERSIGN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

const START_HINT: &str = "start the test services with `scripts/services.sh` (it starts PostgreSQL, MariaDB and Redis, installing them with apt-get when missing), or point COUNTERSIGN_TEST_POSTGRES / COUNTERSIGN_TEST_MYSQL / COUNTERSIGN_TEST_REDIS at running servers";

/// A name no other test run uses: `prefix_` and 12 random hex digits.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Runs an async cleanup to completion from `Drop`, on a thread of its own (drop may run inside
/// a runtime, where blocking on another future is not allowed).
fn run_blocking<F>(make: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let handle = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(make()),
            Err(error) => eprintln!("testkit: cannot build a runtime for cleanup: {error}"),
        }
    });
    let _ = handle.join();
}

/// A PostgreSQL database of this test's own, dropped when the handle drops.
pub struct PgDatabase {
    /// The database's name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
    admin_url: String,
}

impl PgDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> PgDatabase {
        let admin_url = postgres_admin_url();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot reach PostgreSQL at {admin_url}: {error}\n{START_HINT}")
            });
        let name = unique_name("cs_test");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        let _ = admin.close().await;
        PgDatabase {
            url: replace_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A pool on the database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.url))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        run_blocking(move || async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(error) = admin.execute(drop.as_str()).await {
                    eprintln!("testkit: {drop}: {error}");
                }
            }
        });
    }
}

/// A MariaDB/MySQL database of this test's own, dropped when the handle drops.
pub struct MySqlDatabase {
    /// The database's name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
    admin_url: String,
}

impl MySqlDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> MySqlDatabase {
        let admin_url = mysql_admin_url();
        let mut admin = sqlx::MySqlConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot reach MariaDB/MySQL at {admin_url}: {error}\n{START_HINT}")
            });
        let name = unique_name("cs_test");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        let _ = admin.close().await;
        MySqlDatabase {
            url: replace_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A pool on the database.
    pub async fn pool(&self) -> sqlx::MySqlPool {
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(8)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.url))
    }
}

impl Drop for MySqlDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        run_blocking(move || async move {
            if let Ok(mut admin) = sqlx::MySqlConnection::connect(&admin_url).await {
                let drop = format!("DROP DATABASE IF EXISTS {name}");
                if let Err(error) = sqlx::raw_sql(&drop).execute(&mut admin).await {
                    eprintln!("testkit: {drop}: {error}");
                }
            }
        });
    }
}

/// A SQLite database file in a directory of this test's own, removed when the handle drops.
pub struct SqliteFile {
    dir: PathBuf,
    /// The database file (not created until something opens it).
    pub path: PathBuf,
}

impl SqliteFile {
    /// A path for a new database file.
    pub fn create() -> SqliteFile {
        let dir = std::env::temp_dir().join(unique_name("countersign-test"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        SqliteFile {
            path: dir.join("target.sqlite"),
            dir,
        }
    }

    /// A URL that opens the file read-write, creating it.
    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }

    /// The directory the file lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A key prefix no other test uses, for tests that share the machine's Redis.
pub fn redis_namespace() -> String {
    unique_name("cs-test")
}

/// A private `redis-server` on a free port, killed when the handle drops. For tests that
/// flush, stop or restart Redis without touching anyone else's keys.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(unique_name("countersign-redis"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = [
            "redis-server",
            "/usr/bin/redis-server",
            "/usr/sbin/redis-server",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .unwrap_or_else(|| panic!("redis-server is not installed\n{START_HINT}"));
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start redis-server: {error}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone: nothing is kept on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts an empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_their_options() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("mysql://root@127.0.0.1:3306", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
