//! Resource owners, for clients allowed the password grant. Passwords are argon2id hashes,
//! computed off the async runtime.

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{Scopes, random_id};

use writ_token::RevocationKind;

use crate::error::{Error, Result};
use crate::records::UserRecord;
use crate::secrets::{hash_password, verify_password};
use crate::signin::LogoutNotice;
use crate::types::User;
use crate::{AuthorizationServer, MAX_ID_LEN};

/// Shortest password accepted (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted: argon2 work must stay bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

pub(crate) fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= MAX_ID_LEN
        && !u.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD_LEN || p.len() > MAX_PASSWORD_LEN {
        return Err(Error::InvalidRequest("a password has 8 to 1024 characters"));
    }
    Ok(())
}

async fn hash_off_runtime(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| Error::Internal("password hashing task"))?
}

/// The one refusal of a wrong username or password (or a disabled user).
pub(crate) const BAD_CREDENTIALS: &str = "the resource owner credentials are invalid";

impl AuthorizationServer {
    pub async fn create_user(&self, username: &str, password: &str, scope: &str) -> Result<User> {
        if !valid_username(username) {
            return Err(Error::InvalidRequest(
                "username must be 1-128 characters without spaces",
            ));
        }
        check_password(password)?;
        let scope =
            Scopes::parse(scope).map_err(|_| Error::InvalidRequest("scope is malformed"))?;
        let user = UserRecord {
            username: username.to_owned(),
            subject: random_id(),
            password_hash: hash_off_runtime(password.to_owned()).await?,
            scope: scope.to_string(),
            disabled: false,
            created_at: self.now(),
        };
        let intent = self.audit.intent(
            Event::new("user_created", Outcome::Success)
                .subject(&user.subject)
                .detail("username", username)
                .detail("scope", &user.scope),
        );
        let key = username.as_bytes();
        let batch = Batch::new().expect(key, None).put(key, encode(&user));
        if !self.store.commit(Tree::Users, intent.attach(batch)).await? {
            return Err(Error::AlreadyExists("a user with this username exists"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
        Ok(User {
            username: user.username,
            subject: user.subject,
            scope: user.scope,
            disabled: user.disabled,
            created_at: user.created_at,
        })
    }

    /// Deletes a user: every token and session of theirs is cut off first. Returns the logout
    /// tokens of the clients their sessions signed in to, for the transport to deliver.
    pub async fn delete_user(&self, username: &str) -> Result<Vec<LogoutNotice>> {
        if !valid_username(username) {
            return Err(Error::InvalidRequest("username is malformed"));
        }
        let user = self
            .store
            .get_record::<UserRecord>(username.as_bytes())
            .await?
            .ok_or(Error::NotFound("no such user"))?;
        // Cut first: a crash in between leaves a user whose sessions already ended, never a
        // deleted user whose tokens still work.
        self.cut_off(RevocationKind::Subject, &user.subject, "user deleted")
            .await?;
        let intent = self.audit.intent(
            Event::new("user_deleted", Outcome::Success)
                .subject(&user.subject)
                .detail("username", username),
        );
        let batch = Batch::new().remove(username.as_bytes());
        self.store.commit(Tree::Users, intent.attach(batch)).await?;
        self.audit.written(intent);
        self.store.durable().await?;
        self.end_sessions_after_cut_off(&user.subject, "user deleted")
            .await
    }

    /// Sets a user's password; every token and session the old one opened is cut off. Returns
    /// the logout tokens of the clients those sessions signed in to, for the transport.
    pub async fn set_user_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Vec<LogoutNotice>> {
        if !valid_username(username) {
            return Err(Error::InvalidRequest("username is malformed"));
        }
        check_password(password)?;
        let hash = hash_off_runtime(password.to_owned()).await?;
        let user = self
            .update_record::<UserRecord>(
                username.as_bytes(),
                |current| {
                    let mut user = current.ok_or(Error::NotFound("no such user"))?;
                    user.password_hash = hash.clone();
                    Ok(Some(user))
                },
                // Never the password, nor its hash.
                |_, user| {
                    Event::new("user_password_set", Outcome::Success)
                        .subject(&user.subject)
                        .detail("username", &user.username)
                },
            )
            .await?
            .ok_or(Error::Internal("password update wrote nothing"))?;
        // A new password ends every session the old one opened (a reset after a compromise).
        self.cut_off(RevocationKind::Subject, &user.subject, "password reset")
            .await?;
        self.end_sessions_after_cut_off(&user.subject, "password reset")
            .await
    }

    /// The sessions a subject cut-off killed, removed, so their clients hear of it (back-channel
    /// logout). Their grants need no revocation of their own: the cut-off covers them.
    async fn end_sessions_after_cut_off(
        &self,
        subject: &str,
        why: &str,
    ) -> Result<Vec<LogoutNotice>> {
        // The cut-off already ended them for every purpose (a session it covers is refused
        // everywhere): what fails here is housekeeping and best-effort notices, never a reason
        // to report the reset or the deletion as failed.
        match self
            .end_sessions_of(subject, None, why, crate::sessions::Ending::CutOff)
            .await
        {
            Ok(ended) => Ok(ended.notices),
            Err(e) => {
                tracing::warn!(error = %e, "the sessions a cut-off ended were not all removed");
                Ok(Vec::new())
            }
        }
    }

    /// Checks a resource owner's password. Unknown users are checked against a dummy hash, so
    /// they take as long as known ones; every failure is the same `invalid_grant`.
    pub(crate) async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRecord> {
        // Past its free failures a username is refused without its password being checked (no
        // argon2 work), whether or not it exists.
        let who = [crate::throttle::Subject::User(username)];
        if let Some(wait) = self.throttle.locked(&who, self.now()) {
            return Err(Error::Throttled(wait));
        }
        let user = if valid_username(username) && password.len() <= MAX_PASSWORD_LEN {
            self.store
                .get_record::<UserRecord>(username.as_bytes())
                .await?
        } else {
            None
        };
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_password_hash.clone());
        let password = password.to_owned();
        // At most so many argon2 checks at once (each holds ~19 MiB and a core for tens of
        // milliseconds), and so many waiting: a flood of passwords cannot take the machine.
        let permit = {
            use std::sync::atomic::Ordering;
            if self.password_waiting.fetch_add(1, Ordering::AcqRel)
                >= self.config.max_waiting_password_checks
            {
                self.password_waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(Error::Busy);
            }
            let permit = self.password_checks.clone().acquire_owned().await;
            self.password_waiting.fetch_sub(1, Ordering::AcqRel);
            permit.map_err(|_| Error::Busy)?
        };
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&password, &phc)
        })
        .await
        .map_err(|_| Error::Internal("password check task"))?;
        match user {
            Some(u) if matches && !u.disabled => {
                self.throttle.succeeded(&who);
                Ok(u)
            }
            _ => {
                self.throttle.failed(&who, self.now());
                Err(Error::InvalidGrant(BAD_CREDENTIALS))
            }
        }
    }
}
