//! Helpers for the unit tests (compiled only for them).

extern crate std;

/// Runs the unit test `name` (its full path, e.g. `sys::tests::x`) again in a child
/// process of this test binary, alone (`--exact`, one test thread), with the variable
/// `env` set so that the test knows it is the child; kills it after `deadline`.
/// Returns whether it passed. For a test whose assertions another thread could falsify
/// (a mapping made at an address just freed, a CPU shared with a busy thread).
pub(crate) fn child_passes(name: &str, env: &str, deadline: std::time::Duration) -> bool {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
