//! Console sessions: a bounded in-memory table from a random session id (the cookie) to the
//! app the browser signed in to, and the cookies that carry it.
//!
//! - A session id and its CSRF token are 32 random bytes each (`rand::thread_rng`, a CSPRNG
//!   seeded by the OS), hex-encoded. The id travels only in the `HttpOnly; SameSite=Strict`
//!   cookie [`SESSION_COOKIE`] (plus `Secure` when the console is reached over TLS); the
//!   CSRF token only in the pages, as the hidden `_csrf` field of every form.
//! - A session ends when it is signed out, idle for [`SessionLimits::idle`], older than
//!   [`SessionLimits::lifetime`], or evicted: the table holds at most
//!   [`SessionLimits::max_sessions`]; a new sign-in into a full table drops the expired
//!   sessions and then, if it is still full, the least recently used one.
//! - Sessions live in memory only: a restarted server signs everyone out.
//! - The table is sans-clock: every call takes `now`, so tests drive it on made-up instants.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::api::{AppRef, TokenRole};

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "ferrojob_session";
/// Name of the cookie that pairs with the sign-in form's `_csrf` field (double submit: a
/// page of another site can neither read it nor set it).
pub(crate) const LOGIN_COOKIE: &str = "ferrojob_login";

/// How many sessions, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLimits {
    /// Most sessions at once; at least 1.
    pub(crate) max_sessions: usize,
    /// A session unused this long ends.
    pub(crate) idle: Duration,
    /// A session this old ends, used or not.
    pub(crate) lifetime: Duration,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            max_sessions: 4096,
            idle: Duration::from_secs(12 * 3600),
            lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What a request learns from its session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The app every page of this session shows; nothing else.
    pub(crate) app: AppRef,
    /// Signed in with the admin token (rather than a token of the app).
    pub(crate) admin: bool,
    /// What the session may do in its app (the admin token's sessions: everything).
    pub(crate) role: TokenRole,
    /// The token every form of this session must carry.
    pub(crate) csrf: String,
}

#[derive(Debug)]
struct Entry {
    session: Session,
    created: Instant,
    last_used: Instant,
}

/// The bounded session table (see the module docs).
#[derive(Debug)]
pub(crate) struct SessionTable {
    limits: SessionLimits,
    entries: HashMap<String, Entry>,
}

