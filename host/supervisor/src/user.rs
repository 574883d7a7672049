//! `--user`: the identity children run as, looked up once in the password and group
//! databases, and whether the supervisor may switch to it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;

/// The identity children run as under `--user`.
#[derive(Debug, Clone)]
pub(crate) struct Creds {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub home: OsString,
    pub shell: OsString,
}

/// Why a user could not be looked up or switched to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// No such user in the password database.
    #[error("no user {0:?} in the password database")]
    Unknown(String),
    /// The lookup itself failed.
    #[error("looking up user {user:?} failed: {source}")]
    Lookup {
        /// The user.
        user: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Only root can start processes as another user.
    #[error("--user {user:?} needs the supervisor to run as root (it runs as uid {euid})")]
    NotRoot {
        /// The user.
        user: String,
        /// The supervisor's effective uid.
        euid: u32,
    },
}

/// Looks `user` (a name, or a numeric uid) up with the C library (so NSS sources count)
/// and collects its supplementary groups.
pub(crate) fn lookup_user(user: &str) -> Result<Creds, UserError> {
    let fail = |source| UserError::Lookup {
        user: user.to_owned(),
        source,
    };
    let cname = CString::new(user).map_err(|_| UserError::Unknown(user.to_owned()))?;
    let mut buf: Vec<c_char> = vec![0; 16 * 1024];
    loop {
        // SAFETY: `passwd` is plain data that getpwnam_r/getpwuid_r fill in; its string
        // pointers point into `buf`, which outlives every use below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = match user.parse::<libc::uid_t>() {
            // SAFETY: valid pointers to live buffers of the stated lengths.
            Ok(uid) => unsafe {
                libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
            },
            // SAFETY: as above; `cname` is NUL-terminated.
            Err(_) => unsafe {
                libc::getpwnam_r(
                    cname.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            },
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(fail(io::Error::from_raw_os_error(rc)));
        }
        if result.is_null() {
            return Err(UserError::Unknown(user.to_owned()));
        }
        // SAFETY: on success the fields are NUL-terminated strings inside `buf`.
        let (name, home, shell) = unsafe {
            (
                CStr::from_ptr(pwd.pw_name).to_owned(),
                OsStr::from_bytes(CStr::from_ptr(pwd.pw_dir).to_bytes()).to_owned(),
                OsStr::from_bytes(CStr::from_ptr(pwd.pw_shell).to_bytes()).to_owned(),
            )
        };
        let groups = group_list(&name, pwd.pw_gid).map_err(fail)?;
        return Ok(Creds {
            name: name.to_string_lossy().into_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            groups,
            home,
            shell,
        });
    }
}

/// The supplementary groups of `name` (including `gid`), from the group database.
fn group_list(name: &CStr, gid: libc::gid_t) -> io::Result<Vec<libc::gid_t>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as c_int;
        // SAFETY: `groups` has room for `n` entries; getgrouplist writes at most that
        // many and stores the number needed in `n`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(groups);
        }
        if groups.len() >= 65536 {
            return Err(io::Error::other("more than 65536 supplementary groups"));
        }
        let want = (n.max(0) as usize).max(groups.len() * 2);
        groups.resize(want, 0);
    }
}

/// Checks that the supervisor may start children as `creds`.
pub(crate) fn check_can_switch(creds: &Creds) -> Result<(), UserError> {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 && euid != creds.uid {
        return Err(UserError::NotRoot {
            user: creds.name.clone(),
            euid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_user_is_found() {
        let me = rustix::process::getuid().as_raw();
        let creds = lookup_user(&me.to_string()).unwrap();
        assert_eq!(creds.uid, me);
        assert!(check_can_switch(&creds).is_ok());
        assert!(matches!(
            lookup_user("no-such-user-hotswap"),
            Err(UserError::Unknown(_))
        ));
    }
}
