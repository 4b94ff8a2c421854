//! Socket activation: listening sockets handed over by systemd (or anything
//! speaking its `LISTEN_FDS` protocol, such as `systemd-socket-activate`).
//!
//! With a `.socket` unit, systemd binds the address itself, holds it while
//! the server is down (clients queue in the backlog instead of being
//! refused), and passes the bound sockets to the server as file descriptors
//! 3, 4, ... named in `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`. The
//! server then binds nothing it was handed, and may run without the right to
//! bind a privileged port at all.
//!
//! Reading the variables (the pid check, the names, `FD_CLOEXEC`, unsetting
//! them so no child inherits them) is `sd-notify`'s job. What it cannot know
//! is what each descriptor *is*: that is asked of the socket itself
//! (`SO_TYPE`, `getsockname`, `SO_ACCEPTCONN`), so a unit file may list TCP,
//! UDP and Unix sockets in any order. A Unix socket file that systemd made
//! is systemd's: it is never removed here (see `listen::UnixListener`).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use socket2::{Socket, Type};

use crate::serve::error::{Error, ListenError};
use crate::serve::listen::{Adopted, Listener, UnixListener};

/// A listening socket the service manager handed over, with its name.
#[derive(Debug)]
pub struct Activated {
    pub(crate) socket: Adopted,
    name: Option<String>,
}