/// 32 random bytes, hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionTable {
    pub(crate) fn new(limits: SessionLimits) -> SessionTable {
        SessionTable {
            limits: SessionLimits {
                max_sessions: limits.max_sessions.max(1),
                ..limits
            },
            entries: HashMap::new(),
        }
    }

    /// Sessions held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_used) >= self.limits.idle
            || now.saturating_duration_since(entry.created) >= self.limits.lifetime
    }

    /// Starts a session for `app` and answers its id.
    pub(crate) fn create(
        &mut self,
        app: AppRef,
        admin: bool,
        role: TokenRole,
        now: Instant,
    ) -> String {
        if self.entries.len() >= self.limits.max_sessions {
            let limits = self.limits;
            self.entries.retain(|_, e| {
                now.saturating_duration_since(e.last_used) < limits.idle
                    && now.saturating_duration_since(e.created) < limits.lifetime
            });
        }
        if self.entries.len() >= self.limits.max_sessions {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.entries.remove(&id);
            }
        }
        let id = random_token();
        let session = Session {
            app,
            admin,
            role,
            csrf: random_token(),
        };
        self.entries.insert(
            id.clone(),
            Entry {
                session,
                created: now,
                last_used: now,
            },
        );
        id
    }

    /// The live session `id` names (and marks it used), or `None`; an expired one is dropped.
    pub(crate) fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let expired = self.expired(self.entries.get(id)?, now);
        if expired {
            self.entries.remove(id);
            return None;
        }
        let entry = self.entries.get_mut(id)?;
        entry.last_used = now;
        Some(entry.session.clone())
    }

    /// Points admin session `id` at `app`; false (and nothing changes) when the session is
    /// not live or was not signed in with the admin token.
    pub(crate) fn switch_app(&mut self, id: &str, app: AppRef, now: Instant) -> bool {
        match self.get(id, now) {
            Some(session) if session.admin => match self.entries.get_mut(id) {
                Some(entry) => {
                    entry.session.app = app;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Ends session `id` (nothing if there is none).
    pub(crate) fn remove(&mut self, id: &str) {
        self.entries.remove(id);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/`, `Secure` when `secure`, and
/// `Max-Age=0` (delete) when `value` is empty.
pub(crate) fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if value.is_empty() {
        text.push_str("; Max-Age=0");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AppId;
    use axum::http::{HeaderMap, HeaderValue};

    fn app(id: u64) -> AppRef {
        AppRef {
            id: AppId(id),
            name: format!("app{id}"),
            secret: "s".into(),
        }
    }

    fn table(max: usize) -> SessionTable {
        SessionTable::new(SessionLimits {
            max_sessions: max,
            idle: Duration::from_secs(10),
            lifetime: Duration::from_secs(100),
        })
    }

    #[test]
    fn a_session_answers_its_app_until_removed() {
        let now = Instant::now();
        let mut t = table(4);
        let id = t.create(app(1), false, TokenRole::Admin, now);
        let s = t.get(&id, now).unwrap();
        assert_eq!(s.app.id, AppId(1));
        assert_eq!(s.csrf.len(), 64);
        assert_ne!(s.csrf, id);
        assert!(t.get("nope", now).is_none());
        t.remove(&id);
        assert!(t.get(&id, now).is_none());
    }

    #[test]
    fn only_admin_sessions_switch_apps() {
        let now = Instant::now();
        let mut t = table(4);
        let admin = t.create(app(1), true, TokenRole::Admin, now);
        let user = t.create(app(1), false, TokenRole::Admin, now);
        assert!(t.switch_app(&admin, app(2), now));
        assert_eq!(t.get(&admin, now).unwrap().app.id, AppId(2));
        assert!(!t.switch_app(&user, app(2), now));
        assert_eq!(t.get(&user, now).unwrap().app.id, AppId(1));
        assert!(!t.switch_app("nope", app(2), now));
    }

    #[test]
    fn idle_and_old_sessions_end() {
        let t0 = Instant::now();
        let mut t = table(4);
        let id = t.create(app(1), false, TokenRole::Admin, t0);
        // Used every 9 s it stays alive past the idle limit, until its lifetime ends.
        let mut now = t0;
        for _ in 0..11 {
            now += Duration::from_secs(9);
            assert!(t.get(&id, now).is_some(), "alive at {:?}", now - t0);
        }
        now += Duration::from_secs(2);
        assert!(t.get(&id, now).is_none());
        let id = t.create(app(1), false, TokenRole::Admin, now);
        assert!(t.get(&id, now + Duration::from_secs(10)).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let mut t = table(3);
        let a = t.create(app(1), false, TokenRole::Admin, t0);
        let b = t.create(app(2), false, TokenRole::Admin, t0 + Duration::from_secs(1));
        let c = t.create(app(3), false, TokenRole::Admin, t0 + Duration::from_secs(2));
        // `a` used last; `b` is now the least recently used.
        assert!(t.get(&a, t0 + Duration::from_secs(3)).is_some());
        let d = t.create(app(4), false, TokenRole::Admin, t0 + Duration::from_secs(4));
        assert_eq!(t.len(), 3);
        let now = t0 + Duration::from_secs(5);
        assert!(t.get(&b, now).is_none());
        for id in [&a, &c, &d] {
            assert!(t.get(id, now).is_some());
        }
        for i in 0..100 {
            t.create(app(i), true, TokenRole::Admin, now);
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn cookies_are_parsed_and_written() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; ferrojob_session=abc"),
        );
        h.append("cookie", HeaderValue::from_static("ferrojob_login=x;b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            set_cookie("n", "v", false),
            "n=v; Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_cookie("n", "", true),
            "n=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }
}
