//! Login throttling: failures counted per account and per client address in Postgres (so every
//! api instance agrees); past a limit, sign-ins are refused for an exponentially growing but
//! short period, before the password is even checked.

use chrono::Utc;
use diesel::PgConnection;

use crate::auth::RequestMeta;
use crate::error::Result;
use crate::repo::login_throttle;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures within `window_secs` after which one account is locked.
    pub account_limit: i32,
    /// Failures within `window_secs` after which one client address is locked (higher: many
    /// people may share an address).
    pub address_limit: i32,
    pub window_secs: i64,
    /// First lock; doubled with every further failure past the limit, up to `max_lock_secs`.
    pub base_lock_secs: i64,
    pub max_lock_secs: i64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account_limit: 5,
            address_limit: 20,
            window_secs: 15 * 60,
            base_lock_secs: 30,
            max_lock_secs: 15 * 60,
        }
    }
}

impl ThrottleConfig {
    /// The per-account limit from `TMS_LOGIN_FAILURE_LIMIT`; the address limit stays 4× it.
    pub fn with_account_limit(limit: i32) -> Self {
        Self {
            account_limit: limit,
            address_limit: limit.saturating_mul(4),
            ..Self::default()
        }
    }
}

/// The counters one attempt touches: its account (the e-mail as typed, lowercased, whether or
/// not such an account exists, so that refusals say nothing about which accounts exist) and
/// its client address when known.
pub struct Keys {
    pub account: String,
    pub address: Option<String>,
}

impl Keys {
    pub fn of(email: &str, meta: &RequestMeta) -> Self {
        Keys {
            account: format!("account:{}", email.trim().to_lowercase()),
            address: meta.ip.as_ref().map(|ip| format!("ip:{ip}")),
        }
    }

    fn all(&self) -> Vec<String> {
        let mut v = vec![self.account.clone()];
        v.extend(self.address.clone());
        v
    }
}

/// Seconds until a sign-in for `keys` is allowed again; `None` when it is allowed now.
pub fn retry_after(conn: &mut PgConnection, keys: &Keys) -> Result<Option<u64>> {
    Ok(login_throttle::locked_until(conn, &keys.all())?
        .map(|until| (until - Utc::now()).num_seconds().max(1) as u64))
}

/// Counts a failed sign-in against the account and the address.
pub fn record_failure(conn: &mut PgConnection, cfg: &ThrottleConfig, keys: &Keys) -> Result<()> {
    login_throttle::record_failure(
        conn,
        &keys.account,
        cfg.window_secs,
        cfg.account_limit,
        cfg.base_lock_secs,
        cfg.max_lock_secs,
    )?;
    if let Some(addr) = &keys.address {
        login_throttle::record_failure(
            conn,
            addr,
            cfg.window_secs,
            cfg.address_limit,
            cfg.base_lock_secs,
            cfg.max_lock_secs,
        )?;
    }
    Ok(())
}

/// A successful sign-in clears its account's failures (not the address's: one good password
/// must not let an address go on guessing others).
pub fn record_success(conn: &mut PgConnection, cfg: &ThrottleConfig, keys: &Keys) -> Result<()> {
    login_throttle::reset(conn, &keys.account)?;
    // Opportunistic clean-up of long-idle counters.
    login_throttle::prune(conn, cfg.window_secs.max(cfg.max_lock_secs) * 4)?;
    Ok(())
}
