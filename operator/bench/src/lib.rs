//! Shared pieces of the benchmark programs: statistics and report lines.

use std::time::Duration;

/// Median, minimum, 90th percentile and maximum of samples, in milliseconds.
pub fn report(what: &str, samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "{what}: median {:.1} ms (min {:.1}, p90 {:.1}, max {:.1}; {} runs)",
        ms(at(0.5)),
        ms(samples[0]),
        ms(at(0.9)),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// Starts `command` with its standard output piped, and a thread that sends each line
/// it prints.
pub fn spawn_lines(
    command: &mut std::process::Command,
) -> std::io::Result<(std::process::Child, std::sync::mpsc::Receiver<String>)> {
    use std::io::BufRead;
    let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, lines))
}

/// Stops a `drover up` started by a benchmark as Ctrl-C would (so it stops its agents
/// and instances), then removes its state directory.
pub fn stop_up(child: &mut std::process::Child, state: &std::path::Path) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(state);
}

/// Resident and peak memory of a process, in MiB, and of the resident, how much is
/// its own (anonymous: heap, stacks) and how much is mapped files (its code).
pub fn memory(pid: u32) -> (f64, f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0,
        kib("RssAnon:") / 1024.0,
        kib("RssFile:") / 1024.0,
    )
}
