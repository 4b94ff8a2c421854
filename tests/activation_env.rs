//! Socket activation's variables are removed from the environment, whether
//! or not they were meant for this process, so no child inherits them. (One
//! test alone in its file: it changes the process environment.)

/// Variables naming another process are ignored and removed; variables
/// naming this one (no sockets) are taken and removed.
#[test]
fn the_variables_are_cleared_either_way() {
    let names = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];
    let other_pid = (std::process::id() + 1).to_string();
    // SAFETY: this test is the only one in its process, so no other thread
    // reads or writes the environment meanwhile.
    unsafe {
        std::env::set_var("LISTEN_FDS", "1");
        std::env::set_var("LISTEN_PID", &other_pid);
        std::env::set_var("LISTEN_FDNAMES", "web");
    }
    // SAFETY: as above.
    let sockets = unsafe { selectd::take_activated_sockets() }.unwrap();
    assert!(sockets.is_empty());
    for name in names {
        assert!(std::env::var_os(name).is_none(), "{name} still set");
    }

    // SAFETY: as above.
    unsafe {
        std::env::set_var("LISTEN_FDS", "0");
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
    }
    // SAFETY: as above.
    let sockets = unsafe { selectd::take_activated_sockets() }.unwrap();
    assert!(sockets.is_empty());
    for name in names {
        assert!(std::env::var_os(name).is_none(), "{name} still set");
    }
}
