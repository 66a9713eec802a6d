//! The API socket and the API thread.
//!
//! `--api-socket path=PATH` creates the socket 0600 (only the VMM's user may drive it). An
//! existing socket file is replaced only when no process answers on it (a VMM that died left
//! it behind); one a live VMM holds is refused, and anything that is not a socket is never
//! touched. `--api-socket fd=N` serves a listening socket the caller opened. The socket file
//! is removed when the VMM exits.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use micro_http::{HttpServer, ServerError};
use vmm_sys_util::eventfd::EventFd;

use super::http::{self, MAX_BODY};
use super::{ApiError, Request, Status};
use crate::control::ControlMsg;
use crate::seccomp::{Compiled, SeccompMode};

/// Where `--api-socket` listens.
pub type ApiSocketSpec = crate::config::PathOrFd;

#[derive(Debug, thiserror::Error)]
pub enum ApiSocketError {
    #[error(
        "--api-socket {path}: another process is serving on this socket (is another VMM using it?)"
    )]
    InUse { path: String },
    #[error("--api-socket {path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: String },
    #[error("--api-socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--api-socket fd={fd}: {reason}")]
    BadFd { fd: i32, reason: String },
}

/// A listening API socket.
pub struct ApiSocket {
    listener: UnixListener,
    /// Removed when the VMM exits (only for a socket the VMM created).
    path: Option<PathBuf>,
}

impl ApiSocket {
    pub fn open(spec: &ApiSocketSpec) -> Result<Self, ApiSocketError> {
        match spec {
            ApiSocketSpec::Path(p) => Self::bind(p),
            ApiSocketSpec::Fd(fd) => Self::from_fd(*fd),
        }
    }

    fn bind(path: &Path) -> Result<Self, ApiSocketError> {
        let shown = path.display().to_string();
        let io = |source| ApiSocketError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(ApiSocketError::NotASocket { path: shown });
            }
            Ok(_) => {
                if UnixStream::connect(path).is_ok() {
                    return Err(ApiSocketError::InUse { path: shown });
                }
                // Nobody listens: a socket left by a VMM that is gone.
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // Created 0600 from the start (no window in which others could connect): the umask
        // is process-wide, and this runs before the VMM starts any thread.
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        Ok(ApiSocket {
            listener: bound.map_err(io)?,
            path: Some(path.to_path_buf()),
        })
    }

