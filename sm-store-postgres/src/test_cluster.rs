//! A throwaway PostgreSQL server for tests (feature `test-cluster`).
//!
//! [`TestCluster::start`] runs `initdb` and `pg_ctl` from the machine's PostgreSQL
//! installation in a new temporary directory, listening on a free loopback port with
//! password authentication. PostgreSQL refuses to run as root, so under root the server runs
//! as the `postgres` user the Debian package creates. The cluster is stopped and its
//! directory removed when the [`TestCluster`] is dropped — and, for the process-wide
//! [`TestCluster::shared`] one, when the test process exits however it exits: a watchdog
//! shell waits on a pipe only this process holds open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The database user the cluster is created with.
pub const USER: &str = "sm";

/// A PostgreSQL server of its own in a temporary directory.
pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
    /// Its stdin is the pipe whose end stops the cluster (see the module docs).
    watchdog: Option<Child>,
}

/// Where `initdb`, `pg_ctl` and `postgres` are: `SM_POSTGRES_BIN`, else `pg_config
/// --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SM_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = candidates.pop() {
        return Ok(newest);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    Err(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found: install PostgreSQL \
         (Debian: apt-get install -y postgresql) or set SM_POSTGRES_BIN to their directory"
            .into(),
    )
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl TestCluster {
    /// Creates and starts a cluster. Blocking (a second or two); call it off the runtime
    /// or before it.
    pub fn start() -> Result<TestCluster, String> {
        Self::start_with(false)
    }

    /// [`TestCluster::start`] with TLS required for every database but `postgres` (which
    /// [`TestCluster::fresh_database`] uses to create them): the server's certificate, for
    /// `127.0.0.1` and `localhost`, is signed by a CA of its own, whose certificate is
    /// [`TestCluster::ca_file`]. Needs the `openssl` program.
    pub fn start_tls() -> Result<TestCluster, String> {
        Self::start_with(true)
    }

    /// The PEM certificate of the CA that signed the server's (TLS clusters only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn start_with(tls: bool) -> Result<TestCluster, String> {
        let bin = find_bin()?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = match &run_as {
            Some(user) => {
                let out = Command::new("runuser")
                    .args(["-u", user, "--", "mktemp", "-d", "/tmp/sm-pg.XXXXXX"])
                    .output()
                    .map_err(|e| format!("cannot run runuser: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "cannot make a directory as {user} (PostgreSQL refuses to run as root; \
                         is the `{user}` user there?): {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            None => tempfile_dir()?,
        };
        let password = random_hex();
        let mut cluster = TestCluster {
            bin,
            dir,
            port: 0,
            password,
            run_as,
            watchdog: None,
        };
        let pwfile = cluster.dir.join("password");
        std::fs::File::create(&pwfile)
            .and_then(|mut f| f.write_all(cluster.password.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", pwfile.display()))?;
        if let Some(user) = &cluster.run_as {
            let _ = Command::new("chown")
                .args([user.as_str(), &pwfile.display().to_string()])
                .status();
        }
        let data = cluster.data_dir();
        cluster.pg(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                USER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        // The watchdog first, so that a failed start still cleans up.
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        if tls {
            cluster.require_tls()?;
        }
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The cluster every test of this process shares, started on first use and stopped when
    /// the process exits.
    pub fn shared() -> Result<&'static TestCluster, String> {
        static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(TestCluster::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of PostgreSQL's programs (as the `postgres` user under root).
    fn pg(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// A CA and a server certificate it signs, `ssl = on`, and `pg_hba.conf` accepting
    /// only TLS connections (but to the `postgres` maintenance database).
    fn require_tls(&self) -> Result<(), String> {
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&self.dir)
                .output()
                .map_err(|e| format!("cannot run openssl (apt-get install openssl): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {}: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let write = |name: &str, text: &str| {
            std::fs::write(self.dir.join(name), text)
                .map_err(|e| format!("cannot write {name}: {e}"))
        };
        write(
            "ca.ext",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )?;
        write(
            "server.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )?;
        // A key and a signing request for `subject`, then the certificate.
        let request = |name: &str, subject: &str| {
            let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
            openssl(&[
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr,
                "-subj", subject,
            ])
        };
        request("ca", "/CN=sm test CA")?;
        openssl(&[
            "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "3", "-extfile",
            "ca.ext", "-out", "ca.pem",
        ])?;
        request("server", "/CN=localhost")?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ])?;
        let data = self.data_dir();
        for file in ["server.crt", "server.key"] {
            std::fs::copy(self.dir.join(file), data.join(file))
                .map_err(|e| format!("cannot copy {file}: {e}"))?;
            if let Some(user) = &self.run_as {
                let _ = Command::new("chown")
                    .args([user.as_str(), &data.join(file).display().to_string()])
                    .status();
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| format!("cannot protect server.key: {e}"))?;
        let append = |name: &str, text: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join(name))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("cannot change {name}: {e}"))
        };
        append(
            "postgresql.conf",
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )?;
        // First match wins: these come before initdb's own lines only by replacing them.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\n\
             host postgres all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| format!("cannot write pg_hba.conf: {e}"))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let data = self.data_dir().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )
        .map(|_| ())
        .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }

    fn spawn_watchdog(&self) -> Result<Child, String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- \"$PG_CTL\""),
            None => "\"$PG_CTL\"".to_string(),
        };
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "read _ignored; {stop} -D \"$DIR/data\" stop -m immediate >/dev/null 2>&1; \
                 rm -rf \"$DIR\""
            ))
            .env("PG_CTL", pg_ctl)
            .env("DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, with this cluster's user and password.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// Creates a new, empty database and returns its URL.
    pub async fn fresh_database(&self) -> Result<String, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sm_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to the test cluster: {e}"))?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        drop(client);
        let _ = connection.await;
        Ok(self.url(&name))
    }

    /// [`TestCluster::fresh_database`] for callers outside a runtime (end-to-end tests that
    /// drive servers as processes).
    pub fn fresh_database_blocking(&self) -> Result<String, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?
            .block_on(self.fresh_database())
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`): what was
    /// not committed is lost; what was committed is recovered at the next start.
    pub fn kill(&self) -> Result<(), String> {
        let data = self.data_dir().display().to_string();
        self.pg("pg_ctl", &["-D", &data, "stop", "-m", "immediate", "-w"])
            .map(|_| ())
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`: sessions are disconnected).
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data_dir().display().to_string();
        self.pg("pg_ctl", &["-D", &data, "stop", "-m", "fast", "-w"])
            .map(|_| ())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// The directory holding the cluster.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("sm-pg.{}", random_hex()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Closing the watchdog's stdin makes it stop the server and remove the directory.
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}
