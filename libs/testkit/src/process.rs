//! Service binaries (`tokend`, `projector`) run as processes, as operators run them: settings
//! from the variables given (none inherited from the test's own `TOKEND_`, `PROJECTOR_`,
//! `OTEL_` or `RUST_` settings), stdout and stderr to a file, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Service {
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    #[allow(clippy::expect_used, clippy::panic)]
    pub fn start(binary: &Path, env: &[(String, String)], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("a log file");
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if ["TOKEND_", "PROJECTOR_", "OTEL_", "RUST_"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                command.env_remove(key);
            }
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(out.try_clone().expect("a log file")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        Self { child, log }
    }

    /// CPU time its threads have used so far, user and system (from `/proc/PID/stat`, in
    /// Linux's 100 Hz ticks; zero where that is missing).
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command name (in parentheses, maybe with spaces): field 3 onwards;
        // utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        std::time::Duration::from_millis(ticks * 10)
    }

    /// Asks it to stop, as Kubernetes and `docker stop` do (SIGTERM).
    #[allow(clippy::expect_used)]
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// Everything it has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Why it is not serving: its exit status and the end of its output, once it has exited.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let output = self.output();
        let mut tail: Vec<&str> = output.lines().rev().take(20).collect();
        tail.reverse();
        Some(format!("{status}:\n{}", tail.join("\n")))
    }
}

/// A binary of the workspace beside the running test or bench (`target/<profile>/NAME`;
/// `cargo test --workspace` and `cargo bench` build them).
#[allow(clippy::expect_used)]
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the current executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --bin {name})",
        bin.display()
    );
    bin
}

/// The demo client and user, from the block a node with `seed.demo` prints once on its
/// terminal (not in its log): (client id, client secret, password).
pub fn demo_secrets(output: &str) -> Option<(String, String, String)> {
    let field = |name: &str| {
        output.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next().map(str::to_owned))?
        })
    };
    Some((
        field("client_id")?,
        field("client_secret")?,
        field("password")?,
    ))
}
