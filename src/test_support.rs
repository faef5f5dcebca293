//! Helpers for the unit tests (compiled only for them).

extern crate std;

/// For a unit test whose assertions another thread could falsify (a mapping made at an
/// address just freed, a CPU shared with a busy thread): call it first, as
/// `if !in_child_alone("sys::tests::x") { return; }` with the test's full path. In the
/// test harness it runs that test again in a child process of this binary, alone, and
/// asserts that it passed within 20 s, then returns `false`; in that child it returns
/// `true`, and the test's body runs there.
pub(crate) fn in_child_alone(name: &str) -> bool {
    const ENV: &str = "WILDX_UNIT_TEST_CHILD";
    if std::env::var_os(ENV).is_some() {
        return true;
    }
    assert!(child_passes(name, ENV, std::time::Duration::from_secs(20)), "{name}: see the child's output above");
    false
}

/// Runs the unit test `name` again in a child process of this test binary, alone
/// (`--exact`, one test thread), with the variable `env` set; kills it after `deadline`.
/// Returns whether it passed.
fn child_passes(name: &str, env: &str, deadline: std::time::Duration) -> bool {
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