    fn from_fd(fd: i32) -> Result<Self, ApiSocketError> {
        let bad = |reason: String| ApiSocketError::BadFd { fd, reason };
        let opt = |name: libc::c_int| -> Result<libc::c_int, String> {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `v`.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if r != 0 {
                return Err(format!(
                    "not a socket ({})",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(v)
        };
        if opt(libc::SO_DOMAIN).map_err(bad)? != libc::AF_UNIX {
            return Err(bad("not a unix socket".into()));
        }
        if opt(libc::SO_ACCEPTCONN).map_err(bad)? == 0 {
            return Err(bad("not a listening socket (listen(2) it first)".into()));
        }
        // SAFETY: the caller handed this listening socket to the VMM; it is owned from here.
        let listener = unsafe { UnixListener::from_raw_fd(fd) };
        // SAFETY: F_SETFD on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(ApiSocket {
            listener,
            path: None,
        })
    }

    /// The file to remove at exit.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Everything the API thread needs.
pub struct ApiThread {
    pub socket: ApiSocket,
    pub control: mpsc::Sender<ControlMsg>,
    /// Readable when the VMM must shut down (SIGTERM/SIGINT).
    pub kill: EventFd,
    pub filter: Compiled,
    pub seccomp: SeccompMode,
}

impl ApiThread {
    /// Start serving. The thread ends after answering `vmm.shutdown` (or on a shutdown
    /// signal, after asking the control loop to shut down).
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let ApiThread {
            socket,
            control,
            kill,
            filter,
            seccomp,
        } = self;
        // SAFETY: the listener's fd is moved into the server, which owns it from here.
        let mut server = unsafe { HttpServer::new_from_fd(socket.listener.into_raw_fd()) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        server.set_payload_max_size(MAX_BODY);
        server
            .add_kill_switch(kill)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        server
            .start_server()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::thread::Builder::new()
            .name("vmm-api".into())
            .spawn(move || {
                crate::signals::block_shutdown_signals();
                // std seeds each thread's HashMap keys from getrandom(2) on first use
                // (micro_http keeps a map of headers per request): seeded here, before the
                // filter, which has no getrandom.
                let _ = std::collections::hash_map::RandomState::new();
                if let Err(e) = filter.install() {
                    log::error!("API thread: {e}");
                    let _ = ask(&control, Request::VmmShutdown);
                    return;
                }
                serve(&mut server, &control, seccomp);
            })
    }
}

/// Hand `req` to the control loop and wait for its answer.
fn ask(control: &mpsc::Sender<ControlMsg>, req: Request) -> Result<super::Reply, ApiError> {
    let (tx, rx) = mpsc::channel();
    let gone = || {
        ApiError::new(
            Status::InternalServerError,
            "the VMM's control loop has ended",
        )
    };
    control.send(ControlMsg::Api(req, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

fn serve(server: &mut HttpServer, control: &mpsc::Sender<ControlMsg>, seccomp: SeccompMode) {
    loop {
        let requests = match server.requests() {
            Ok(r) => r,
            Err(ServerError::ShutdownEvent) => {
                log::warn!("shutdown signal: shutting the VMM down");
                let _ = ask(control, Request::VmmShutdown);
                return;
            }
            Err(e) => {
                log::warn!("API connection: {e}");
                continue;
            }
        };
        let mut shutting_down = false;
        for mut r in requests {
            // Files the client passed with the request (SCM_RIGHTS: tap fds for vm.add-net)
            // go with the request to the control loop; unused ones are closed with it.
            let files = std::mem::take(&mut r.request.files);
            let mut files = Some(files);
            let response = r.process(|req| {
                let files = files.take().unwrap_or_default();
                let answer = http::route_with_files(req, files, seccomp).and_then(|request| {
                    let is_shutdown = matches!(request, Request::VmmShutdown);
                    let answer = ask(control, request);
                    shutting_down |= is_shutdown && answer.is_ok();
                    answer
                });
                http::respond(answer)
            });
            if let Err(e) = server.respond(response) {
                log::warn!("API response not sent: {e}");
            }
        }
        if shutting_down {
            server.flush_outgoing_writes();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmm-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn specs_parse_like_cloud_hypervisors() {
        assert_eq!(
            ApiSocketSpec::parse("api-socket", "path=/run/a.sock"),
            Ok(ApiSocketSpec::Path("/run/a.sock".into()))
        );
        assert_eq!(
            ApiSocketSpec::parse("api-socket", "/run/a.sock"),
            Ok(ApiSocketSpec::Path("/run/a.sock".into()))
        );
        assert_eq!(
            ApiSocketSpec::parse("api-socket", "fd=3"),
            Ok(ApiSocketSpec::Fd(3))
        );
        assert!(ApiSocketSpec::parse("api-socket", "fd=-1").is_err());
        assert!(ApiSocketSpec::parse("api-socket", "path=").is_err());
    }

    #[test]
    fn the_socket_is_private_and_a_live_one_is_not_replaced() {
        let d = dir("live");
        let p = d.join("api.sock");
        let first = ApiSocket::open(&ApiSocketSpec::Path(p.clone())).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = ApiSocket::open(&ApiSocketSpec::Path(p.clone()))
            .err()
            .unwrap();
        assert!(matches!(e, ApiSocketError::InUse { .. }), "{e}");
        // Once nobody listens, the stale file is replaced.
        drop(first);
        assert!(p.exists());
        ApiSocket::open(&ApiSocketSpec::Path(p.clone())).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let d = dir("file");
        let p = d.join("precious");
        std::fs::write(&p, b"data").unwrap();
        let e = ApiSocket::open(&ApiSocketSpec::Path(p.clone()))
            .err()
            .unwrap();
        assert!(matches!(e, ApiSocketError::NotASocket { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"data");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_fd_that_is_not_a_socket_is_refused() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = f.into_raw_fd();
        let e = ApiSocket::open(&ApiSocketSpec::Fd(fd)).err().unwrap();
        assert!(e.to_string().contains("not a socket"), "{e}");
        // SAFETY: closing the fd this test opened (it was not taken over).
        unsafe { libc::close(fd) };
    }
}
