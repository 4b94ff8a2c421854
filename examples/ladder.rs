//! The driver of `benches/ladder`: the C10K curve, measured.
//!
//! One client echoes 64-byte lines at pipeline 1 while K other connections
//! sit idle, for K = 0, 100, 1000, 5000 and 10000, against four servers:
//!
//! | rung | server | waits with |
//! |---|---|---|
//! | select | `examples/select_server.rs` | `select(2)`: every descriptor, every call; none past `FD_SETSIZE` |
//! | poll | `examples/poll_server.rs` | `poll(2)`: every descriptor, every call |
//! | selectd | `selectd serve --echo` | epoll (mio): the ready ones only |
//! | mio | `examples/mio_echo.rs` | epoll, no framing: the bare reference |
//!
//! For each point it reads the server's CPU time (`utime + stime` in
//! `/proc/PID/stat`) before and after `selectd bench --conns 1 --pipeline 1`
//! and divides by the messages echoed: server CPU µs per message, the
//! median of `--rounds` runs. The idle connections are held by a second
//! `selectd bench --mode idle`. The servers run pinned to one CPU and both
//! load generators to another (`taskset`, with two CPUs or more).
//!
//! Where select meets its wall (K + the server's own descriptors past
//! `FD_SETSIZE`), the point is not measured: the ladder counts how many
//! idle connections it held and how many it refused, and prints that.
//!
//! Prints two Markdown tables on stdout (progress on stderr) and draws the
//! curve (`--svg`, log-scaled) with the plotting code of `selectd bench
//! --plot`.
//!
//! ```text
//! benches/ladder [--short] [--ks 0,100,1000] [--rounds N] [--duration DUR]
//!     [--warmup DUR] [--svg FILE | --no-svg] [--no-pin] [--bin-dir DIR]
//! benches/ladder --replot SAVED_STDOUT [--svg FILE]   # draw again, measure nothing
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The most any one wait (a server listening, idle connections held) takes.
const PATIENCE: Duration = Duration::from_secs(120);

/// The rungs, in the order they are run and shown.
const SERVERS: [&str; 4] = ["select", "poll", "selectd", "mio"];

/// How the ladder runs.
struct Plan {
    ks: Vec<usize>,
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    svg: Option<PathBuf>,
    bin_dir: PathBuf,
    /// Pin servers and load to different CPUs (`taskset`).
    pin: bool,
    /// Draw `svg` from this saved output of an earlier run, measuring nothing.
    replot: Option<PathBuf>,
}