impl Activated {
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=` in a unit), if
    /// one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Takes the sockets passed by socket activation, if the variables are set
/// for this process, and removes `LISTEN_FDS`, `LISTEN_PID` and
/// `LISTEN_FDNAMES` from the environment either way. No variables: an empty
/// list. A descriptor that is not a listening TCP, UDP or Unix stream
/// socket is an error naming it.
///
/// # Safety
///
/// Unsets environment variables: call it before any other thread starts
/// (as [`std::env::remove_var`] requires), at the top of `main`.
pub unsafe fn take_activated_sockets() -> Result<Vec<Activated>, Error> {
    let for_us = std::env::var("LISTEN_PID").is_ok_and(|pid| pid == std::process::id().to_string());
    if !for_us {
        // Meant for another process (or absent): not ours to serve, and
        // `sd-notify` would take names without sockets for an error.
        for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            // SAFETY: the caller promises no other thread is running.
            unsafe { std::env::remove_var(name) };
        }
        return Ok(Vec::new());
    }
    // SAFETY: the caller promises no other thread is running.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() };
    let fds = fds.map_err(|err| Error::Listen {
        address: "the sockets passed by the service manager (LISTEN_FDS)".into(),
        reason: err.into(),
    })?;
    fds.map(|(fd, name)| {
        // SAFETY: the service manager passed this descriptor to this process
        // (LISTEN_PID matched) and `sd-notify` hands each one out once; it is
        // owned here from now on and closed when the socket is dropped.
        let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let name = Some(name).filter(|n| !n.is_empty() && n != "unknown");
        adopt(socket, fd, name.as_deref()).map(|socket| Activated { socket, name })
    })
    .collect()
}

/// Recognises one inherited socket by its type and family.
fn adopt(socket: Socket, fd: RawFd, name: Option<&str>) -> Result<Adopted, Error> {
    let fail = |reason: ListenError| Error::Listen {
        address: match name {
            Some(name) => format!("inherited fd {fd} ({})", shown(name)),
            None => format!("inherited fd {fd}"),
        },
        reason,
    };
    let os = |err| fail(ListenError::Os(err));
    let kind = socket.r#type().map_err(os)?;
    let local = socket.local_addr().map_err(os)?;
    socket.set_nonblocking(true).map_err(os)?;
    if kind == Type::DGRAM {
        return match local.as_socket() {
            Some(_) => Ok(Adopted::Datagram(mio::net::UdpSocket::from_std(
                socket.into(),
            ))),
            None => Err(fail(ListenError::Unservable(
                "a Unix datagram socket (not served)",
            ))),
        };
    }
    if kind != Type::STREAM {
        return Err(fail(ListenError::Unservable(
            "neither a stream nor a datagram socket",
        )));
    }
    if !socket.is_listener().map_err(os)? {
        return Err(fail(ListenError::Unservable(
            "not a listening socket (with systemd: Accept=no)",
        )));
    }
    if local.as_socket().is_some() {
        let listener = mio::net::TcpListener::from_std(socket.into());
        return Ok(Adopted::Stream(Listener::Tcp(listener)));
    }
    if local.is_unix() {
        let path = match local.as_pathname() {
            Some(path) => path.to_path_buf(),
            // An abstract socket has a name, not a file.
            None => PathBuf::from(format!(
                "@{}",
                String::from_utf8_lossy(local.as_abstract_namespace().unwrap_or_default())
            )),
        };
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        let listener = mio::net::UnixListener::from_std(std_listener);
        return Ok(Adopted::Stream(Listener::Unix(UnixListener::inherited(
            listener, path,
        ))));
    }
    Err(fail(ListenError::Unservable(
        "an address family that is not served",
    )))
}

/// A name as it may be shown on a terminal: it comes from outside (the
/// environment), so it is escaped like everything else from outside.
pub(crate) fn shown(name: &str) -> String {
    let mut escaped = Vec::with_capacity(name.len());
    // Writing to a Vec cannot fail.
    let _ = crate::proto::write_escaped(&mut escaped, name.as_bytes(), false);
    String::from_utf8_lossy(&escaped).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::listen::BoundAddr;
    use socket2::{Domain, SockAddr};

    fn listening(domain: Domain, kind: Type, addr: &SockAddr) -> Socket {
        let socket = Socket::new(domain, kind, None).unwrap();
        socket.bind(addr).unwrap();
        if kind == Type::STREAM {
            socket.listen(8).unwrap();
        }
        socket
    }

    #[test]
    fn tcp_udp_and_unix_are_recognised() {
        let v4: SockAddr = "127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        let v6: SockAddr = "[::1]:0".parse::<std::net::SocketAddr>().unwrap().into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let unix = SockAddr::unix(&path).unwrap();

        let stream = |adopted: Adopted| match adopted {
            Adopted::Stream(listener) => listener,
            Adopted::Datagram(_) => panic!("a stream socket taken for a datagram one"),
        };
        let tcp = stream(adopt(listening(Domain::IPV4, Type::STREAM, &v4), 3, None).unwrap());
        assert!(matches!(tcp.bound_addr(), BoundAddr::Tcp(a) if a.ip().is_loopback()));
        let tcp6 = stream(adopt(listening(Domain::IPV6, Type::STREAM, &v6), 4, None).unwrap());
        assert!(matches!(tcp6.bound_addr(), BoundAddr::Tcp(a) if a.is_ipv6()));
        let udp = adopt(listening(Domain::IPV4, Type::DGRAM, &v4), 5, None).unwrap();
        assert!(matches!(udp, Adopted::Datagram(_)));
        let unix = stream(adopt(listening(Domain::UNIX, Type::STREAM, &unix), 6, None).unwrap());
        assert_eq!(unix.bound_addr(), BoundAddr::Unix(path.clone()));
        drop(unix);
        assert!(
            path.exists(),
            "an inherited socket file is not ours to remove"
        );
    }

    #[test]
    fn a_socket_that_does_not_listen_is_refused_with_its_name() {
        let v4: SockAddr = "127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&v4).unwrap();
        let err = adopt(socket, 3, Some("web")).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot listen on inherited fd 3 (web): not a listening socket (with systemd: Accept=no)"
        );
    }

    #[test]
    fn unix_datagram_sockets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let addr = SockAddr::unix(dir.path().join("d.sock")).unwrap();
        let socket = listening(Domain::UNIX, Type::DGRAM, &addr);
        let err = adopt(socket, 7, None).unwrap_err().to_string();
        assert!(err.contains("inherited fd 7"), "{err}");
    }
}
