//! The main loop's sleep: `poll(2)` on what the device names, until a frame can be read, a held
//! frame can be written, or the timeout ends (std shell).

use std::io;
use std::os::unix::io::RawFd;

use smoltcp::time::Duration;

/// What a device wants the loop to wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Wake when this fd is readable (a frame, a peer connecting).
    pub read: Option<RawFd>,
    /// Wake when this fd is writable (frames are held back until it is).
    pub write: Option<RawFd>,
    /// Something is ready without waiting (frames already buffered): do not sleep.
    pub now: bool,
}

impl Interest {
    /// Waiting for input on `fd` only.
    pub fn read(fd: RawFd) -> Interest {
        Interest {
            read: Some(fd),
            ..Interest::default()
        }
    }
}

/// Sleeps until `interest` is met or `timeout` ends (rounded up to a microsecond; an
/// interrupted sleep returns early with `Ok`).
#[allow(unsafe_code)]
pub fn wait(interest: &Interest, timeout: Duration) -> io::Result<()> {
    if interest.now {
        return Ok(());
    }
    let pollfd = |fd, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let mut fds = [pollfd(-1, 0), pollfd(-1, 0)];
    let mut n = 0;
    match (interest.read, interest.write) {
        (Some(r), Some(w)) if r == w => {
            fds[0] = pollfd(r, libc::POLLIN | libc::POLLOUT);
            n = 1;
        }
        (r, w) => {
            for (fd, events) in [(r, libc::POLLIN), (w, libc::POLLOUT)] {
                if let Some(fd) = fd {
                    fds[n] = pollfd(fd, events);
                    n += 1;
                }
            }
        }
    }
    let micros = timeout.total_micros();
    let ts = libc::timespec {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_nsec: ((micros % 1_000_000) * 1000) as libc::c_long,
    };
    // SAFETY: `fds` holds `n` initialised pollfds and outlives the call; `ts` is a valid
    // timespec; a null signal mask keeps the thread's own.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::io::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn waits_for_input_output_or_the_timeout() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let ms = |d: std::time::Duration| d.as_millis();
        // Nothing to read: the whole timeout.
        let t = Instant::now();
        wait(&Interest::read(a.as_raw_fd()), Duration::from_millis(100)).unwrap();
        assert!(ms(t.elapsed()) >= 95, "{:?}", t.elapsed());
        // Readable: at once.
        b.write_all(b"x").unwrap();
        let t = Instant::now();
        wait(&Interest::read(a.as_raw_fd()), Duration::from_secs(5)).unwrap();
        assert!(ms(t.elapsed()) < 2000);
        let mut one = [0u8; 1];
        a.read_exact(&mut one).unwrap();
        // `now`: no sleep at all.
        let t = Instant::now();
        let now = Interest {
            now: true,
            ..Interest::read(a.as_raw_fd())
        };
        wait(&now, Duration::from_secs(5)).unwrap();
        assert!(ms(t.elapsed()) < 2000);
        // Writable: at once (an empty socket buffer).
        let w = Interest {
            write: Some(a.as_raw_fd()),
            ..Interest::default()
        };
        let t = Instant::now();
        wait(&w, Duration::from_secs(5)).unwrap();
        assert!(ms(t.elapsed()) < 2000);
    }
}