impl Plan {
    fn from_args() -> Result<Plan, String> {
        let mut plan = Plan {
            ks: vec![0, 100, 1000, 5000, 10000],
            rounds: 3,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            svg: Some(PathBuf::from("docs/ladder.svg")),
            // target/PROFILE/examples/ladder → target/PROFILE, where cargo
            // put selectd and the other examples.
            bin_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
                .unwrap_or_else(|| PathBuf::from("target/release")),
            pin: true,
            replot: None,
        };
        let duration =
            |text: &str| selectd::net::units::parse_duration(text).map_err(|e| e.to_string());
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                // Two points per rung, one round each, short runs, unpinned
                // (a busy CI machine may starve one CPU): for CI.
                "--short" => {
                    plan.pin = false;
                    plan.ks = vec![0, 1100];
                    plan.rounds = 1;
                    plan.duration = Duration::from_secs(1);
                    plan.warmup = Duration::from_millis(100);
                }
                "--ks" => {
                    plan.ks = value()?
                        .split(',')
                        .map(|k| {
                            k.trim()
                                .parse()
                                .map_err(|_| format!("--ks: invalid number '{k}'"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--rounds" => {
                    plan.rounds = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--rounds: a whole number above 0")?;
                }
                "--duration" => plan.duration = duration(&value()?)?,
                "--warmup" => plan.warmup = duration(&value()?)?,
                "--svg" => plan.svg = Some(PathBuf::from(value()?)),
                "--no-svg" => plan.svg = None,
                "--no-pin" => plan.pin = false,
                "--bin-dir" => plan.bin_dir = PathBuf::from(value()?),
                "--replot" => plan.replot = Some(PathBuf::from(value()?)),
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(plan)
    }

    fn selectd(&self) -> PathBuf {
        self.bin_dir.join("selectd")
    }

    /// The command line of a rung's server, on a port the kernel picks.
    fn server(&self, name: &str) -> Vec<String> {
        let example = |file: &str| {
            self.bin_dir
                .join("examples")
                .join(file)
                .display()
                .to_string()
        };
        let quiet = ["--echo", "--format", "none", "--idle-timeout", "off"].map(String::from);
        let mut argv = match name {
            "select" => vec![example("select_server")],
            "poll" => vec![example("poll_server")],
            "selectd" => vec![self.selectd().display().to_string(), "serve".into()],
            _ => vec![example("mio_echo")],
        };
        argv.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        if name != "mio" {
            argv.extend(quiet);
        }
        argv
    }
}

/// CPUs for the server and for the load: two different ones when the
/// machine has them and `taskset` is installed, else no pinning.
struct Pinning {
    server: Vec<String>,
    load: Vec<String>,
}

impl Pinning {
    fn new(wanted: bool) -> Pinning {
        if !wanted {
            return Pinning {
                server: Vec::new(),
                load: Vec::new(),
            };
        }
        // SAFETY: `set` is a valid, zeroed cpu_set_t of the size passed.
        let cpus: Vec<usize> = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                Vec::new()
            } else {
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                    .collect()
            }
        };
        let taskset = Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        match cpus.as_slice() {
            [server, load, ..] if taskset => Pinning {
                server: vec!["taskset".into(), "-c".into(), server.to_string()],
                load: vec!["taskset".into(), "-c".into(), load.to_string()],
            },
            _ => Pinning {
                server: Vec::new(),
                load: Vec::new(),
            },
        }
    }

    fn describe(&self) -> String {
        if self.server.is_empty() {
            "not pinned".into()
        } else {
            format!(
                "servers on CPU {}, load on CPU {}",
                self.server[2], self.load[2]
            )
        }
    }
}

/// A command prefixed by `prefix` (a `taskset`, or nothing).
fn command(prefix: &[String], argv: &[String]) -> Command {
    let mut all = prefix.iter().chain(argv);
    let mut command = Command::new(all.next().expect("a program"));
    command.args(all).stdin(Stdio::null());
    command
}

/// A running server: its process and what it wrote on stderr.
struct Server {
    child: Child,
    stderr: Arc<Mutex<String>>,
    addr: String,
}

impl Server {
    fn start(argv: &[String], pin: &Pinning) -> Result<Server, String> {
        let mut child = command(&pin.server, argv)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("stderr text");
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut server = Server {
            child,
            stderr,
            addr: String::new(),
        };
        let mut addr = None;
        wait("the server to listen", || {
            addr = server
                .text()
                .lines()
                .find_map(|line| line.strip_prefix("listening on tcp://").map(str::to_string));
            addr.is_some()
        })
        .map_err(|e| format!("{e}: {}", server.text()))?;
        server.addr = addr.expect("found");
        Ok(server)
    }

    fn text(&self) -> String {
        self.stderr.lock().expect("stderr text").clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms for at most [`PATIENCE`].
fn wait(what: &str, mut condition: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > PATIENCE {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// utime + stime of `pid`, in µs, from `/proc/PID/stat`.
fn cpu_us(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may hold spaces: count after it.
    let after = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    let [utime, stime] = fields[..] else {
        return Err(format!("/proc/{pid}/stat: unexpected format"));
    };
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((utime + stime) * 1_000_000 / tick)
}

/// How many descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// What one point gave.
#[derive(Clone)]
enum Point {
    /// Medians: server CPU µs per message, messages per second.
    Measured { cpu_us: f64, rate: f64 },
    /// select's wall: idle connections held and refused.
    Wall { held: usize, refused: usize },
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One rung at one K: a fresh server, K idle connections, then the rounds.
fn run_point(plan: &Plan, pin: &Pinning, name: &str, k: usize) -> Result<Point, String> {
    let server = Server::start(&plan.server(name), pin)?;
    let pid = server.pid();
    let base = open_fds(pid);
    let selectd = plan.selectd().display().to_string();
    let mut idle = None;
    if k > 0 {
        let argv = [
            &selectd,
            "bench",
            &server.addr,
            "--mode",
            "idle",
            "--conns",
            &k.to_string(),
            "--duration",
            "1h",
        ]
        .map(String::from);
        let child = command(&pin.load, &argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the idle load: {e}"))?;
        idle = Some(KillOnDrop(child));
    }
    let refused = || server.text().matches("refusing").count();
    wait(&format!("{k} idle connections to {name}"), || {
        open_fds(pid).saturating_sub(base) + refused() >= k
    })?;
    if refused() > 0 {
        return Ok(Point::Wall {
            held: open_fds(pid).saturating_sub(base),
            refused: refused(),
        });
    }

    let mut cpu = Vec::new();
    let mut rate = Vec::new();
    for _ in 0..plan.rounds {
        let argv = [
            &selectd,
            "bench",
            &server.addr,
            "--conns",
            "1",
            "--pipeline",
            "1",
            "--size",
            "64",
            "--duration",
            &selectd::net::units::format_duration(plan.duration),
            "--warmup",
            &selectd::net::units::format_duration(plan.warmup),
            "--json",
        ]
        .map(String::from);
        // On a shared machine a run may find its CPU taken for the whole
        // window ("nothing completed"): such a run is tried again, four
        // times at most, and said so on stderr.
        let mut tries = 0;
        let (before, out, after) = loop {
            let before = cpu_us(pid)?;
            let out = command(&pin.load, &argv)
                .output()
                .map_err(|e| format!("cannot run selectd bench: {e}"))?;
            let after = cpu_us(pid)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                break (before, out, after);
            }
            tries += 1;
            if tries > 4 || !stderr.contains("nothing completed") {
                return Err(format!(
                    "selectd bench against {name} at K={k}: {}",
                    stderr.trim()
                ));
            }
            eprintln!("ladder: {name} K={k}: {}; running it again", stderr.trim());
        };
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("bench --json: {e}"))?;
        let field = |key: &str| report[key].as_f64().unwrap_or(0.0);
        // The server worked through the warm-up too: count its messages,
        // at the window's rate, against the CPU.
        let total = field("msgs") * (field("duration_s") + field("warmup_s"))
            / field("duration_s").max(1e-9);
        if total < 1.0 {
            return Err(format!("{name} at K={k}: no message echoed"));
        }
        cpu.push((after - before) as f64 / total);
        rate.push(field("msgs_per_sec"));
    }
    drop(idle);
    Ok(Point::Measured {
        cpu_us: median(cpu),
        rate: median(rate),
    })
}

/// A child killed (and reaped) when dropped: the idle load.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ladder: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut plan = Plan::from_args()?;
    if let Some(saved) = plan.replot.clone() {
        let points = read_table(&saved, &mut plan)?;
        let svg = plan.svg.clone().ok_or("--replot needs an --svg to draw")?;
        draw(&svg, &plan, &points)?;
        eprintln!("ladder: drew {} from {}", svg.display(), saved.display());
        return Ok(());
    }
    for path in [plan.selectd(), plan.bin_dir.join("examples/select_server")] {
        if !path.exists() {
            return Err(format!(
                "{} not built (run benches/ladder, which builds it)",
                path.display()
            ));
        }
    }
    // Children inherit this: 10,000 idle connections need as many descriptors
    // in the load generator and in every server.
    rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| format!("cannot raise the descriptor limit: {e}"))?;
    let pin = Pinning::new(plan.pin);
    eprintln!("ladder: {}", pin.describe());

    let mut points: BTreeMap<(usize, &str), Point> = BTreeMap::new();
    for &k in &plan.ks {
        for name in SERVERS {
            let point = run_point(&plan, &pin, name, k)?;
            match &point {
                Point::Measured { cpu_us, rate } => {
                    eprintln!("ladder: {name:>7} K={k:<5} {cpu_us:8.2} µs/msg {rate:9.0} msgs/s")
                }
                Point::Wall { held, refused } => {
                    eprintln!(
                        "ladder: {name:>7} K={k:<5} FD_SETSIZE wall: {held} held, {refused} refused"
                    )
                }
            }
            points.insert((k, name), point);
        }
    }

    print_tables(&plan, &pin, &points);
    if let Some(svg) = &plan.svg {
        draw(svg, &plan, &points)?;
        eprintln!("ladder: drew {}", svg.display());
    }
    Ok(())
}

fn print_tables(plan: &Plan, pin: &Pinning, points: &BTreeMap<(usize, &str), Point>) {
    let cpu = |k: usize, name: &str| match points.get(&(k, name)) {
        Some(Point::Measured { cpu_us, .. }) => Some(*cpu_us),
        _ => None,
    };
    let first = plan.ks[0];
    println!(
        "Server CPU µs per echoed message (median of {}; {} + {} warm-up per run; {}); \
         in brackets, ÷ the same server at K={first}.",
        plan.rounds,
        selectd::net::units::format_duration(plan.duration),
        selectd::net::units::format_duration(plan.warmup),
        pin.describe()
    );
    println!();
    println!("| idle K | select | poll | selectd (epoll) | mio (epoll, bare) |");
    println!("|---:|---:|---:|---:|---:|");
    for &k in &plan.ks {
        let cells: Vec<String> = SERVERS
            .iter()
            .map(|&name| match (points.get(&(k, name)), cpu(first, name)) {
                (Some(Point::Measured { cpu_us, .. }), Some(base)) => {
                    format!("{cpu_us:.2} (×{:.2})", cpu_us / base)
                }
                (Some(Point::Measured { cpu_us, .. }), None) => format!("{cpu_us:.2}"),
                (Some(Point::Wall { held, refused }), _) => {
                    format!("wall: {held} held, {refused} refused")
                }
                (None, _) => "-".into(),
            })
            .collect();
        println!("| {k} | {} |", cells.join(" | "));
    }
    println!();
    println!("Messages per second (the one active client, pipeline 1):");
    println!();
    println!("| idle K | select | poll | selectd (epoll) | mio (epoll, bare) |");
    println!("|---:|---:|---:|---:|---:|");
    for &k in &plan.ks {
        let cells: Vec<String> = SERVERS
            .iter()
            .map(|&name| match points.get(&(k, name)) {
                Some(Point::Measured { rate, .. }) => format!("{rate:.0}"),
                Some(Point::Wall { .. }) => "wall".into(),
                None => "-".into(),
            })
            .collect();
        println!("| {k} | {} |", cells.join(" | "));
    }
}

/// The points of the first table an earlier run printed (its stdout, saved),
/// and its K and number of rounds into `plan`: `--replot` draws them again.
fn read_table(
    path: &Path,
    plan: &mut Plan,
) -> Result<BTreeMap<(usize, &'static str), Point>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |line: &str| format!("{}: not a ladder table row: {line}", path.display());
    if let Some(rest) = text.split("(median of ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        plan.rounds = digits.parse().map_err(|_| bad(rest))?;
    }
    let mut points = BTreeMap::new();
    plan.ks.clear();
    // The first table ends at its first blank line after the rows.
    let rows = text
        .lines()
        .skip_while(|line| !line.starts_with("|---"))
        .skip(1)
        .take_while(|line| line.starts_with('|'));
    for line in rows {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [k, rest @ ..] = cells.as_slice() else {
            return Err(bad(line));
        };
        let k: usize = k.parse().map_err(|_| bad(line))?;
        plan.ks.push(k);
        for (name, cell) in SERVERS.iter().zip(rest) {
            if cell.starts_with("wall") {
                points.insert(
                    (k, *name),
                    Point::Wall {
                        held: 0,
                        refused: 0,
                    },
                );
            } else if let Some(Ok(cpu_us)) = cell.split_whitespace().next().map(str::parse) {
                points.insert((k, *name), Point::Measured { cpu_us, rate: 0.0 });
            }
        }
    }
    if points.is_empty() {
        return Err(format!("{}: no ladder table found", path.display()));
    }
    Ok(points)
}

/// The curve: x is every connection held (K idle + the active one), so K = 0
/// has a place on the log scale; y the server CPU per message.
fn draw(path: &Path, plan: &Plan, points: &BTreeMap<(usize, &str), Point>) -> Result<(), String> {
    let legend = |name: &str| match name {
        "select" => "select (examples/select_server.rs)",
        "poll" => "poll (examples/poll_server.rs)",
        "selectd" => "selectd serve (epoll via mio)",
        _ => "mio_echo (epoll, no framing)",
    };
    let curves: Vec<(String, Vec<(f64, f64)>)> = SERVERS
        .iter()
        .map(|&name| {
            let line = plan
                .ks
                .iter()
                .filter_map(|&k| match points.get(&(k, name)) {
                    Some(Point::Measured { cpu_us, .. }) => {
                        Some(((k + 1) as f64, cpu_us.max(1e-3)))
                    }
                    _ => None,
                })
                .collect();
            (legend(name).to_string(), line)
        })
        .collect();
    let title = format!(
        "Server CPU per echoed message, 1 active client + K idle (median of {})",
        plan.rounds
    );
    selectd::bench::draw_log_log(
        path,
        &title,
        (
            "connections held (K idle + 1 active), log scale",
            "server CPU µs per message, log scale",
        ),
        &curves,
        &[(libc::FD_SETSIZE as f64, "FD_SETSIZE: select's wall")],
    )
}
